"""segexplainer:segment: run the model over a raster, tile by tile, without seams."""

import json

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingParameterBand, QgsProcessingParameterExtent,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer)

from .common import (OutputSet, feedback_callbacks, open_model_for_run, plugin_version,
                     raster_source_path, run_guarded, threads_parameter)


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
            self.BATCH_SIZE, "Tiles per model call", defaultValue=1, minValue=1))
        self.addParameter(threads_parameter())
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
        probs = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context)
        classes = self.parameterAsOutputLayer(parameters, self.CLASSES, context) or None
        destinations = [(self.PROBABILITIES, probs)] + ([(self.CLASSES, classes)] if classes
                                                         else [])
        return run_guarded(
            lambda: self._segment(parameters, context, feedback, destinations),
            context, feedback, destinations, noun="Segmentation",
            memory_message="Not enough memory to segment. Lower TILE_SIZE or BATCH_SIZE.")

    def _segment(self, parameters, context, feedback, destinations):
        from ..core.batching import check_cancel
        from ..core.tiling import segment_raster

        model_path, model = open_model_for_run(self, parameters, context, feedback,
                                               destinations)
        _check_bands(model, self._source, self._bands)
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        metadata = {"seg_explainer_version": plugin_version(), "model_file": model_path,
                    "model_sha256": model.sha256, "method": "segment",
                    "input_raster": self._source,
                    "parameters": json.dumps({"bands": self._bands, "window": self._window,
                                              "tile_size": tile, "overlap": overlap},
                                             sort_keys=True)}
        progress, cancel = feedback_callbacks(feedback)
        paths = dict(destinations)
        with OutputSet() as files:
            tmp = {key: files.temporary(path) for key, path in destinations}
            summary = segment_raster(
                model, self._source, tmp[self.PROBABILITIES], tmp.get(self.CLASSES),
                bands=self._bands, window=self._window, tile_size=tile,
                overlap=None if overlap < 0 else overlap,
                batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                metadata=metadata, progress=progress, cancel=cancel)
            check_cancel(cancel)
            files.commit()
        feedback.pushInfo(f"{summary['n_tiles']} tiles of {summary['tile_size']} px, overlap "
                          f"{summary['overlap']} px; pixels per class: {summary['class_counts']}")
        return dict(paths)


def _check_bands(model, source, bands):
    """The band count must be the model's channel count: say which BANDS to choose."""
    from ..core.geoio import raster_info

    info = raster_info(source)
    bands = list(bands) if bands else list(range(1, info.n_bands + 1))
    if any(b < 1 or b > info.n_bands for b in bands):
        raise QgsProcessingException(f"BANDS: the raster has bands 1 to {info.n_bands}; "
                                     f"{bands} asks for others.")
    if model.n_channels is not None and len(bands) != model.n_channels:
        raise QgsProcessingException(
            f"BANDS: the model takes {model.n_channels} channel(s) but {len(bands)} band(s) "
            f"were given (the raster has {info.n_bands}). Choose {model.n_channels} band(s) "
            "in model-channel order with BANDS.")


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
