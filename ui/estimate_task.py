"""Background timing of the model for the dock's run-time estimate."""

import traceback

from qgis.core import Qgis, QgsMessageLog, QgsTask

from ..core.errors import UserError
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
    ``seconds_per_batch`` (and ``evaluations`` for occlusion) or ``error`` hold the answer.
    ``done`` (a plain callable, optional) is called on the main thread with the task.
    """

    def __init__(self, model_path, window, n_channels, batch_size, done=None, occlusion=None):
        super().__init__("Segmentation Explainer: timing the model", QgsTask.Flag.CanCancel)
        self.model_path = str(model_path)
        self.window = int(window)
        self.n_channels = max(1, int(n_channels or 1))
        self.batch_size = max(1, int(batch_size))
        self.done = done
        self.occlusion = dict(occlusion) if occlusion else None
        self.seconds_per_batch = None
        self.evaluations = None
        self.error = ""

    def run(self):
        try:
            from ..core.estimate import seconds_per_evaluation
            from ..core.model import SegmentationModel

            model = SegmentationModel.load(self.model_path)
            per_evaluation = seconds_per_evaluation(model, self.window, self.n_channels,
                                                    self.batch_size, cancel=self.isCanceled)
            if per_evaluation is None:
                return False
            if self.occlusion is not None:
                self.evaluations = self._sample_occlusion(model)
                if self.evaluations is None:
                    return False
            self.seconds_per_batch = per_evaluation * self.batch_size
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

    def _sample_occlusion(self, model):
        """Occlusion's expected evaluations from a sample of its real trees; None if cancelled."""
        from ..core.errors import ExplanationCancelled
        from ..core.estimate import measured_occlusion_evaluations
        from ..core.job import read_job, resolve_class

        spec = self.occlusion
        job = read_job(model, spec["source"], spec["roi_wkb"], bands=spec["bands"],
                       window=spec["window"])
        index = resolve_class(spec["class_name"], model.class_names)
        try:
            return measured_occlusion_evaluations(model, job, index, spec["params"],
                                                  cancel=self.isCanceled)[0]
        except ExplanationCancelled:
            return None

    def finished(self, result):  # main thread
        task_finished(self)
        if self.done is not None:
            self.done(self)
