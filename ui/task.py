"""Background work of the dock: an explanation run, and every task kept alive while it runs.

An explanation is the Processing algorithm the toolbox runs (``segexplainer:explain_*``),
executed by a :class:`QgsProcessingAlgRunnerTask` in QGIS's task manager. The algorithm's
``prepareAlgorithm()`` copies what it needs from the layers on the main thread; its
``processAlgorithm()`` runs in the task's thread on that copy. Its layer outputs are given as
output layer definitions, so the algorithm registers them with the toolbox's post-processors;
when the task reports back they are loaded, styled and grouped on the main thread by
``processing_provider.styling.load_results``: the same code as a toolbox run's.
"""

import time
from pathlib import Path

from qgis.core import (Qgis, QgsApplication, QgsMessageLog, QgsProcessingAlgRunnerTask,
                       QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingOutputLayerDefinition, QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterVectorDestination, QgsProject)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .text import LOG_TAG

#: Destination parameters whose file the run loads into the project when it ends.
LAYER_DESTINATIONS = (QgsProcessingParameterRasterDestination,
                      QgsProcessingParameterVectorDestination, QgsProcessingParameterFeatureSink)
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
        self.warnings = []

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 (QGIS API)
        self.errors.append(error)
        super().reportError(error, fatalError)

    def pushWarning(self, warning):  # noqa: N802
        self.messages.append(warning)
        self.warnings.append(warning)
        super().pushWarning(warning)

    def pushInfo(self, info):  # noqa: N802
        self.messages.append(info)
        super().pushInfo(info)


class ExplainRun(QObject):
    """One run of ``segexplainer:explain_<method>`` in the task manager.

    Everything the task's thread needs is copied when the run starts (the algorithm's
    ``prepareAlgorithm``, on the main thread), so the user may remove or rename the input
    raster or region layer, close the dock or the project, or unload the plugin meanwhile.
    Results are added on the main thread, to the project the run started in, unless that
    project was closed (``project_closed``: the files are kept, nothing is added to the next
    project) or the run was detached (:meth:`detach`, plugin unload).

    Parameters
    ----------
    algorithm_id : str
        e.g. ``"segexplainer:explain_shap"``.
    parameters : dict
        The algorithm's parameters: layer ids, paths and plain values (a layer object only for
        a drawn region, which only this run holds). The paths of layer outputs (rasters, the
        cells, the region outline ``REGION``) are loaded into the project when the run ends.
    group_name : str
        The layer-tree group the results are expected in; once the run has ended, the one the
        algorithm named (raster, class, method and time).
    raster_source : str
        The input raster's file (``layer.source()`` without options).
    label : tuple, optional
        ``(class name, method, time)`` of the run.

    Signals
    -------
    progressChanged(float)
        Percent done.
    done(object)
        The run itself, on the main thread, once its layers are loaded; see ``ok``,
        ``cancelled``, ``error``, ``warnings``, ``results``, ``layers``.
    """

    progressChanged = pyqtSignal(float)
    done = pyqtSignal(object)

    def __init__(self, algorithm_id, parameters, group_name, raster_source, label=None,
                 project=None, parent=None):
        super().__init__(parent)
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.group_name = group_name
        self.raster_source = raster_source
        self.label = label or ("", algorithm_id.rsplit("_", 1)[-1], "")
        self.project = project or QgsProject.instance()
        self.context = None
        self.feedback = None
        self.task = None
        self.ok = False
        self.cancelled = False
        self.bug = False
        self.finished = False
        self.detached = False
        self.project_closed = False
        self.error = ""
        self.warnings = []
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
        self.task = QgsProcessingAlgRunnerTask(algorithm, self._with_layer_outputs(algorithm),
                                               self.context, self.feedback)
        if self.task.isCanceled():
            self.error = "\n".join(self.feedback.errors) or "The algorithm could not start."
            self.task = None
            return False
        # The task's thread uses the feedback and the context until the task ends, whoever
        # still holds this run then (the plugin may have been unloaded): the task owns the
        # feedback, which holds the run and the run the context.
        self.feedback.setParent(self.task)
        self.feedback.run = self
        self.task.executed.connect(self._executed)
        self.project.cleared.connect(self._project_cleared)
        _ALIVE.add(self)
        start_task(self.task)
        return True

    def _with_layer_outputs(self, algorithm):
        """The parameters, each layer output's path as an output layer definition for this
        run's project: as in the toolbox's "Open output file after running", the algorithm
        then registers the output to be loaded, with its post-processor."""
        parameters = dict(self.parameters)
        for definition in algorithm.destinationParameterDefinitions():
            value = parameters.get(definition.name())
            if isinstance(definition, LAYER_DESTINATIONS) and isinstance(value, str) and value:
                parameters[definition.name()] = QgsProcessingOutputLayerDefinition(
                    value, self.project)
        return parameters

    def cancel(self):
        """Ask the algorithm to stop; it does so before its next batch of model evaluations."""
        if self.task is not None:
            self.cancelled = True
            self.feedback.cancel()
            self.task.cancel()

    def detach(self):
        """Plugin unload: cancel, and from now on tell no one and add nothing to the project."""
        self.detached = True
        for signal in (self.progressChanged, self.done):
            try:
                signal.disconnect()
            except TypeError:       # nothing connected
                pass
        self.cancel()

    def is_running(self):
        return self.task is not None

    def _project_cleared(self):
        self.project_closed = True

    def _executed(self, ok, results):  # main thread
        _ALIVE.discard(self.task)
        _ALIVE.discard(self)
        try:
            self.project.cleared.disconnect(self._project_cleared)
        except TypeError:
            pass
        self.task = None
        self.results = dict(results or {})
        self.warnings = list(self.feedback.warnings)
        self.cancelled = self.cancelled or self.feedback.isCanceled()
        self.ok = bool(ok) and not self.cancelled and bool(self.results)
        if not self.ok and not self.cancelled:
            self.error = self._failure(self.feedback.errors)
        if self.ok and not self.detached:
            from ..processing_provider.styling import load_results, result_groups

            self.group_name = (result_groups(self.context) or [self.group_name])[0]
            if not self.project_closed:
                try:
                    self.layers, problems = load_results(self.context, self.feedback)
                    self.warnings.extend(problems)
                except Exception as exc:  # a layer that cannot be styled must not crash QGIS
                    self.error = f"The results were written but could not be loaded: {exc}"
        self.finished = True
        if not self.detached:
            self.done.emit(self)

    def output_folder(self):
        """The folder of the run's outputs."""
        for key in ("EXCITATION", "SIGNED", "REPORT"):
            path = self.results.get(key) or self.parameters.get(key)
            if isinstance(path, str) and path:
                return str(Path(path).parent)
        return ""

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
