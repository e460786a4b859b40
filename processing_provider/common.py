"""What the algorithms share: turning QGIS inputs into plain data for core, and core errors
into messages a user understands."""

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from qgis.core import QgsProcessingException
from .compat import ADVANCED

PLUGIN_DIR = Path(__file__).resolve().parent.parent


def plugin_version():
    """The version in metadata.txt."""
    for line in (PLUGIN_DIR / "metadata.txt").read_text().splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    return "unknown"



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


THREADS = "THREADS"


def threads_parameter():
    """The THREADS parameter every algorithm has (advanced): onnxruntime intra-op threads."""
    from qgis.core import QgsProcessingParameterNumber

    param = QgsProcessingParameterNumber(
        THREADS, "Threads for the model (0 = onnxruntime's default)", defaultValue=0,
        minValue=0, maxValue=1024)
    param.setFlags(param.flags() | ADVANCED)
    return param


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
    parameter's file with ``THREADS`` onnxruntime threads, wrapped in :class:`CheckedModel`,
    and stops if the run was cancelled meanwhile (``ExplanationCancelled``).
    """
    from ..core.batching import check_cancel

    cancel = feedback.isCanceled if feedback is not None else None
    check_cancel(cancel)
    for key, path in destinations:
        check_writable(path, key)
    model_path = algorithm.parameterAsFile(parameters, algorithm.MODEL, context)
    model = CheckedModel(load_model(
        model_path, algorithm.parameterAsInt(parameters, THREADS, context) or None))
    check_cancel(cancel)
    return model_path, model


class CheckedModel:
    """A model whose every prediction is checked to be class probabilities.

    A model that says (or seemed on a test input) to output probabilities but returns values
    outside [0, 1], per-pixel sums far from 1, NaN or infinity stops the run with a
    ``ModelError`` that says what to change, instead of giving a meaningless explanation.
    Everything else is the wrapped model's.
    """

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict(self, images, batch_size=None):
        from ..core.errors import ModelError

        import numpy as np

        out = self._model.predict(images, batch_size=batch_size)
        if not np.all(np.isfinite(out)):
            raise ModelError(
                "the model returned NaN or infinite values; check that the raster's values "
                "suit the model (its input scaling metadata, or BANDS)")
        low, high = float(out.min()), float(out.max())
        worst = float(np.abs(out.sum(axis=-1, dtype=np.float64) - 1.0).max())
        if low < -1e-3 or high > 1 + 1e-3 or worst > 1e-2:
            source = getattr(self._model, "activation_source", "")
            said = ("its metadata says seg_explainer_output_activation \"none\""
                    if source == "metadata" else
                    "its output looked like probabilities on a test input")
            raise ModelError(
                f"the model's output is not class probabilities (values from {low:.4g} to "
                f"{high:.4g}, per-pixel sums off by up to {worst:.3g}) although {said}; set "
                "seg_explainer_output_activation to \"softmax\" or \"sigmoid\" in the "
                "model's metadata, or export the model with its final activation")
        return out


# -- outputs: all of a run's files appear together, or none ------------------------------------

NO_SPACE = ("no space left on the output disk; free space or choose another folder")


def check_writable(path, key):
    """Raise a QgsProcessingException unless ``path`` can be created.

    Nothing is left behind: a missing folder is not created here (the writer creates it), the
    test file is removed at once.
    """
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, f"'{existing}' is a file, not a folder")
        fd, probe = tempfile.mkstemp(prefix=".segx-write-test.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise QgsProcessingException(f"{key}: {NO_SPACE} ({folder}).") from None
        raise QgsProcessingException(
            f"{key}: cannot write to the folder '{folder}' ({exc.strerror or exc}). Choose a "
            "folder you can write to.") from None


def run_guarded(work, context, feedback, destinations, *, noun, memory_message):
    """Run ``work()`` (an algorithm's body); every way it can fail leaves no output behind.

    A cancelled run logs "<noun> cancelled; no output was written." and returns ``{}``; every
    other failure becomes a ``QgsProcessingException`` saying what to do (``memory_message``
    for a MemoryError), and QGIS is told not to load the ``(key, path)`` ``destinations``.
    """
    from ..core.errors import ExplanationCancelled, ModelError

    def forget():
        forget_outputs(context, [path for _, path in destinations])

    try:
        return work()
    except ExplanationCancelled:
        forget()
        feedback.reportError(f"{noun} cancelled; no output was written.")
        return {}
    except QgsProcessingException:
        forget()
        raise
    except MemoryError:
        forget()
        raise QgsProcessingException(memory_message) from None
    except (ModelError, ValueError) as exc:
        forget()
        raise QgsProcessingException(str(exc)) from exc
    except OSError as exc:
        forget()
        raise write_failure(exc) from None
    except Exception as exc:  # a model (or driver) failing mid-run: say so, keep QGIS alive
        forget()
        if _NO_SPACE_TEXT.search(str(exc)):       # GDAL raises RuntimeError, not OSError
            raise write_failure(exc) from None
        raise QgsProcessingException(
            f"The model failed during the {noun.lower()}: {exc}") from exc


_NO_SPACE_TEXT = re.compile(r"no space left|disk full|free disk space", re.IGNORECASE)


def write_failure(exc, key=None):
    """The QgsProcessingException for ``exc`` raised while writing output ``key``."""
    where = f"{key}: " if key else ""
    text = str(exc)
    if isinstance(exc, MemoryError):
        return QgsProcessingException(f"{where}not enough memory to write the output. Lower "
                                      "WINDOW or BATCH_SIZE.")
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
            _NO_SPACE_TEXT.search(text):
        return QgsProcessingException(f"{where}{NO_SPACE}. Nothing was written.")
    if isinstance(exc, OSError):
        return QgsProcessingException(
            f"{where}cannot write '{exc.filename or ''}' ({exc.strerror or exc}). Choose a "
            "folder you can write to. Nothing was written.")
    return QgsProcessingException(f"{where}writing the output failed ({text[:300]}). "
                                  "Nothing was written.")


class OutputSet:
    """Temporary names for a run's outputs, renamed into place together by :meth:`commit`.

    Every output (with its side-car files) is written under a hidden temporary name beside its
    destination; :meth:`commit` renames them all at the end, :meth:`rollback` removes them.
    Use as a context manager: leaving the block with an exception rolls back.
    """

    def __init__(self):
        self._items = []
        self._made = []  # folders created for the outputs, removed again on rollback
        self.committed = []

    def temporary(self, final):
        """A temporary name for the destination ``final`` (its folder is created)."""
        from ..core.geoio import temporary_name

        folder = os.path.dirname(os.path.abspath(final))
        missing = []
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            os.mkdir(folder)
            self._made.append(folder)
        tmp = temporary_name(final)
        self._items.append((tmp, final))
        return tmp

    def commit(self):
        """Rename every temporary file to its destination; on failure undo what was renamed."""
        from ..core.geoio import commit_family

        try:
            for tmp, final in self._items:
                self.committed.extend(commit_family(tmp, final))
            self._made = []
        except BaseException:
            for path in self.committed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            self.committed = []
            self.rollback()
            raise
        self._items = []

    def rollback(self):
        """Remove every temporary file (and side-car) written so far."""
        from ..core.geoio import remove_family

        for tmp, _ in self._items:
            remove_family(tmp)
        self._items = []
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.rollback()
        return False


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
