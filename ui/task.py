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

from qgis.core import (Qgis, QgsApplication, QgsMessageLog,
                       QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsTask, QgsVectorLayer)
from qgis.PyQt.QtCore import QObject, pyqtSignal

#: (output key, style in resources/styles, output name, visible) in layer-tree order, top first.
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
        a drawn region, which only this run holds).
    group_name : str
        Layer-tree group the results go to, created just above the raster.
    raster_source : str
        The input raster's file (``layer.source()`` without options): the group's anchor.
    label : tuple, optional
        ``(class name, method, time)`` for the result layers' names
        (:func:`~..processing_provider.styling.result_layer_name`).
    region : tuple, optional
        ``(QgsGeometry, QgsCoordinateReferenceSystem, path)``: the region outline, written to
        the GeoPackage ``path`` with the results and loaded in their group.

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
                 region=None, project=None, parent=None):
        super().__init__(parent)
        self.algorithm_id = algorithm_id
        self.parameters = dict(parameters)
        self.group_name = group_name
        self.raster_source = raster_source
        self.label = label or ("", algorithm_id.rsplit("_", 1)[-1], "")
        self.region = region
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
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context,
                                               self.feedback)
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
            self._write_region()
            if not self.project_closed:
                try:
                    self.layers = self.load_layers()
                except Exception as exc:  # a layer that cannot be styled must not crash QGIS
                    self.error = f"The results were written but could not be loaded: {exc}"
        self.finished = True
        if not self.detached:
            self.done.emit(self)

    def _write_region(self):
        """Write the region outline next to the results (``results["REGION"]``)."""
        if self.region is None:
            return
        geometry, crs, path = self.region
        try:
            write_region(geometry, crs, path)
        except OSError as exc:
            self.warnings.append(f"The region outline could not be written to {path} ({exc}).")
            return
        self.results["REGION"] = path

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

    def load_layers(self):
        """Add the result layers to the project: named, styled, in the run's group."""
        from ..processing_provider.styling import (apply_style, mark_result, place_in_group,
                                                   result_layer_name)

        layers = []
        region = self.results.get("REGION")
        entries = ([("REGION", None, "region of interest", True)] if region else []) + \
            RESULT_LAYERS
        for key, style, output, visible in entries:
            path = self.results.get(key)
            if not path or not Path(str(path)).exists():
                continue
            name = result_layer_name(output, *self.label)
            if key in ("CELLS", "REGION"):
                layer = QgsVectorLayer(str(path), name, "ogr")
            else:
                layer = QgsRasterLayer(str(path), name, "gdal")
            if not layer.isValid():
                continue
            if style is None:
                outline_style(layer)
            else:   # loading a style resets custom properties
                apply_style(layer, style, self.results.get("MAX_ABS_CONTRIBUTION"))
            mark_result(layer)
            self.project.addMapLayer(layer)
            place_in_group(layer, self.group_name, self.raster_source, self.project)
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
        if "SUM_CONTRIBUTIONS" in r and self.label[1] != "rise":  # RISE is not additive
            parts.append(f"sum of contributions {r['SUM_CONTRIBUTIONS']:+.3f}")
        if r.get("MAX_ABS_CONTRIBUTION") is not None:
            from ..processing_provider.styling import colour_scale

            parts.append(f"colour scale +-{colour_scale(r['MAX_ABS_CONTRIBUTION'])[0]:g}")
        if r.get("DELETION_AUC") is not None and r["DELETION_AUC"] == r["DELETION_AUC"]:
            parts.append(f"deletion AUC {r['DELETION_AUC']:.3f} (random "
                         f"{r['RANDOM_DELETION_AUC']:.3f}), insertion AUC "
                         f"{r['INSERTION_AUC']:.3f} (random {r['RANDOM_INSERTION_AUC']:.3f})")
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


def write_region(geometry, crs, path):
    """Write ``geometry`` (a QgsGeometry in ``crs``) as the only feature of the GeoPackage
    ``path``, through a temporary file renamed into place. Raises OSError."""
    import os

    from qgis.core import QgsVectorFileWriter

    from .region_picker import region_memory_layer

    layer = region_memory_layer(geometry, crs)
    folder, name = os.path.split(str(path))
    part = os.path.join(folder, f".{name}.part.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "region_of_interest"
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, part, QgsProject.instance().transformContext(), options)
    if error != QgsVectorFileWriter.WriterError.NoError:
        if os.path.exists(part):
            os.remove(part)
        raise OSError(message or f"error {error}")
    os.replace(part, str(path))


def outline_style(layer):
    """Magenta outline (polygons) or cross (points), no fill."""
    from qgis.core import QgsFillSymbol, QgsMarkerSymbol, QgsSingleSymbolRenderer

    from ..processing_provider.compat import GEOMETRY_POINT

    if layer.geometryType() == GEOMETRY_POINT:
        symbol = QgsMarkerSymbol.createSimple({"name": "cross2", "color": "255,0,255",
                                               "size": "4", "outline_color": "255,0,255",
                                               "outline_width": "0.6"})
    else:
        symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": "255,0,255",
                                             "outline_width": "0.6"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
