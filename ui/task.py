"""Background work of the dock: one explanation run and the run-time estimate.

An explanation is the Processing algorithm the toolbox runs (``segexplainer:explain_*``),
executed by a :class:`QgsProcessingAlgRunnerTask` in QGIS's task manager. The algorithm's
``prepareAlgorithm()`` copies what it needs from the layers on the main thread; its
``processAlgorithm()`` runs in the task's thread on that copy. Result layers are loaded,
styled (``processing_provider.styling``) and grouped here, on the main thread, when the task
reports back.
"""

import time
from pathlib import Path

from qgis.core import (Qgis, QgsApplication, QgsMessageLog, QgsProcessingAlgRunnerTask,
                       QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer,
                       QgsTask, QgsVectorLayer)
from qgis.PyQt.QtCore import QObject, pyqtSignal

#: (output key, style in resources/styles, layer name, visible) in layer-tree order, top first.
RESULT_LAYERS = [
    ("CELLS", "cells", "cells", True),
    ("SIGNED", "signed", "signed", True),
    ("EXCITATION", "excitation", "excitation", False),
    ("INHIBITION", "inhibition", "inhibition", False),
]
#: Where a run's traceback goes (View > Panels > Log Messages).
LOG_TAG = "Segmentation Explainer"
#: What the dock says when the algorithm failed on a bug of ours, not on the user's input.
BUG_MESSAGE = ("The explanation stopped on an unexpected error: this is a bug in the plugin, "
               "please report it with the traceback from the log (View > Panels > Log "
               f"Messages, '{LOG_TAG}' tab).")
#: Python references to every running task and run, whoever started them (a QgsTask whose
#: Python wrapper is garbage-collected while it runs crashes QGIS).
_ALIVE = set()


def start_task(task):
    """Hand ``task`` to QGIS's task manager, keeping a Python reference until it finishes."""
    _ALIVE.add(task)
    QgsApplication.taskManager().addTask(task)
    return task


def task_finished(task):
    """Drop the reference :func:`start_task` kept, once ``task`` has finished (main thread)."""
    _ALIVE.discard(task)


class RunFeedback(QgsProcessingFeedback):
    """Feedback that also keeps the algorithm's messages (errors for the message bar)."""

    def __init__(self):
        super().__init__()
        self.errors = []
        self.messages = []

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 (QGIS API)
        self.errors.append(error)
        super().reportError(error, fatalError)

    def pushWarning(self, warning):  # noqa: N802
        self.messages.append(warning)
        super().pushWarning(warning)

    def pushInfo(self, info):  # noqa: N802
        self.messages.append(info)
        super().pushInfo(info)


class ExplainRun(QObject):
    """One run of ``segexplainer:explain_<method>`` in the task manager.

    Parameters
    ----------
    algorithm_id : str
        e.g. ``"segexplainer:explain_shap"``.
    parameters : dict
        The algorithm's parameters (layers may be given as layer objects).
    group_name : str
        Layer-tree group the results go to, created just above the raster.
    raster_source : str
        The input raster's file (``layer.source()`` without options): the group's anchor.
    region_layer : QgsVectorLayer, optional
        The region outline, added to the group with the results.

    Signals
    -------
    progressChanged(float)
        Percent done.
    done(object)
        The run itself, on the main thread, once its layers are loaded; see ``ok``,
        ``cancelled``, ``error``, ``results``, ``layers``.
    """

    progressChanged = pyqtSignal(float)
    done = pyqtSignal(object)

    def __init__(self, algorithm_id, parameters, group_name, raster_source, region_layer=None,
                 project=None, parent=None):
        super().__init__(parent)
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.group_name = group_name
        self.raster_source = raster_source
        self.region_layer = region_layer
        self.project = project or QgsProject.instance()
        self.context = None
        self.feedback = None
        self.task = None
        self.ok = False
        self.cancelled = False
        self.bug = False
        self.error = ""
        self.results = {}
        self.layers = []
        self.started = None

    def start(self):
        """Hand the run to the task manager. False (and ``error``) if it cannot start."""
        registry = QgsApplication.processingRegistry()
        algorithm = registry.createAlgorithmById(self.algorithm_id)
        if algorithm is None:
            self.error = (f"The algorithm {self.algorithm_id} is not available: the Segmentation "
                          "Explainer Processing provider is not loaded. Re-enable the plugin.")
            return False
        self.context = QgsProcessingContext()
        self.context.setProject(self.project)
        self.feedback = RunFeedback()
        self.feedback.progressChanged.connect(self.progressChanged)
        self.started = time.perf_counter()
        # The constructor runs prepareAlgorithm() here, on the main thread.
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context,
                                               self.feedback)
        if self.task.isCanceled():
            self.error = "\n".join(self.feedback.errors) or "The algorithm could not start."
            self.task = None
            return False
        self.task.executed.connect(self._executed)
        _ALIVE.add(self)
        start_task(self.task)
        return True

    def cancel(self):
        """Ask the algorithm to stop; it does so before its next batch of model evaluations."""
        if self.task is not None:
            self.cancelled = True
            self.feedback.cancel()
            self.task.cancel()

    def is_running(self):
        return self.task is not None

    def _executed(self, ok, results):  # main thread
        _ALIVE.discard(self.task)
        _ALIVE.discard(self)
        self.task = None
        self.results = dict(results or {})
        self.cancelled = self.cancelled or self.feedback.isCanceled()
        self.ok = bool(ok) and not self.cancelled and bool(self.results)
        if not self.ok and not self.cancelled:
            self.error = self._failure(self.feedback.errors)
        if self.ok:
            try:
                self.layers = self.load_layers()
            except Exception as exc:  # a layer that cannot be styled must not crash QGIS
                self.error = f"The results were written but could not be loaded: {exc}"
        self.done.emit(self)

    def _failure(self, errors):
        """The message for a failed run: the algorithm's own, or :data:`BUG_MESSAGE`.

        A deliberate failure is a QgsProcessingException whose message says what to do. Any
        other exception reaches the feedback as its traceback: that is a bug, logged as such.
        """
        traces = [e for e in errors if e.lstrip().startswith("Traceback")]
        if traces:
            self.bug = True
            for trace in traces:
                QgsMessageLog.logMessage(f"{self.algorithm_id} failed:\n{trace}", LOG_TAG,
                                         Qgis.MessageLevel.Critical)
            return BUG_MESSAGE
        return "\n".join(errors) or "The explanation failed."

    def load_layers(self):
        """Add the result layers to the project: styled, in the run's group above the raster."""
        from ..processing_provider.styling import apply_style, place_in_group

        layers = []
        if self.region_layer is not None:
            self.project.addMapLayer(self.region_layer)
            place_in_group(self.region_layer, self.group_name, self.raster_source)
            layers.append(self.region_layer)
        for key, style, name, visible in RESULT_LAYERS:
            path = self.results.get(key)
            if not path or not Path(str(path)).exists():
                continue
            if key == "CELLS":
                layer = QgsVectorLayer(str(path), name, "ogr")
            else:
                layer = QgsRasterLayer(str(path), name, "gdal")
            if not layer.isValid():
                continue
            self.project.addMapLayer(layer)
            apply_style(layer, style)
            place_in_group(layer, self.group_name, self.raster_source)
            node = self.project.layerTreeRoot().findLayer(layer.id())
            if node is not None:
                node.setItemVisibilityChecked(visible)
                node.setExpanded(False)
            layers.append(layer)
        return layers

    def summary(self):
        """One line: prediction, sum of contributions, evaluations, seconds."""
        r = self.results
        parts = []
        if "PREDICTION" in r:
            parts.append(f"prediction {r['PREDICTION']:.3f}")
        if r.get("BASE_VALUE") is not None and r.get("BASE_VALUE") == r.get("BASE_VALUE"):
            parts.append(f"base value {r['BASE_VALUE']:.3f}")
        if "SUM_CONTRIBUTIONS" in r:
            parts.append(f"sum of contributions {r['SUM_CONTRIBUTIONS']:+.3f}")
        if "N_EVALUATIONS" in r:
            parts.append(f"{int(r['N_EVALUATIONS'])} model evaluations")
        if "SECONDS" in r:
            parts.append(f"{r['SECONDS']:.1f} s")
        return ", ".join(parts)


class EstimateTask(QgsTask):
    """Times one ``model.predict`` of ``batch_size`` windows (after a warm-up call).

    Inputs are plain values; ``seconds_per_batch`` or ``error`` hold the answer. ``done``
    (a plain callable, optional) is called on the main thread with the task.
    """

    def __init__(self, model_path, window, n_channels, batch_size, done=None):
        super().__init__("Segmentation Explainer: timing one batch", QgsTask.Flag.CanCancel)
        self.model_path = str(model_path)
        self.window = int(window)
        self.n_channels = max(1, int(n_channels or 1))
        self.batch_size = max(1, int(batch_size))
        self.done = done
        self.seconds_per_batch = None
        self.error = ""

    def run(self):
        try:
            import numpy as np

            from ..core.model import SegmentationModel

            model = SegmentationModel.load(self.model_path)
            channels = model.n_channels or self.n_channels
            rng = np.random.default_rng(0)
            images = rng.standard_normal(
                (self.batch_size, self.window, self.window, channels)).astype(np.float32)
            model.predict(images[:1], batch_size=1)  # warm-up: onnxruntime allocates here
            if self.isCanceled():
                return False
            started = time.perf_counter()
            model.predict(images, batch_size=self.batch_size)
            self.seconds_per_batch = time.perf_counter() - started
            return True
        except Exception as exc:  # shown to the user as a message, not a traceback
            self.error = str(exc)
            return False

    def finished(self, result):  # main thread
        _ALIVE.discard(self)
        if self.done is not None:
            self.done(self)
