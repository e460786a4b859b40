"""What the algorithms share: turning QGIS inputs into plain data for core, and core errors
into messages a user understands."""

import os

from qgis.core import QgsProcessingException


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


def open_model_for_run(algorithm, parameters, context, feedback, destinations):
    """The start of every algorithm's run: returns ``(model_path, model)``.

    Stops at once if the run was cancelled, checks that every ``(key, path)`` of
    ``destinations`` can be written (before the model's slow load), loads the ``MODEL``
    parameter's file with ``THREADS`` onnxruntime threads, and stops if the run was cancelled
    meanwhile (``ExplanationCancelled``). Core checks every prediction of the model
    (``core.checked_model``).
    """
    from ..core.batching import check_cancel
    from ..core.outputs import check_writable

    cancel = feedback.isCanceled if feedback is not None else None
    check_cancel(cancel)
    for key, path in destinations:
        check_writable(path, key)
    model_path = algorithm.parameterAsFile(parameters, algorithm.MODEL, context)
    model = load_model(model_path,
                       algorithm.parameterAsInt(parameters, THREADS, context) or None)
    check_cancel(cancel)
    return model_path, model


def run_guarded(work, context, feedback, destinations, *, noun, memory_message):
    """Run ``work()`` (an algorithm's body); every way it can fail leaves no output behind.

    A cancelled run logs "<noun> cancelled; no output was written." and returns ``{}``. A
    failure the user can fix - a :class:`~..core.errors.UserError` from core, a full disk, an
    unwritable folder, ``MemoryError`` (``memory_message``) - becomes a
    ``QgsProcessingException`` saying what to do. Anything else is a bug in the plugin and
    propagates unchanged, so QGIS logs its traceback (and the dock says to report it). In every
    case QGIS is told not to load the ``(key, path)`` ``destinations``.
    """
    from ..core.errors import ExplanationCancelled

    try:
        return work()
    except ExplanationCancelled:
        forget_outputs(context, [path for _, path in destinations])
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


def forget_outputs(context, paths):
    """Tell QGIS not to load ``paths`` when the run ends (they were never written)."""
    layers = context.layersToLoadOnCompletion()
    kept = {k: v for k, v in layers.items() if k not in set(paths)}
    if len(kept) != len(layers):
        context.setLayersToLoadOnCompletion(kept)


def feedback_callbacks(feedback):
    """``(progress, cancel)`` callables for core from a QgsProcessingFeedback."""
    if feedback is None:
        return None, None
    return (lambda fraction: feedback.setProgress(100.0 * fraction)), feedback.isCanceled
