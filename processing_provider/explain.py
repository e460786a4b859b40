"""segexplainer:explain_shap, explain_rise and explain_occlusion.

One base class holds the shared inputs (raster, bands, model, region, class, window, baseline,
seed, batch size) and outputs (excitation, inhibition, signed, cells, report); each method adds
its own parameters. The work itself is ``core.explain_region`` on a window read from the raster.
"""

import json
import time

import numpy as np
from qgis.core import (QgsCoordinateTransform, QgsGeometry, QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterBand, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from .common import (OutputSet, feedback_callbacks, open_model_for_run, plugin_version,
                     raster_source_path, run_guarded, threads_parameter, write_failure)
from .styling import style_on_load
from .compat import ADVANCED, NUMBER_DOUBLE, SOURCE_POINT, SOURCE_POLYGON

NODATA = -9999.0
BASELINES = ["mean", "zero", "constant", "blur", "inpaint", "infill"]
BASELINE_LABELS = ["Per-band image mean (SAR default)", "Zero", "Constant (BASELINE_VALUE)",
                   "Gaussian blur", "Biharmonic inpainting (slow)",
                   "Neighbour-average infill (occlusion)"]


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
                "whose prediction over the region is the whole window's (checked to 1e-6 on the "
                "image, on everything switched off and on half of it switched off), so a fully "
                "convolutional model costs less in a large window. RISE and occlusion then give "
                "the uncropped result up to float rounding; SHAP cells wholly outside the crop "
                "get exactly 0 and leave the game, so sampled (not exact) SHAP values are "
                "estimated from other coalitions than without CROP. The log says which crop was "
                "used, or why none. Crop "
                "edges lie on multiples of CROP_MULTIPLE pixels (the model's total stride, 32 "
                "for a 5-level U-Net).</p>")

    # -- parameters ---------------------------------------------------------------------------
    def method_parameters(self):
        """``[(KEY, QgsProcessingParameter, engine keyword)]`` of this method."""
        return []

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, "Bands in model-channel order (default: all bands)", None, self.INPUT,
            optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, "ONNX segmentation model", extension="onnx"))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.ROI, "Region of interest (polygons or points)",
            [SOURCE_POLYGON, SOURCE_POINT]))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS, "Class to explain (name or index from the model's metadata)"))
        self.addParameter(QgsProcessingParameterNumber(
            self.WINDOW, "Explanation window in pixels (0 = the model's tile size, else 512)",
            defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.BASELINE, "Value of switched-off pixels", options=BASELINE_LABELS,
            defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.BASELINE_VALUE, "Constant baseline value (raw raster units)",
            NUMBER_DOUBLE, defaultValue=0.0))
        for _, param, _ in self.method_parameters():
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, "Images per model call", defaultValue=1, minValue=1))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CROP, "Crop to the model's receptive field (verified)", defaultValue=False))
        multiple = QgsProcessingParameterNumber(
            self.CROP_MULTIPLE, "Crop edges on multiples of this many pixels (the model's stride)",
            defaultValue=32, minValue=1)
        multiple.setFlags(multiple.flags() | ADVANCED)
        self.addParameter(multiple)
        self.addParameter(threads_parameter())
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
        for key, label in [("PREDICTION", "Region score on the unmasked image"),
                           ("BASE_VALUE", "Region score with everything switched off"),
                           ("SUM_CONTRIBUTIONS", "Sum of contributions (SHAP: cell values; "
                            "occlusion: best tree's leaves; RISE: prediction - base value)"),
                           ("N_EVALUATIONS", "Model evaluations"), ("SECONDS", "Wall time (s)")]:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    # -- main thread: copy what is needed from layers --------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        self._source = raster_source_path(layer)
        self._layer_name = layer.name()
        self._bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        source = self.parameterAsSource(parameters, self.ROI, context)
        if source is None:
            raise QgsProcessingException("ROI: no region layer was given. Choose a polygon or "
                                         "point layer, or draw a region in the dock.")
        transform = QgsCoordinateTransform(source.sourceCrs(), layer.crs(),
                                           context.transformContext())
        geometries = []
        for feature in source.getFeatures():
            geom = QgsGeometry(feature.geometry())
            if geom.isNull() or geom.isEmpty():
                continue
            geom.transform(transform)
            if not geom.isGeosValid():
                geom = geom.makeValid()
            geometries.append(geom)
        if not geometries:
            raise QgsProcessingException(
                "ROI: the region layer has no features with a geometry (or none are selected "
                "when 'Selected features only' is ticked). Draw or select a region first.")
        self._roi_wkb = bytes(QgsGeometry.unaryUnion(geometries).asWkb())
        return True

    # -- worker thread ------------------------------------------------------------------------
    def _destinations(self, parameters, context):
        """``[(key, path)]`` of the outputs asked for, in writing order."""
        keys = [self.EXCITATION, self.INHIBITION, self.SIGNED]
        if self.HAS_CELLS:
            keys.append(self.CELLS)
        out = [(key, self.parameterAsOutputLayer(parameters, key, context)) for key in keys]
        out.append((self.REPORT, self.parameterAsFileOutput(parameters, self.REPORT, context)))
        return [(key, path) for key, path in out if path]

    def check_job(self, job, params):
        """Refuse parameters that cannot work on this window (ValueError); none by default."""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        started = time.perf_counter()
        destinations = self._destinations(parameters, context)
        return run_guarded(
            lambda: self._explain(parameters, context, feedback, started, destinations),
            context, feedback, destinations, noun="Explanation",
            memory_message="Not enough memory for this explanation. Lower BATCH_SIZE or "
                           "WINDOW.")

    def _explain(self, parameters, context, feedback, started, destinations):
        from ..core.errors import ModelError

        _, model = open_model_for_run(self, parameters, context, feedback, destinations)
        class_index = resolve_class(self.parameterAsString(parameters, self.CLASS, context),
                                    model.class_names)
        params = {engine: self._value(parameters, key, param, context)
                  for key, param, engine in self.method_parameters()}
        if params.get("n_samples") == 0:
            params["n_samples"] = None  # the engine's default, 2 M + 2048
        baseline = BASELINES[self.parameterAsEnum(parameters, self.BASELINE, context)]
        params.update(
            baseline=baseline, seed=self.parameterAsInt(parameters, self.SEED, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context))
        if baseline == "constant":
            params["baseline_value"] = self.parameterAsDouble(parameters, self.BASELINE_VALUE,
                                                              context)
        crop_multiple = self.parameterAsInt(parameters, self.CROP_MULTIPLE, context)
        if self.parameterAsBoolean(parameters, self.CROP, context):
            params.update(crop="auto", crop_multiple=crop_multiple)
        window_size = self.parameterAsInt(parameters, self.WINDOW, context)
        try:
            job = prepare_job(model, self._source, self._bands, self._roi_wkb, window_size)
            self.check_job(job, params)
        except (ModelError, ValueError) as exc:
            raise QgsProcessingException(str(exc)) from exc
        for warning in job["warnings"]:
            feedback.pushWarning(warning)
        feedback.pushInfo(f"Window of {job['window'].height} x {job['window'].width} px at row "
                          f"{job['window'].row0}, column {job['window'].col0}; region of "
                          f"{int(job['mask'].sum())} px; class '{model.class_names[class_index]}'")
        progress, cancel = feedback_callbacks(feedback)
        from ..core.explain import explain_region

        result = explain_region(model, job["image"], job["mask"], [class_index], self.METHOD,
                                progress=progress, cancel=cancel, **params)
        if "crop" in result.details:
            feedback.pushInfo(crop_message(result.details["crop"], job["window"]))
        # Every output records the crop settings, also when CROP is off (crop None).
        recorded = dict(result.params)
        recorded.setdefault("crop", None)
        recorded.setdefault("crop_multiple", crop_multiple)
        class_name = model.class_names[class_index]
        full = float(np.ravel(result.full_value)[0])
        base = float(np.ravel(result.base_value)[0])
        total = float(np.ravel(result.contribution_total)[0])
        summary = [f"prediction {full:.4f}", f"base value {base:.4f}",
                   f"sum of contributions {total:.4f}", f"{result.n_evaluations} evaluations"]
        metadata = run_metadata(model, class_name, self.METHOD, recorded,
                                window=job["window"], source=self._source, bands=job["bands"],
                                roi_wkb=self._roi_wkb)
        outputs = self._write_outputs(parameters, context, job, result, metadata, class_name,
                                      summary, feedback)
        outputs.update(PREDICTION=full, BASE_VALUE=base, SUM_CONTRIBUTIONS=total,
                       N_EVALUATIONS=int(result.n_evaluations),
                       SECONDS=time.perf_counter() - started)
        feedback.pushInfo(", ".join(summary) + f", {outputs['SECONDS']:.1f} s")
        return outputs

    def _value(self, parameters, key, param, context):
        if isinstance(param, QgsProcessingParameterNumber):
            if param.dataType() == NUMBER_DOUBLE:
                return self.parameterAsDouble(parameters, key, context)
            return self.parameterAsInt(parameters, key, context)
        raise TypeError(key)

    def _write_outputs(self, parameters, context, job, result, metadata, class_name, summary,
                       feedback=None):
        """Write every output under a temporary name, then rename them all together.

        A failure (disk full, a driver error) or a cancellation while writing removes every
        file of the run, those already complete included: the outputs appear together or not
        at all.
        """
        from ..core.batching import check_cancel
        from ..core.errors import ExplanationCancelled
        from ..core.geoio import write_geotiff

        cancel = feedback.isCanceled if feedback is not None else None
        info, gt = job["info"], job["geotransform"]
        nodata = job["nodata"]
        outputs = {}
        rasters = {self.EXCITATION: result.excitation, self.INHIBITION: result.inhibition,
                   self.SIGNED: result.signed}
        styles = {self.EXCITATION: "excitation", self.INHIBITION: "inhibition",
                  self.SIGNED: "signed", self.CELLS: "cells"}
        with OutputSet() as files:
            for key, path in self._destinations(parameters, context):
                check_cancel(cancel)
                try:
                    tmp = files.temporary(path)
                    if key in rasters:
                        data = np.where(nodata, NODATA, rasters[key]).astype(np.float32)
                        write_geotiff(tmp, data, gt, info.crs_wkt, nodata=NODATA,
                                      band_names=[styles[key]],
                                      metadata=dict(metadata, output=styles[key]))
                    elif key == self.CELLS:
                        write_cells(tmp, result, gt, info.crs_wkt, metadata)
                    else:
                        self._write_report(tmp, job, result, class_name, summary)
                except ExplanationCancelled:
                    raise
                except Exception as exc:  # disk full, permissions, driver errors
                    raise write_failure(exc, key) from None
                outputs[key] = path
            check_cancel(cancel)
            try:
                files.commit()
            except OSError as exc:
                raise write_failure(exc) from None
        group = f"{class_name} - {self.METHOD} - {time.strftime('%H:%M:%S')}"
        for key, path in outputs.items():
            if key in styles:
                style_on_load(context, path, styles[key], group,
                              f"{styles[key]} ({class_name}, {self.METHOD})", self._source)
        return outputs

    def _write_report(self, path, job, result, class_name, summary):
        from ..core.report import write_report

        write_report(
            path, job["image"][..., 0], job["mask"],
            result.prediction[..., result.classes[0]], result.signed,
            title=f"{self.TITLE}: class '{class_name}' on {self._layer_name}",
            lines=summary,
            cells=[c["polygon"] for c in result.cells] if self.HAS_CELLS else None)


def crop_message(record, window):
    """The log line for the engine's receptive-field crop record (``details["crop"]``).

    ``window`` is the explanation window on the raster grid; the crop's rows and columns are
    given in the window's own pixels and in the raster's.
    """
    crop = record.get("window")
    if crop is None:
        return (f"Receptive-field crop: none, the whole {window.height} x {window.width} px "
                f"window was evaluated ({record.get('reason')}).")
    r0, r1, c0, c1 = (int(v) for v in crop)  # half-open
    return (f"Receptive-field crop: {r1 - r0} x {c1 - c0} px of the {window.height} x "
            f"{window.width} px window, its rows {r0} to {r1 - 1} and columns {c0} to {c1 - 1} "
            f"(raster rows {window.row0 + r0} to {window.row0 + r1 - 1}, columns "
            f"{window.col0 + c0} to {window.col0 + c1 - 1}), margin {record.get('margin')} px "
            f"around the region; largest difference from the whole window's prediction "
            f"{record.get('max_difference'):.2g} (tolerance {record.get('tolerance'):g}); "
            f"{record.get('n_evaluations')} images evaluated to find it.")


def resolve_class(text, class_names):
    """Index of the class named (or numbered) ``text``; a clear error otherwise."""
    text = (text or "").strip()
    if text in class_names:
        return class_names.index(text)
    lowered = [c.lower() for c in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    raise QgsProcessingException(
        f"CLASS: the model has no class '{text}'. Its classes are: "
        + ", ".join(f"{i} = {c}" for i, c in enumerate(class_names))
        + ". Give one of these names or indices.")


def prepare_job(model, source, bands, roi_wkb, window_size):
    """Read the explanation window and rasterise the region: plain data for ``explain_region``.

    Raises ``ValueError`` with a user-facing message for every input that cannot work.
    """
    from ..core.shapely_geos import import_shapely

    shapely = import_shapely()
    from ..core.geoio import raster_info, read_window, window_geotransform
    from ..core.region import pixel_bounds, place_window, region_mask

    info = raster_info(source)
    if not info.crs_wkt:
        raise ValueError("INPUT: the raster has no coordinate reference system. Assign one so "
                         "the results can be georeferenced.")
    bands = list(bands) if bands else list(range(1, info.n_bands + 1))
    if any(b < 1 or b > info.n_bands for b in bands):
        raise ValueError(f"BANDS: the raster has bands 1 to {info.n_bands}; {bands} asks for "
                         "others.")
    if model.n_channels is not None and len(bands) != model.n_channels:
        raise ValueError(
            f"BANDS: the model takes {model.n_channels} channel(s) but {len(bands)} band(s) "
            f"were given (the raster has {info.n_bands}). Choose {model.n_channels} band(s) "
            "in model-channel order with BANDS.")
    fixed = model.fixed_size
    size = window_size or (fixed[0] if fixed else None) or model.tile_size or 512
    if fixed and (size, size) != tuple(fixed):
        raise ValueError(f"WINDOW: the model only accepts {fixed[0]} x {fixed[1]} inputs; set "
                         f"WINDOW to {fixed[0]} (or 0).")
    gt = info.geotransform
    if gt[2] != 0 or gt[4] != 0:
        raise ValueError("INPUT: the raster's geotransform is rotated. Warp it to a north-up "
                         "grid (Raster > Projections > Warp) first.")
    region = shapely.from_wkb(roi_wkb)
    x0, dx, _, y0, _, dy = gt
    extent = shapely.box(x0, y0 + dy * info.height, x0 + dx * info.width, y0)
    warnings = []
    clipped = region.intersection(extent) if region.geom_type not in ("Point", "MultiPoint") \
        else region
    if clipped.is_empty or not clipped.intersects(extent):
        raise ValueError("ROI: the region of interest lies outside the raster. Draw it on the "
                         "raster, or check the layers' coordinate reference systems.")
    if region.geom_type not in ("Point", "MultiPoint") and \
            clipped.area < region.area * (1 - 1e-9):
        warnings.append("The region crosses the raster's edge; only its part inside the raster "
                        "is explained.")
    window = place_window(pixel_bounds(clipped, gt), size, info.height, info.width)
    if _is_geographic(info.crs_wkt):
        warnings.append(
            "The raster's CRS is geographic (degrees). The window, the region and the cells are "
            "on the raster's own pixel grid, so cells are regular in pixels, not on the ground "
            "(away from the equator a pixel is narrower east-west than north-south). Reproject "
            "the raster to a projected CRS for cells of equal ground size.")
    if size > info.height or size > info.width:
        warnings.append(
            f"The {size} x {size} px window is larger than the raster ({info.height} x "
            f"{info.width} px); the part outside the raster is nodata, shown to the model as "
            "the image's mean.")
    image = read_window(source, window.row0, window.col0, window.height, window.width, bands)
    nodata = np.isnan(image).all(axis=-1)
    mask = region_mask(clipped, gt, window)
    if (mask & nodata).any():
        warnings.append(f"{int((mask & nodata).sum())} region pixel(s) are nodata and are left "
                        "out of the region score.")
        mask &= ~nodata
    if not mask.any():
        raise ValueError("ROI: every pixel of the region is nodata. Draw the region over valid "
                         "image pixels.")
    if nodata.all():
        raise ValueError("INPUT: the explanation window holds only nodata.")
    return {"info": info, "window": window, "image": image, "mask": mask, "nodata": nodata,
            "geotransform": window_geotransform(gt, window.row0, window.col0),
            "warnings": warnings, "bands": bands}


def _is_geographic(crs_wkt):
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        srs.ImportFromWkt(crs_wkt)
    except RuntimeError:
        return False
    return bool(srs.IsGeographic())


#: Longest region outline written into the outputs' metadata as WKT; longer ones are
#: recorded by their SHA-256 only.
MAX_REGION_WKT = 32 * 1024


def run_metadata(model, class_name, method, params, window=None, source=None, bands=None,
                 roi_wkb=None):
    """What every output records, enough to run it again: model file and hash, input raster,
    bands, region (WKT in the raster's CRS), window, class, method, parameters, seed, version."""
    meta = {"seg_explainer_version": plugin_version(), "model_file": str(model.path),
            "model_sha256": model.sha256, "class": class_name, "method": method,
            "parameters": json.dumps(params, sort_keys=True, default=str),
            "seed": str(params.get("seed"))}
    if window is not None:
        meta["window"] = json.dumps([window.row0, window.col0, window.height, window.width])
    if source is not None:
        meta["input_raster"] = str(source)
    if bands is not None:
        meta["bands"] = json.dumps([int(b) for b in bands])
    if roi_wkb is not None:
        import hashlib

        from ..core.shapely_geos import import_shapely

        shapely = import_shapely()
        wkt = shapely.to_wkt(shapely.from_wkb(roi_wkb), rounding_precision=-1)  # exact
        meta["region_sha256"] = hashlib.sha256(roi_wkb).hexdigest()
        if len(wkt) <= MAX_REGION_WKT:
            meta["region_wkt"] = wkt
    return meta


def write_cells(path, result, geotransform, crs_wkt, metadata):
    """The explanation's cells as polygons in map coordinates with value, error and rank."""
    from ..core.shapely_geos import import_shapely

    import_shapely()
    from shapely import affinity

    from ..core.geoio import write_polygons

    x0, dx, _, y0, _, dy = geotransform
    cells = list(result.cells)
    polys = [affinity.affine_transform(c["polygon"], [dx, 0, 0, dy, x0, y0]) for c in cells]
    values = np.array([float(np.ravel(c["value"])[0]) for c in cells])
    order = np.argsort(-values, kind="stable")
    rank = np.empty(len(cells), dtype=np.int64)
    rank[order] = np.arange(1, len(cells) + 1)
    fields = {"cell_id": [int(c["id"]) for c in cells], "value": values.tolist(),
              "rank": rank.tolist()}
    errors = [c.get("standard_error") for c in cells]
    if any(e is not None for e in errors):
        fields["std_error"] = [None if e is None else float(np.ravel(e)[0]) for e in errors]
    if any("depth" in c for c in cells):
        fields["depth"] = [int(c.get("depth", 0)) for c in cells]
    return write_polygons(path, "cells", polys, fields, crs_wkt, metadata=metadata)


class ExplainShapAlgorithm(ExplainAlgorithm):
    METHOD = "shap"
    TITLE = "Explain with hexagonal Kernel SHAP"
    HELP = ("<p>Cuts the window into equal hexagons (HEX_SIZE = circumradius in pixels; 22 gives "
            "about 224 cells on 512 x 512, as in the seed paper), switches hexagons off in "
            "N_SAMPLES combinations and fits Shapley values with Kernel SHAP. Each cell's value "
            "is its contribution to the region's score; the values add up to the prediction "
            "minus the base value (everything switched off). With N_SAMPLES >= 2^M the values "
            "are exact. CELLS holds the hexagons with value, standard error and rank "
            "(1 = strongest excitation).</p>")

    def check_job(self, job, params):
        from ..core.cells import hexagon_grid

        window = job["window"]
        hex_size = params["hex_size"]
        n_cells = hexagon_grid(window.height, window.width, hex_size).n_cells
        if n_cells < 2:
            raise ValueError(
                f"HEX_SIZE: the {window.height} x {window.width} px window holds a single "
                f"hexagon of circumradius {hex_size:g} px, so no part of the image can be "
                f"compared with another. Lower HEX_SIZE (at most {max(2, window.width // 4)}) "
                "or raise WINDOW.")

    def method_parameters(self):
        return [
            ("HEX_SIZE", QgsProcessingParameterNumber(
                "HEX_SIZE", "Hexagon circumradius in pixels", defaultValue=22, minValue=2),
             "hex_size"),
            ("N_SAMPLES", QgsProcessingParameterNumber(
                "N_SAMPLES", "Coalitions to evaluate (0 = 2 x cells + 2048)", defaultValue=0,
                minValue=0), "n_samples"),
        ]


class ExplainRiseAlgorithm(ExplainAlgorithm):
    METHOD = "rise"
    TITLE = "Explain with RISE"
    HAS_CELLS = False
    HELP = ("<p>RISE (Petsiuk et al. 2018): N_MASKS random smooth masks (a GRID_SIZE x "
            "GRID_SIZE Bernoulli grid with keep probability P_KEEP, bilinearly upsampled and "
            "randomly shifted); the saliency is the score-weighted average of the masks. Scores "
            "are centred on their mean so the map is signed: positive = excitation, negative = "
            "inhibition.</p>")

    def method_parameters(self):
        return [
            ("N_MASKS", QgsProcessingParameterNumber(
                "N_MASKS", "Number of masks", defaultValue=2000, minValue=1), "n_masks"),
            ("GRID_SIZE", QgsProcessingParameterNumber(
                "GRID_SIZE", "Mask grid size (cells per side)", defaultValue=8, minValue=1),
             "grid_size"),
            ("P_KEEP", QgsProcessingParameterNumber(
                "P_KEEP", "Probability of keeping a grid cell", NUMBER_DOUBLE,
                defaultValue=0.5, minValue=0.01, maxValue=0.99), "p_keep"),
        ]


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

    def check_job(self, job, params):
        window = job["window"]
        side = min(window.height, window.width)
        depth = params["max_depth"]
        if side / 2 ** depth < 2:
            deepest = max(1, int(np.floor(np.log2(side / 2))))
            raise ValueError(
                f"MAX_DEPTH: {depth} levels cut the {window.height} x {window.width} px window "
                f"into cells of {side / 2 ** depth:.2g} px, and the offsets move the grid by "
                f"half a cell, which must be at least one pixel. Use MAX_DEPTH {deepest} or "
                "less, or raise WINDOW.")

    def method_parameters(self):
        return [
            ("MAX_DEPTH", QgsProcessingParameterNumber(
                "MAX_DEPTH", "Quadtree depth", defaultValue=4, minValue=1, maxValue=8),
             "max_depth"),
            ("N_BEST", QgsProcessingParameterNumber(
                "N_BEST", "Offset heatmaps averaged", defaultValue=5, minValue=1), "n_best"),
        ]
