"""What the algorithms share: turning QGIS inputs into plain data for core, and core errors
into messages a user understands."""

import os
import warnings
from pathlib import Path

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsCsException,
                       QgsGeometry, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingParameterBand, QgsProcessingParameterFile,
                       QgsProcessingParameterRasterLayer, QgsRasterLayer)


def sentinel1_product(value):
    """``value`` when it is a string naming a Sentinel-1 product in one of the forms the engine
    reads (a ``.SAFE`` folder, its manifest.safe, a ``.zip`` of it, a ``/vsizip/`` path, a
    ``SENTINEL1_CALIB:``/``SENTINEL1_DS:`` name: :func:`~..core.sentinel1.is_sentinel1`), else
    None."""
    from ..core.sentinel1 import is_sentinel1

    if isinstance(value, str) and value.strip() and is_sentinel1(value.strip()):
        return value.strip()
    return None


def raster_band_count(layer):
    """Bands a run reads from the raster layer ``layer``: those of its file as the engine opens
    it (a Sentinel-1 product: its measurements). Not always ``layer.bandCount()``: QGIS shows a
    raster georeferenced only by GCPs (a Sentinel-1 product among them) through a warped VRT
    with an alpha band the file does not have. The layer's own count for a layer that is not
    a file GDAL reads here (the run then says why)."""
    from ..core.errors import InputError
    from ..core.geoio import raster_info
    from ..core.sentinel1 import is_sentinel1, measurements, resolve_manifest

    if layer.providerType() != "gdal":
        return layer.bandCount()
    source = layer.source().split("|")[0]
    try:
        if is_sentinel1(source):
            return len(measurements(resolve_manifest(source)[0])) or layer.bandCount()
        return raster_info(source).n_bands
    except InputError:
        return layer.bandCount()


def layer_for_file(path):
    """``(QgsRasterLayer or None, problem)`` for a raster file the user chose.

    A Sentinel-1 product (a zip of its .SAFE folder, the folder, its manifest.safe) opens as
    its manifest.safe, inside the zip through ``/vsizip/``: GDAL reads a product there (a
    plain zip is "Cannot open GDAL dataset"), and the run calibrates it from that source as
    from the zip (``core.sentinel1``). The layer is named after the file (the product's name
    for a product)."""
    from ..core.errors import InputError
    from ..core.sentinel1 import is_sentinel1, resolve_manifest

    path = str(path)
    source, name = path, Path(path).stem
    if is_sentinel1(path):
        try:
            source = resolve_manifest(path)[0]
        except InputError as exc:
            return None, str(exc).removeprefix("INPUT: ")
        name = Path(source).parent.stem or name
    layer = QgsRasterLayer(source, name, "gdal")
    if not layer.isValid():
        why = layer.error().summary().strip() or "GDAL cannot read it"
        return None, (f"{path} cannot be opened as a raster ({why}). Choose a raster file "
                      "GDAL reads (e.g. a GeoTIFF) or a Sentinel-1 product (its .zip or its "
                      "manifest.safe).")
    return layer, ""


class RasterInputParameter(QgsProcessingParameterRasterLayer):
    """A raster layer parameter that also takes a Sentinel-1 product by its path.

    QGIS checks a raster layer parameter by loading the value as a layer
    (``QgsProcessingParameterRasterLayer::checkValueIsAcceptable`` ->
    ``QgsProcessingUtils::mapLayerFromString``), and refuses what its GDAL provider cannot
    load ("Could not load source layer for INPUT"): a zipped SAFE product or a
    ``SENTINEL1_DS:`` name (GDAL 3.6 opens neither), a ``/vsizip/`` path on QGIS 3.22 (it
    looks for the file on disk). The engine reads all of them (``core.sentinel1``), so this
    parameter accepts them as they are and :func:`raster_input` hands the path to the engine
    unchanged; anything else is checked as QGIS does.
    """

    def clone(self):
        copy = RasterInputParameter(self.name(), self.description(), self.defaultValue())
        copy.setFlags(self.flags())
        copy.setHelp(self.help())
        return copy

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802
        if sentinel1_product(value):
            return True
        return super().checkValueIsAcceptable(value, context)


def bands_parameter(name="BANDS", parent="INPUT"):
    """The bands of the raster ``parent`` fed to the model's channels, in order (optional)."""
    return QgsProcessingParameterBand(
        name, "Bands in model-channel order (default: all bands)", None, parent,
        optional=True, allowMultiple=True)


def model_parameter(name="MODEL"):
    """The ONNX model file."""
    return QgsProcessingParameterFile(name, "ONNX segmentation model", extension="onnx")


def raster_input(algorithm, parameters, context, name="INPUT"):
    """``(source, crs, display name)`` of a raster input (a :class:`RasterInputParameter`):
    what the engine reads, the CRS regions and extents are given in, and a name for the log.

    A Sentinel-1 product given by its path goes to the engine as it is, whether or not QGIS
    could load it as a layer, so a product is read one way on every QGIS and GDAL: calibrated
    by the engine, its regions in the CRS of its geolocation grid
    (:data:`~..core.sentinel1.PRODUCT_CRS`). Anything else is a layer
    (:func:`raster_source_path`).
    """
    value = parameters.get(name)
    product = sentinel1_product(value if isinstance(value, str)
                                else algorithm.parameterAsString(parameters, name, context))
    if product:
        from ..core.errors import InputError
        from ..core.sentinel1 import PRODUCT_CRS, resolve_manifest

        try:
            manifest = resolve_manifest(product)[0]
        except InputError as exc:
            raise QgsProcessingException(str(exc)) from None
        label = os.path.basename(os.path.dirname(manifest)) or os.path.basename(product)
        return product, QgsCoordinateReferenceSystem(PRODUCT_CRS), label
    layer = algorithm.parameterAsRasterLayer(parameters, name, context)
    return raster_source_path(layer, name), QgsCoordinateReferenceSystem(layer.crs()), \
        layer.name()


def raster_source_path(layer, param_name="INPUT"):
    """The file GDAL can open for ``layer``, or a QgsProcessingException saying what to do."""
    if layer is None:
        raise QgsProcessingException(f"{param_name}: no raster layer was given. Choose a raster "
                                     "layer or a raster file.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{param_name}: the layer '{layer.name()}' comes from the '{layer.providerType()}' "
            "provider, which cannot be read window by window. Save it as a GeoTIFF "
            "(Export > Save As...) and use that file.")
    source = layer.source().split("|")[0]
    if not layer.crs().isValid():
        raise QgsProcessingException(
            f"{param_name}: the raster '{layer.name()}' has no coordinate reference system. "
            "Assign one (Layer Properties > Source) so results can be georeferenced.")
    return source


#: The key of the onnxruntime threads parameter (declared in core.parameters as n_threads).
THREADS = "THREADS"


def load_model(path, n_threads=None):
    """Load an ONNX model through core, turning its errors into a QgsProcessingException.

    Core checks the file first (:func:`..core.onnx_check.check_model_file`): a model may only
    read data files kept in its own folder. Custom operator libraries are never registered, so
    a model needing one (a Python operator included) is refused, not run. ``n_threads`` 0 or
    None is onnxruntime's default.
    """
    from ..core.errors import ModelError
    from ..core.model import SegmentationModel
    from ..core.onnx_check import ModelFileError

    if not path or not os.path.isfile(path):
        raise QgsProcessingException(
            f"MODEL: the model file '{path}' does not exist. Choose an .onnx segmentation "
            "model file.")
    try:
        return SegmentationModel.load(path, n_threads=n_threads or None)
    except ModelFileError as exc:
        raise QgsProcessingException(f"MODEL: {exc}.") from None
    except ModelError as exc:
        raise QgsProcessingException(f"MODEL: {exc}") from None
    except MemoryError:
        raise QgsProcessingException("MODEL: not enough memory to load the model. Close other "
                                     "programs or use a smaller model.") from None


def model_inputs(algorithm, parameters, context):
    """``(model path, onnxruntime threads or None)`` from the ``MODEL`` and ``THREADS``
    parameters: read in ``prepareAlgorithm`` (main thread), used by :func:`open_model_for_run`."""
    return (algorithm.parameterAsFile(parameters, algorithm.MODEL, context),
            algorithm.parameterAsInt(parameters, THREADS, context) or None)


def open_model_for_run(algorithm, model, feedback, destinations):
    """The start of every algorithm's run (its task's thread): returns the loaded model.

    ``model`` is :func:`model_inputs`' ``(path, threads)``, copied on the main thread. Stops at
    once if the run was cancelled, checks that every ``(key, path)`` of ``destinations`` can be
    written and is none of the inputs' files (the algorithm's ``_source`` raster, the model, its
    ``_roi_path`` region file; :func:`~..core.outputs.check_destinations`) before the model's
    slow load, loads the model with that many onnxruntime threads, and stops if the run was
    cancelled meanwhile (``ExplanationCancelled``). Core checks every prediction of the model
    (``core.checked_model``). Touches no parameter, layer or project.
    """
    from ..core.batching import check_cancel
    from ..core.errors import InputWarning
    from ..core.outputs import check_destinations, check_writable

    cancel = feedback.isCanceled if feedback is not None else None
    check_cancel(cancel)
    model_path, n_threads = model
    check_destinations(dict(destinations), {
        "INPUT": getattr(algorithm, "_source", None), "MODEL": model_path,
        "ROI": getattr(algorithm, "_roi_path", None)})
    for key, path in destinations:
        check_writable(path, key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        loaded = load_model(model_path, n_threads)
    for warning in caught:
        if feedback is not None and issubclass(warning.category, InputWarning):
            feedback.pushWarning(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    check_cancel(cancel)
    return loaded


def run_guarded(work, context, feedback, destinations, *, noun, memory_message):
    """Run ``work()`` (an algorithm's body); every way it can fail leaves no output behind.

    In the main thread (``qgis_process``, a console script) SIGINT and SIGTERM stop the run
    (:func:`~..core.interrupt.stop_on_signals`, a model call in progress included): no output
    is left and a QgsProcessingException ("stopped by SIGTERM") makes the run fail.
    A cancelled run logs "<noun> cancelled; no output was written." and returns ``{}``. A
    failure the user can fix - a :class:`~..core.errors.UserError` from core, a full disk, an
    unwritable folder, ``MemoryError`` (``memory_message``) - becomes a
    ``QgsProcessingException`` saying what to do. Anything else is a bug in the plugin and
    propagates unchanged, so QGIS logs its traceback (and the dock says to report it). In every
    case QGIS is told not to load the ``(key, path)`` ``destinations``.
    """
    from ..core.errors import ExplanationCancelled
    from ..core.interrupt import stop_on_signals

    stop = None
    try:
        with stop_on_signals() as stop:      # qgis_process: SIGINT/SIGTERM stop the run
            return work()
    except ExplanationCancelled:
        forget_outputs(context, [path for _, path in destinations])
        if stop is not None and stop.signal:
            raise QgsProcessingException(f"{noun} stopped by {stop.signal}; no output was "
                                         "written.") from None
        feedback.reportError(f"{noun} cancelled; no output was written.")
        return {}
    except BaseException as exc:
        forget_outputs(context, [path for _, path in destinations])
        failure = user_failure(exc, memory_message)
        if failure is exc:
            raise
        raise failure from None


def user_failure(exc, memory_message):
    """The QgsProcessingException a user can act on for ``exc``, or ``exc`` itself (a bug)."""
    from ..core.errors import UserError
    from ..core.outputs import output_failure

    if isinstance(exc, QgsProcessingException):
        return exc
    if isinstance(exc, MemoryError):
        return QgsProcessingException(memory_message)
    if isinstance(exc, UserError):
        return QgsProcessingException(str(exc))
    if isinstance(exc, OSError):
        return QgsProcessingException(str(output_failure(exc)))
    return exc


def layers_to_load(context, destinations):
    """``{path: LayerDetails}``: what QGIS will load of ``destinations`` when the run ends.

    ``prepareAlgorithm`` (main thread) reads the output parameters, which registers them in
    the main thread's context; QGIS runs ``processAlgorithm`` on a per-thread copy of the
    context whose results replace the main one's when it ends, so the algorithm hands these
    back to that copy (:func:`restore_layers_to_load`) instead of reading its parameters in
    the task's thread.
    """
    paths = {path for _, path in destinations}
    return {path: QgsProcessingContext.LayerDetails(details)
            for path, details in context.layersToLoadOnCompletion().items() if path in paths}


def restore_layers_to_load(context, to_load):
    """Register :func:`layers_to_load`'s ``to_load`` in the task thread's ``context``."""
    for path, details in to_load.items():
        if not context.willLoadLayerOnCompletion(path):
            context.addLayerToLoadOnCompletion(path, details)


def forget_outputs(context, paths):
    """Tell QGIS not to load ``paths`` when the run ends (they were never written)."""
    layers = context.layersToLoadOnCompletion()
    kept = {k: v for k, v in layers.items() if k not in set(paths)}
    if len(kept) != len(layers):
        context.setLayersToLoadOnCompletion(kept)


def feedback_log(feedback):
    """The ``log(kind, text)`` callable core takes: warnings and information lines to
    ``feedback``."""
    return lambda kind, text: (feedback.pushWarning if kind == "warning"
                               else feedback.pushInfo)(text)


def feedback_callbacks(feedback):
    """``(progress, cancel)`` callables for core from a QgsProcessingFeedback."""
    if feedback is None:
        return None, None
    return (lambda fraction: feedback.setProgress(100.0 * fraction)), feedback.isCanceled


def layer_file(layer):
    """The file behind a vector or raster layer (``None`` for a memory or database layer)."""
    if layer is None:
        return None
    path = layer.source().split("|")[0]
    return path if os.path.exists(path) else None


def region_to_raster_crs(geometry, source_crs, raster_crs, context, feedback=None):
    """``geometry`` (a QgsGeometry in ``source_crs``) in the raster's CRS, or a
    QgsProcessingException naming the problem: a CRS that cannot be transformed to the
    raster's (a local engineering CRS), a transformation that does not come back to the drawn
    vertices, a region far outside the area the raster's CRS is meant for (the antipode of a
    UTM zone). A region layer without CRS is taken in the raster's CRS, with a warning. The
    region is never silently placed somewhere else."""
    if not source_crs.isValid():
        if feedback is not None:
            feedback.pushWarning("ROI: the region layer has no coordinate reference system; "
                                 "its coordinates are taken as the raster's. Assign the layer "
                                 "its CRS (Layer Properties > Source) if they are not.")
        return QgsGeometry(geometry)
    if source_crs == raster_crs:
        return QgsGeometry(geometry)
    if source_crs.isGeographic():
        box = geometry.boundingBox()
        if max(abs(box.xMinimum()), abs(box.xMaximum())) > 540 or \
                max(abs(box.yMinimum()), abs(box.yMaximum())) > 90:
            raise QgsProcessingException(
                f"ROI: the region's coordinates (e.g. {box.xMinimum():.6g}, "
                f"{box.yMinimum():.6g}) are not degrees, but its layer's CRS "
                f"({source_crs.userFriendlyIdentifier()}) is in degrees: the layer's CRS is "
                "probably wrong. Give the layer the CRS its coordinates are in (Layer "
                "Properties > Source, or Assign Projection).")
    names = f"from {source_crs.userFriendlyIdentifier()} to {raster_crs.userFriendlyIdentifier()}"
    forward = QgsCoordinateTransform(source_crs, raster_crs, context.transformContext())
    backward = QgsCoordinateTransform(raster_crs, source_crs, context.transformContext())
    out, back = QgsGeometry(geometry), None
    try:
        if forward.isValid() and not forward.isShortCircuited():
            out.transform(forward)
            back = QgsGeometry(out)
            back.transform(backward)
    except QgsCsException as exc:
        raise QgsProcessingException(
            f"ROI: the region cannot be transformed {names} ({exc}). Draw the region on the "
            "raster, or use a raster in a CRS that covers the region.") from None
    if back is None or not forward.instantiatedCoordinateOperationDetails().proj:
        raise QgsProcessingException(
            f"ROI: no transformation is known {names} (a local or engineering CRS cannot be "
            "placed on the map). Draw the region in the raster's CRS, or give the region layer "
            "the CRS it really has.")
    tolerance = 1e-6 if source_crs.isGeographic() else 0.01
    for a, b in zip(geometry.vertices(), back.vertices()):
        dx = abs(a.x() - b.x())
        if source_crs.isGeographic():
            dx = min(dx, abs(360 - dx))
        if not (dx <= tolerance and abs(a.y() - b.y()) <= tolerance):
            raise QgsProcessingException(
                f"ROI: the region cannot be placed in the raster's CRS: the transformation "
                f"{names} does not come back to its vertex ({a.x():.6g}, {a.y():.6g}) (a region "
                "far outside the CRS's zone, e.g. near the antipode of a UTM zone). Draw the "
                "region on the raster, or use a raster in a CRS that covers the region.")
    _check_area_of_use(geometry, source_crs, raster_crs, context, names)
    return out


def _check_area_of_use(geometry, source_crs, raster_crs, context, names):
    """Refuse a region more than 90 degrees of longitude away from where the raster's CRS is
    meant to be used (the antipode of a UTM zone maps to a real-looking place)."""
    area = raster_crs.bounds()              # WGS 84 longitudes and latitudes
    if area.isEmpty() or area.width() >= 180:
        return
    wgs84 = type(raster_crs)("EPSG:4326")
    lonlat = QgsGeometry(geometry)
    try:
        lonlat.transform(QgsCoordinateTransform(source_crs, wgs84, context.transformContext()))
    except QgsCsException:
        return
    lon = lonlat.boundingBox().center().x()
    centre = area.center().x()
    away = abs((lon - centre + 180) % 360 - 180) - area.width() / 2
    if away > 90:
        raise QgsProcessingException(
            f"ROI: the region (longitude {lon:.4g}) lies {away:.0f} degrees of longitude "
            f"outside the area the raster's CRS is meant for ({names}); placed there, it would "
            "be a different place. Draw the region on the raster, or use a raster in a CRS "
            "that covers the region.")


def band_numbers(alg, parameters, context, key="BANDS"):
    """The band numbers of ``key`` (None when empty), or a QgsProcessingException saying how
    to write them: ``1;2``, ``1,2`` or ``1 2`` are read alike; ``abc`` or ``1.9`` are refused
    (QGIS's own reading made ``[0]`` of them, which the run reported as band 0)."""
    import re

    raw = parameters.get(key)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if not re.fullmatch(r"\d+([\s;,]+\d+)*", text):
            raise QgsProcessingException(
                f"{key}: '{raw}' cannot be read as band numbers. Give whole band numbers "
                "separated by ';' (e.g. 1;2).")
        return [int(t) for t in re.split(r"[\s;,]+", text)]
    return alg.parameterAsInts(parameters, key, context) or None
