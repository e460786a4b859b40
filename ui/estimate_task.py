"""Background timing of the model for the dock's run-time estimate."""

from qgis.core import QgsTask

from .task import task_finished

__all__ = ["EstimateTask"]


class EstimateTask(QgsTask):
    """Times ``model.predict`` of ``batch_size`` windows: the median of repeated calls after a
    warm-up (:func:`~seg_explainer.core.estimate.seconds_per_evaluation`).

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
            from ..core.estimate import seconds_per_evaluation
            from ..core.model import SegmentationModel

            model = SegmentationModel.load(self.model_path)
            per_evaluation = seconds_per_evaluation(model, self.window, self.n_channels,
                                                    self.batch_size, cancel=self.isCanceled)
            if per_evaluation is None:
                return False
            self.seconds_per_batch = per_evaluation * self.batch_size
            return True
        except Exception as exc:  # shown to the user as a message, not a traceback
            self.error = str(exc)
            return False

    def finished(self, result):  # main thread
        task_finished(self)
        if self.done is not None:
            self.done(self)
