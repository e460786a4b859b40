"""segexplainer:segment: run the model over a raster, tile by tile, without seams."""

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingParameterBand, QgsProcessingParameterExtent,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer)

from .common import feedback_callbacks, file_sha256, load_model, plugin_version, \
    raster_source_path


class SegmentAlgorithm(QgsProcessingAlgorithm):
    """Segment a raster with an ONNX model: class probabilities and a class map."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    PROBABILITIES = "PROBABILITIES"
    CLASSES = "CLASSES"

    def name(self):
        return "segment"

    def displayName(self):  # noqa: N802
        return "Segment raster"

    def group(self):
        return "Segmentation"

    def groupId(self):  # noqa: N802
        return "segmentation"

    def shortHelpString(self):  # noqa: N802
        return ("Runs an ONNX segmentation model over a raster (the whole layer or an extent), "
                "tile by tile at the model's tile size with overlapping, smoothly blended tiles "
                "so there are no seams. Writes a probability raster (one float32 band per class, "
                "named after it) and a class raster (paletted with the class names). Memory is "
                "bounded by one strip of tiles, not by the raster's size.")

    def createInstance(self):  # noqa: N802
        return SegmentAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, "Bands in model-channel order (default: all bands)", None, self.INPUT,
            optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX segmentation model", extension="onnx"))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the whole raster)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in pixels (0 = the model's)", defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, "Tile overlap in pixels (-1 = the model's, else 15 %)",
            defaultValue=-1, minValue=-1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Tiles per model call", defaultValue=4, minValue=1))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Class probabilities"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.CLASSES, "Classes", optional=True))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        # Runs on the main thread: copy everything needed from the layer here.
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        self._source = raster_source_path(layer)
        self._bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        self._window = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            self._window = _extent_to_window(layer, extent)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.errors import ExplanationCancelled, ModelError
        from ..core.tiling import segment_raster

        model_path = self.parameterAsFile(parameters, self.MODEL, context)
        model = load_model(model_path)
        probs = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context)
        classes = self.parameterAsOutputLayer(parameters, self.CLASSES, context) or None
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        metadata = {"seg_explainer_version": plugin_version(), "model_file": model_path,
                    "model_sha256": file_sha256(model_path), "method": "segment"}
        progress, cancel = feedback_callbacks(feedback)
        try:
            summary = segment_raster(
                model, self._source, probs, classes, bands=self._bands, window=self._window,
                tile_size=tile, overlap=None if overlap < 0 else overlap,
                batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                metadata=metadata, progress=progress, cancel=cancel)
        except ExplanationCancelled:
            feedback.reportError("Segmentation cancelled; no output was written.")
            return {}
        except (ModelError, ValueError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(f"{summary['n_tiles']} tiles of {summary['tile_size']} px, overlap "
                          f"{summary['overlap']} px; pixels per class: {summary['class_counts']}")
        results = {self.PROBABILITIES: probs}
        if classes:
            results[self.CLASSES] = classes
        return results


def _extent_to_window(layer, extent):
    """Pixel window (row0, col0, height, width) of ``extent`` on the layer's grid, clipped."""
    full = layer.extent()
    px, py = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    inter = full.intersect(extent)
    if inter.isEmpty():
        raise QgsProcessingException("EXTENT: the extent does not overlap the raster. Choose an "
                                     "extent inside the layer, or leave it empty.")
    col0 = int((inter.xMinimum() - full.xMinimum()) // px)
    row0 = int((full.yMaximum() - inter.yMaximum()) // py)
    col1 = min(layer.width(), int(-(-(inter.xMaximum() - full.xMinimum()) // px)))
    row1 = min(layer.height(), int(-(-(full.yMaximum() - inter.yMinimum()) // py)))
    return row0, col0, max(1, row1 - row0), max(1, col1 - col0)
