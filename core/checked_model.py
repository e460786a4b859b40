"""A model whose every prediction is checked to be class probabilities.

:func:`~.explain.explain_region` and :func:`~.tiling.segment_raster` wrap the model they are
given, so every caller - Processing, the dock, a plain Python script - gets the same checks.
"""

import math

import numpy as np

from .errors import ModelError

__all__ = ["CheckedModel", "check_probabilities", "checked"]

#: How far outside [0, 1] a probability, and how far from 1 a pixel's sum, may be (float32
#: softmax and sigmoid outputs are within these).
RANGE_SLACK = 1e-3
SUM_SLACK = 1e-2


def check_probabilities(out, activation_source=""):
    """Raise :class:`~.errors.ModelError` unless ``out`` [..., K] holds class probabilities.

    NaN or infinity, values outside [0, 1] or per-pixel sums far from 1 name the fix: the
    raster's scaling or bands, or the model's output activation. ``activation_source`` is the
    model's ``activation_source`` (``"metadata"`` when its metadata declared the activation).
    """
    out = np.asarray(out)
    # min and max propagate NaN, and are infinite where any value is: one pass each, no
    # temporary array (the check runs on every prediction)
    low, high = float(out.min()), float(out.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ModelError(
            "the model returned NaN or infinite values; check that the raster's values "
            "suit the model (its input scaling metadata, or BANDS)")
    worst = _worst_sum(out)
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK or worst > SUM_SLACK:
        said = ("its metadata says seg_explainer_output_activation \"none\""
                if activation_source == "metadata" else
                "its output looked like probabilities on a test input")
        raise ModelError(
            f"the model's output is not class probabilities (values from {low:.4g} to "
            f"{high:.4g}, per-pixel sums off by up to {worst:.3g}) although {said}; set "
            "seg_explainer_output_activation to \"softmax\" or \"sigmoid\" in the "
            "model's metadata, or export the model with its final activation")


def _worst_sum(out):
    """Largest ``|sum over classes - 1|`` of a pixel of ``out`` [..., K] (finite values).

    Summed in float32, class after class (a whole-array add per class, faster than numpy's
    reduction over a short last axis); the rounding error, K x 6e-8, is far below
    :data:`SUM_SLACK`.
    """
    k = out.shape[-1]
    if k > 16:
        total = out.sum(axis=-1, dtype=np.float32)
    else:
        total = out[..., 0].astype(np.float32)
        for j in range(1, k):
            total += out[..., j]
    if total.size == 0:
        return 0.0
    return max(abs(float(total.max()) - 1.0), abs(float(total.min()) - 1.0))


class CheckedModel:
    """``model`` with :func:`check_probabilities` applied to every prediction.

    Everything else (``class_names``, ``n_channels``, ``tile_size``...) is the wrapped
    model's.
    """

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict(self, images, batch_size=None):
        out = self._model.predict(images) if batch_size is None else \
            self._model.predict(images, batch_size=batch_size)
        check_probabilities(out, getattr(self._model, "activation_source", ""))
        return out

    def predict_pixels(self, images, pixels, batch_size=None):
        """Probabilities at some pixels only, (N, P, K), checked: the model's own
        ``predict_pixels`` when it has one (see
        :meth:`~.model.SegmentationModel.predict_pixels`), else :meth:`predict`'s pixels."""
        inner = getattr(self._model, "predict_pixels", None)
        if inner is None:
            out = np.asarray(self.predict(images, batch_size=batch_size))
            if out.ndim != 4 or out.shape[:3] != np.shape(images)[:3]:
                return out          # not [N, H, W, K]: the caller names the wrong shape
            return out.reshape(len(out), -1, out.shape[-1])[:, pixels]
        out = inner(images, pixels) if batch_size is None else \
            inner(images, pixels, batch_size=batch_size)
        check_probabilities(out, getattr(self._model, "activation_source", ""))
        return out


def checked(model):
    """``model`` wrapped in :class:`CheckedModel`, unless it already is."""
    return model if isinstance(model, CheckedModel) else CheckedModel(model)
