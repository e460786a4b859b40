"""segexplainer:explain_shap, explain_rise and explain_occlusion.

One base class holds the shared inputs (raster, bands, model, region, class, window, baseline,
seed, batch size) and outputs (excitation, inhibition, signed, cells, report); each method adds
its own parameters (all declared in ``core.parameters``). The work itself is one call of
``core.job.explain_to_files``: read the window, explain, write every output together.
"""

import time
import uuid

from qgis.core import (QgsCoordinateReferenceSystem, QgsGeometry, QgsProcessingAlgorithm,
                       QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterNumber,
                       QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterFileDestination,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from .common import (RasterInputParameter, band_numbers, bands_parameter, feedback_callbacks,
                     feedback_log, forget_outputs, layer_file, layers_to_load, model_inputs,
                     model_parameter, open_model_for_run, raster_input, region_to_raster_crs,
                     restore_layers_to_load, run_guarded)
from .compat import NUMBER_INTEGER, SOURCE_POINT, SOURCE_POLYGON
from .outline import region_outline, write_outline
from .parameters import by_name, check_values, definition, for_algorithm, help_html, read_values
from .styling import (REGION_NAME, colour_scale, result_group_name, result_layer_name,
                      style_on_load)

class ExplainAlgorithm(QgsProcessingAlgorithm):
    """Shared inputs and outputs of the three explanation algorithms."""

    METHOD = None
    TITLE = None
    HAS_CELLS = True
    HELP = ""

    INPUT = "INPUT"
    BANDS = "BANDS"
    MODEL = "MODEL"
    ROI = "ROI"
    CLASS = "CLASS"
    WINDOW = "WINDOW"
    BASELINE = "BASELINE"
    BASELINE_VALUE = "BASELINE_VALUE"
    SEED = "SEED"
    BATCH_SIZE = "BATCH_SIZE"
    CROP = "CROP"
    CROP_MULTIPLE = "CROP_MULTIPLE"
    EXCITATION = "EXCITATION"
    INHIBITION = "INHIBITION"
    SIGNED = "SIGNED"
    CELLS = "CELLS"
    REPORT = "REPORT"
    REGION = "REGION"
    FAITHFULNESS = "FAITHFULNESS"

    def name(self):
        return f"explain_{self.METHOD}"

    def displayName(self):  # noqa: N802
        return self.TITLE

    def group(self):
        return "Explain a region"

    def groupId(self):  # noqa: N802
        return "explain"

    def createInstance(self):  # noqa: N802
        return type(self)()

    def shortHelpString(self):  # noqa: N802
        return (self.HELP + "<p>The region of interest is the union of the ROI layer's features "
                "(or of the selected ones), reprojected to the raster's CRS. The explanation "
                "window is a WINDOW x WINDOW block of the raster's own pixel grid around it. "
                "The explained score is the model's mean probability of CLASS over the region's "
                "pixels. Outputs are on the input raster's grid: EXCITATION (areas that pushed "
                "the score up), INHIBITION (areas that pushed it down), both non-negative, and "
                "SIGNED = EXCITATION - INHIBITION.</p>"
                "<p>CROP runs the model on the smallest part of the window around the region "
                "whose prediction over the region is the whole window's (checked to "
                f"{by_name('crop_tolerance').default:g} on the "
                "image, on everything switched off and on half of it switched off), so a fully "
                "convolutional model costs less in a large window. RISE and occlusion then give "
                "the uncropped result up to float rounding; SHAP cells wholly outside the crop "
                "get exactly 0 and leave the game, so sampled (not exact) SHAP values are "
                "estimated from other coalitions than without CROP. The log says which crop was "
                "used, or why none. Crop "
                "edges lie on multiples of CROP_MULTIPLE pixels (the model's total stride; "
                f"default {by_name('crop_multiple').default}, a 5-level U-Net's).</p>"
                "<p>FAITHFULNESS (steps, 0 = off) measures the "
                "deletion and insertion AUCs of the signed map against a random ordering "
                "(DELETION_AUC, INSERTION_AUC, RANDOM_*; also in the outputs' metadata and "
                "the report).</p><p>REGION (optional) writes the region's outline, in the "
                "region layer's CRS, with the outputs; loaded results are named, styled and "
                "grouped per run (newest group on top, earlier ones switched off).</p>"
                + help_html(self.METHOD))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            ok, message = check_values(self, self.METHOD, parameters, context)
        return ok, message

    # -- parameters ---------------------------------------------------------------------------
    @classmethod
    def method_parameters(cls):
        """The declarations (core.parameters) of the parameters only this method has."""
        return tuple(d for d in for_algorithm(cls.METHOD) if d.algorithms == (cls.METHOD,))

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(RasterInputParameter(self.INPUT, "Input raster"))
        self.addParameter(bands_parameter(self.BANDS, self.INPUT))
        self.addParameter(model_parameter(self.MODEL))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ROI, "Region of interest (polygons or points)",
            [SOURCE_POLYGON, SOURCE_POINT]))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS, "Class to explain (name or index from the model's metadata)"))
        for decl in for_algorithm(self.METHOD):
            self.addParameter(definition(decl))
        faithfulness = QgsProcessingParameterNumber(
            self.FAITHFULNESS, "Deletion/insertion AUC steps (0 = off)", NUMBER_INTEGER,
            defaultValue=0, minValue=0, maxValue=1000)
        faithfulness.setHelp(
            "Faithfulness (RISE paper): after the explanation, remove (deletion) and restore "
            "(insertion) the window's pixels in the signed map's order and in a random order, "
            "in this many steps, scoring the region each time (4 x (steps + 1) more model "
            "evaluations). A faithful map has a lower deletion AUC and a higher insertion AUC "
            "than the random ordering. 0 = not measured.")
        self.addParameter(faithfulness)
        self.addParameter(QgsProcessingParameterRasterDestination(self.EXCITATION, "Excitation"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.INHIBITION, "Inhibition"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SIGNED, "Signed explanation (excitation - inhibition)", optional=True,
            createByDefault=False))
        if self.HAS_CELLS:
            self.addParameter(QgsProcessingParameterVectorDestination(
                self.CELLS, "Cells", SOURCE_POLYGON, optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, "Report figure", "PNG files (*.png)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.REGION, "Region of interest outline (as given, in its own CRS)", optional=True,
            createByDefault=False))
        for key, label in [("PREDICTION", "Region score on the unmasked image"),
                           ("BASE_VALUE", "Region score with everything switched off"),
                           ("SUM_CONTRIBUTIONS", "Sum of contributions (SHAP: cell values; "
                            "occlusion: best tree's leaves; RISE: prediction - base value)"),
                           ("MAX_ABS_CONTRIBUTION", "Largest |contribution| (the colour "
                            "scale follows it)"),
                           ("DELETION_AUC", "Deletion AUC (FAITHFULNESS; lower = faithful)"),
                           ("INSERTION_AUC", "Insertion AUC (FAITHFULNESS; higher = faithful)"),
                           ("RANDOM_DELETION_AUC", "Deletion AUC of a random ordering"),
                           ("RANDOM_INSERTION_AUC", "Insertion AUC of a random ordering"),
                           ("N_EVALUATIONS", "Model evaluations"), ("SECONDS", "Wall time (s)")]:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    # -- main thread: copy what is needed from layers --------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Copies everything the run needs (paths, WKB, plain values) on the main thread.

        ``processAlgorithm`` runs in a task's thread while the user goes on working: it reads
        only these copies, never ``parameters`` (which may name layers the user has removed by
        then), a layer or the project.
        """
        self._source, raster_crs, self._layer_name = raster_input(self, parameters, context)
        self._bands = band_numbers(self, parameters, context, self.BANDS)
        source = self.parameterAsSource(parameters, self.ROI, context)
        self._roi_path = layer_file(self.parameterAsVectorLayer(parameters, self.ROI, context))
        if source is None:
            raise QgsProcessingException("ROI: no region layer was given. Choose a polygon or "
                                         "point layer, or draw a region in the dock.")
        geometries, given = [], []
        for feature in source.getFeatures():
            geom = QgsGeometry(feature.geometry())
            if geom.isNull() or geom.isEmpty():
                continue
            given.append(QgsGeometry(geom))
            geom = region_to_raster_crs(geom, source.sourceCrs(), raster_crs, context,
                                        feedback)
            if not geom.isGeosValid():
                geom = geom.makeValid()
            geometries.append(geom)
        if not geometries:
            raise QgsProcessingException(
                "ROI: the region layer has no features with a geometry (or none are selected "
                "when 'Selected features only' is ticked). Draw or select a region first.")
        self._roi_wkb = bytes(QgsGeometry.unaryUnion(geometries).asWkb())
        self._outline = (region_outline(given), QgsCoordinateReferenceSystem(source.sourceCrs()))
        self._class = self.parameterAsString(parameters, self.CLASS, context)
        self._model = model_inputs(self, parameters, context)
        self._values = read_values(self, self.METHOD, parameters, context)
        self._faithfulness = self.parameterAsInt(parameters, self.FAITHFULNESS, context)
        self._destinations = self._output_paths(parameters, context)
        self._to_load = layers_to_load(context, self._destinations)
        self._loaded = []
        return True

    def _output_paths(self, parameters, context):
        """``[(key, path)]`` of the outputs asked for, in writing order."""
        keys = [self.EXCITATION, self.INHIBITION, self.SIGNED]
        if self.HAS_CELLS:
            keys.append(self.CELLS)
        out = [(key, self.parameterAsOutputLayer(parameters, key, context)) for key in keys]
        out.append((self.REPORT, self.parameterAsFileOutput(parameters, self.REPORT, context)))
        out.append((self.REGION, self.parameterAsOutputLayer(parameters, self.REGION, context)))
        return [(key, path) for key, path in out if path]

    # -- worker thread: the copies only --------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        started = time.perf_counter()
        destinations = self._destinations
        restore_layers_to_load(context, self._to_load)
        return run_guarded(
            lambda: self._explain(context, feedback, started, destinations),
            context, feedback, destinations, noun="Explanation",
            memory_message="Not enough memory for this explanation. Lower BATCH_SIZE or "
                           "WINDOW.")

    def _explain(self, context, feedback, started, destinations):
        from ..core.job import explain_to_files

        model = open_model_for_run(self, self._model, feedback, destinations)
        params = dict(self._values)
        params.pop("n_threads")  # read by open_model_for_run
        window = params.pop("window")
        if params["baseline"] != "constant":
            del params["baseline_value"]
        progress, cancel = feedback_callbacks(feedback)
        region_path = dict(destinations).get(self.REGION)
        run = explain_to_files(
            model, self._source, self._roi_wkb, self._class, self.METHOD,
            bands=self._bands, window=window,
            outputs={key.lower(): path for key, path in destinations if key != self.REGION},
            report_title=lambda name: f"{self.TITLE}: class '{name}' on {self._layer_name}",
            log=feedback_log(feedback),
            progress=progress, cancel=cancel, faithfulness_steps=self._faithfulness, **params)
        largest = largest_contribution(run.result.signed)
        _, negligible = colour_scale(largest)
        if negligible:
            feedback.pushWarning(negligible)
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        group = result_group_name(self._layer_name, run.class_name, self.METHOD, when)
        outputs = {}
        for name, path in run.outputs.items():
            outputs[name.upper()] = path
            if name != "report":
                self._loaded.append((path, name, group,
                                     result_layer_name(name, run.class_name, self.METHOD, when),
                                     largest))
        if region_path:
            self._write_outline(region_path, context, feedback, outputs)
            if "REGION" in outputs:
                self._loaded.append((region_path, "region", group, result_layer_name(
                    REGION_NAME, run.class_name, self.METHOD, when), None))
        faith = run.faithfulness
        nan = float("nan")
        outputs.update(
            DELETION_AUC=faith.deletion_auc if faith else nan,
            INSERTION_AUC=faith.insertion_auc if faith else nan,
            RANDOM_DELETION_AUC=faith.random_deletion_auc if faith else nan,
            RANDOM_INSERTION_AUC=faith.random_insertion_auc if faith else nan)
        outputs.update(PREDICTION=run.prediction, BASE_VALUE=run.base_value,
                       MAX_ABS_CONTRIBUTION=largest,
                       SUM_CONTRIBUTIONS=run.sum_contributions,
                       N_EVALUATIONS=int(run.result.n_evaluations),
                       SECONDS=time.perf_counter() - started)
        feedback.pushInfo(", ".join(run.summary) + f", {outputs['SECONDS']:.1f} s")
        return outputs

    def _write_outline(self, path, context, feedback, outputs):
        """The region outline next to the outputs (``outputs["REGION"]``); a failure is a
        warning, since the explanation itself was written."""
        wkb, crs = self._outline
        try:
            if wkb is None:
                raise OSError("no geometry")
            write_outline(wkb, crs, path)
        except OSError as exc:
            feedback.pushWarning(f"The region outline could not be written to {path} ({exc}).")
            forget_outputs(context, [path])
            return
        outputs[self.REGION] = path

    # -- main thread again ---------------------------------------------------------------------
    def postProcessAlgorithm(self, context, feedback):  # noqa: N802
        """Styles and groups the results QGIS loads (the toolbox's run), on the main thread."""
        run = uuid.uuid4().hex          # one id for this run's layers (place_in_group)
        for path, style, group, name, largest in self._loaded:
            style_on_load(context, path, style, group, name, self._source, largest, run)
        return {}


def largest_contribution(signed):
    """The largest finite |value| of a signed map (0.0 when there is none)."""
    import numpy as np

    values = np.abs(np.asarray(signed, dtype=np.float64))
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 0.0


class ExplainShapAlgorithm(ExplainAlgorithm):
    METHOD = "shap"
    TITLE = "Explain with hexagonal Kernel SHAP"
    HELP = ("<p>Cuts the window into equal hexagons (HEX_SIZE = circumradius in pixels), "
            "switches hexagons off in N_SAMPLES combinations and fits Shapley values with "
            "Kernel SHAP. Each cell's value is its contribution to the region's score; the "
            "values add up to the prediction minus the base value (everything switched off). "
            "With N_SAMPLES >= 2^M the values are exact. CELLS holds the hexagons with value, "
            "standard error and rank (1 = strongest excitation).</p>")


class ExplainRiseAlgorithm(ExplainAlgorithm):
    METHOD = "rise"
    TITLE = "Explain with RISE"
    HAS_CELLS = False
    HELP = ("<p>RISE (Petsiuk et al. 2018): N_MASKS random smooth masks (a GRID_SIZE x "
            "GRID_SIZE Bernoulli grid with keep probability P_KEEP, bilinearly upsampled and "
            "randomly shifted); the saliency is the score-weighted average of the masks. Scores "
            "are centred on their mean so the map is signed: positive = excitation, negative = "
            "inhibition.</p>")


class ExplainOcclusionAlgorithm(ExplainAlgorithm):
    METHOD = "occlusion"
    TITLE = "Explain with multi-scale occlusion"
    HELP = ("<p>Multi-scale occlusion: a quadtree of occluded rectangles down to MAX_DEPTH "
            "levels; a rectangle's importance is the unoccluded score minus the occluded score; "
            "children are kept only where their summed importance exceeds their parent's; "
            "offset grids (multiples of half the smallest cell) are tried and the N_BEST offset "
            "heatmaps by importance per covered area are averaged. Each distinct rectangle is "
            "evaluated once. CELLS holds the chosen quadtree leaves with depth and "
            "importance.</p>")

