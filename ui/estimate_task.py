"""Background timing of the model for the dock's run-time estimate."""

import traceback

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .task import task_finished
from .text import LOG_TAG

__all__ = ["EstimateTask"]


class EstimateTask(QgsTask):
    """Times the model on a window through the engine's own path
    (:func:`~seg_explainer.core.estimate.seconds_per_evaluation`); for occlusion, also samples
    the run's trees on the real raster and region
    (:func:`~seg_explainer.core.estimate.measured_occlusion_evaluations`).

    Inputs are plain values (``occlusion``: from
    :func:`~seg_explainer.processing_provider.estimate.occlusion_sample`, or None);
    ``batch_size`` None is automatic, as in a run; ``seconds_per_evaluation`` (and
    ``evaluations`` for occlusion) or ``error`` hold the answer.
    ``done`` (a plain callable, optional) is called on the main thread with the task.
    """

    def __init__(self, model_path, window, n_channels, batch_size, done=None, occlusion=None):
        super().__init__("Segmentation Explainer: timing the model", QgsTask.Flag.CanCancel)
        self.model_path = str(model_path)
        self.window = int(window)
        self.n_channels = max(1, int(n_channels or 1))
        self.batch_size = None if batch_size is None else max(1, int(batch_size))
        self.done = done
        self.occlusion = dict(occlusion) if occlusion else None
        self.seconds_per_evaluation = None
        self.evaluations = None
        self.error = ""

    def run(self):
        from ..processing_provider.estimate import UserError, measure_run

        try:
            measured = measure_run(self.model_path, self.window, self.n_channels,
                                   self.batch_size, self.occlusion, cancel=self.isCanceled)
            if measured is None:
                return False
            self.seconds_per_evaluation, self.evaluations = measured
            return True
        except UserError as exc:          # the run would say the same: shown as a message
            self.error = str(exc)
            return False
        except Exception:                 # a bug: its traceback in the log, the user told so
            QgsMessageLog.logMessage("Timing the model failed:\n" + traceback.format_exc(),
                                     LOG_TAG, Qgis.MessageLevel.Critical)
            self.error = ("an unexpected error, a bug in the plugin: please report it with the "
                          f"traceback from the log (View > Panels > Log Messages, '{LOG_TAG}')")
            return False

    def finished(self, result):  # main thread
        task_finished(self)
        if self.done is not None:
            self.done(self)
