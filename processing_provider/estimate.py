"""What the dock shows before a run, from QGIS objects: the plan (the region's size on the
raster, then :func:`~seg_explainer.core.estimate.plan_run`), the model's description, and the
model timed on the window (occlusion's trees sampled) for the time estimate. The dock reaches
the engine through here."""

from qgis.core import QgsCoordinateTransform, QgsCsException, QgsGeometry, QgsProject

from ..core.errors import ModelError, UserError
from ..core.estimate import format_duration, plan_run, region_size
from ..core.region import DEFAULT_EDGE
from .parameters import by_key

__all__ = ["DEFAULT_EDGE", "ModelError", "UserError", "describe_model", "engine_params",
           "estimate_inputs", "format_duration", "measure_run", "occlusion_sample",
           "plan_for_region", "region_on_raster", "region_size_on_raster"]


def region_on_raster(geometry, crs, raster):
    """``geometry`` (a QgsGeometry in ``crs``) in the raster layer's CRS; None when it cannot be
    brought there (the run then says why)."""
    geom = QgsGeometry(geometry)
    if crs.isValid() and raster.crs().isValid() and crs != raster.crs():
        transform = QgsCoordinateTransform(crs, raster.crs(), QgsProject.instance())
        try:
            geom.transform(transform)
        except QgsCsException:
            return None
    return None if geom.isNull() else geom


def region_size_on_raster(geom, raster):
    """``(pixels, extent)`` of ``geom`` (a QgsGeometry in the raster layer's CRS:
    :func:`region_on_raster`) on the raster's grid: its area in pixels and the larger side of
    its bounding box in pixels; None for a raster without pixel size."""
    dx, dy = abs(raster.rasterUnitsPerPixelX()), abs(raster.rasterUnitsPerPixelY())
    if not dx or not dy:
        return None
    extent = raster.extent()      # the run measures the region on this grid (core)
    return region_size(bytes(geom.asWkb()),
                       (extent.xMinimum(), dx, 0.0, extent.yMaximum(), 0.0, -dy))


def engine_params(values):
    """``{engine parameter name: value}`` from a form's ``{Processing key: form value}``."""
    return {by_key(key).name: by_key(key).from_form(value) for key, value in values.items()}


def occlusion_sample(values, geom, raster, class_name, bands):
    """What :func:`~seg_explainer.core.estimate.measured_occlusion_evaluations` needs to
    sample a run's occlusion trees, as plain values (for a background task): ``{"source",
    "roi_wkb", "bands", "window", "class_name", "params"}``. ``values`` are the form's
    ``{Processing key: value}``, ``geom`` the region in the raster's CRS."""
    params = engine_params(values)
    window = params.pop("window", None) or None
    return {"source": raster.source().split("|")[0], "roi_wkb": bytes(geom.asWkb()),
            "bands": tuple(bands) if bands else None, "window": window,
            "class_name": class_name, "params": params}


def plan_for_region(method, values, geom, raster, model_info):
    """The :class:`~seg_explainer.core.estimate.Plan` of a run of ``method`` with the form's
    ``values`` (``{Processing key: form value}``) on the region ``geom`` (in the raster's CRS)
    of ``raster``; None when the region's size on the raster is unknown."""
    size = region_size_on_raster(geom, raster)
    if size is None:
        return None
    params = engine_params({key: value for key, value in values.items()
                            if key in ("WINDOW", "HEX_SIZE", "N_SAMPLES", "N_MASKS",
                                       "MAX_DEPTH")})
    info = model_info or {}
    return plan_run(method, params, region_pixels=size[0], region_extent=size[1],
                    fixed_size=info.get("fixed_size"), tile_size=info.get("tile_size"),
                    context=info.get("context"))


def estimate_inputs(method, values, outline, raster, model_info, class_name, bands):
    """``(plan, occlusion sample)`` of a form's run: the :func:`plan_for_region` of
    ``method`` with the form's ``values`` (``{Processing key: value}``) on the region
    ``outline`` (``(QgsGeometry, CRS)``) of ``raster``, and for occlusion the
    :func:`occlusion_sample` inputs (else None). ``bands`` is ``(band numbers, problem)``.
    ``(None, None)`` until a model, a raster and a region are chosen."""
    if model_info is None or outline is None or raster is None:
        return None, None
    geom = region_on_raster(outline[0], outline[1], raster)     # once for both
    if geom is None:
        return None, None
    plan = plan_for_region(method, values, geom, raster, model_info)
    numbers, problem = bands
    if plan is None or method != "occlusion" or problem:
        return plan, None
    return plan, occlusion_sample(values, geom, raster, class_name, numbers)


def describe_model(path):
    """``SegmentationModel.load(path).describe()``; raises ModelError when the model cannot be
    used (the message says why)."""
    from ..core.model import SegmentationModel

    return SegmentationModel.load(path).describe()


def measure_run(model_path, window, n_channels, batch_size, occlusion=None, cancel=None):
    """``(seconds per evaluation, occlusion's expected evaluations or None)`` of a run on a
    ``window`` px window, ``batch_size`` images a model call (None: automatic): the engine's
    evaluation path timed
    (:func:`~seg_explainer.core.estimate.seconds_per_evaluation`) and, given ``occlusion``
    (:func:`occlusion_sample`), a sample of occlusion's trees grown on the real raster and
    region (:func:`~seg_explainer.core.estimate.measured_occlusion_evaluations`). Also times
    the machine for SHAP's own work (:func:`~seg_explainer.core.solve_time.calibrate`, once
    per process), so that the estimates after it are arithmetic. None when ``cancel()`` said
    so. Plain values in and out: runs in a background task. Raises UserError for what the run
    itself would refuse."""
    from ..core.errors import ExplanationCancelled
    from ..core.estimate import measured_occlusion_evaluations, seconds_per_evaluation
    from ..core.job import read_job, resolve_class
    from ..core.model import SegmentationModel
    from ..core.solve_time import calibrate

    calibrate()
    model = SegmentationModel.load(model_path)
    per_evaluation = seconds_per_evaluation(model, window, n_channels, batch_size, cancel=cancel)
    if per_evaluation is None:
        return None
    evaluations = None
    if occlusion is not None:
        job = read_job(model, occlusion["source"], occlusion["roi_wkb"],
                       bands=occlusion["bands"], window=occlusion["window"])
        index = resolve_class(occlusion["class_name"], model.class_names)
        try:
            evaluations = measured_occlusion_evaluations(model, job, index, occlusion["params"],
                                                         cancel=cancel)[0]
        except ExplanationCancelled:
            return None
    return per_evaluation, evaluations
