"""segexplainer:segment: run the model over a raster, tile by tile, without seams."""

import re

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingParameterExtent, QgsProcessingParameterRasterDestination)

from .common import (RasterInputParameter, band_numbers, bands_parameter, feedback_callbacks,
                     feedback_log, layers_to_load, model_inputs, model_parameter,
                     open_model_for_run, raster_input, restore_layers_to_load, run_guarded)
from .parameters import check_values, definition, for_algorithm, help_html, read_values


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
                "bounded by one strip of tiles, not by the raster's size." + help_html("segment"))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            ok, message = check_values(self, "segment", parameters, context)
        return ok, message

    def createInstance(self):  # noqa: N802
        return SegmentAlgorithm()

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(RasterInputParameter(self.INPUT, "Input raster"))
        self.addParameter(bands_parameter(self.BANDS, self.INPUT))
        self.addParameter(model_parameter(self.MODEL))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the whole raster)", optional=True))
        for decl in for_algorithm("segment"):
            self.addParameter(definition(decl))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, "Class probabilities"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.CLASSES, "Classes", optional=True))

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        # Runs on the main thread: copy everything needed from the layer here.
        self._source, crs, _ = raster_input(self, parameters, context)
        self._bands = band_numbers(self, parameters, context, self.BANDS)
        self._extent = None
        if parameters.get(self.EXTENT):
            # In the raster's CRS (a GCP raster's or a product's: its GCPs'); the engine finds
            # its pixels on the grid it reads (warped on the fly for a GCP raster).
            given = parameters[self.EXTENT]
            named = re.search(r"\[([^\]]+)\]\s*$", given) if isinstance(given, str) else None
            if named and not self.parameterAsExtentCrs(parameters, self.EXTENT,
                                                       context).isValid():
                raise QgsProcessingException(
                    f"EXTENT: its CRS '{named.group(1)}' is not one QGIS knows, so the extent "
                    "cannot be placed. Give a known CRS (e.g. [EPSG:32631]), or none for the "
                    "raster's own.")
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            self._extent = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                            extent.yMaximum())
        self._model = model_inputs(self, parameters, context)
        self._values = read_values(self, "segment", parameters, context)
        probs = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context)
        classes = self.parameterAsOutputLayer(parameters, self.CLASSES, context) or None
        self._destinations = [(self.PROBABILITIES, probs)] + (
            [(self.CLASSES, classes)] if classes else [])
        self._to_load = layers_to_load(context, self._destinations)
        return True

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        # The task's thread: only the copies prepareAlgorithm made, never a parameter or layer.
        destinations = self._destinations
        restore_layers_to_load(context, self._to_load)
        return run_guarded(
            lambda: self._segment(feedback, destinations),
            context, feedback, destinations, noun="Segmentation",
            memory_message="Not enough memory to segment. Lower TILE_SIZE or BATCH_SIZE.")

    def _segment(self, feedback, destinations):
        from ..core.job import segment_to_files

        model = open_model_for_run(self, self._model, feedback, destinations)
        values = self._values
        progress, cancel = feedback_callbacks(feedback)
        paths = dict(destinations)
        summary = segment_to_files(
            model, self._source, paths[self.PROBABILITIES], paths.get(self.CLASSES),
            bands=self._bands, extent=self._extent, tile_size=values["tile_size"],
            overlap=values["overlap"], batch_size=values["batch_size"], progress=progress,
            log=feedback_log(feedback), cancel=cancel)
        feedback.pushInfo(f"{summary['n_tiles']} tiles of {summary['tile_size']} px, overlap "
                          f"{summary['overlap']} px; pixels per class: {summary['class_counts']}")
        return paths

