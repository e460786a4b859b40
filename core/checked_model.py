"""A model whose every prediction is checked to be class probabilities.

:func:`~.explain.explain_region` and :func:`~.tiling.segment_raster` wrap the model they are
given, so every caller - Processing, the dock, a plain Python script - gets the same checks.
"""

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
    if not np.all(np.isfinite(out)):
        raise ModelError(
            "the model returned NaN or infinite values; check that the raster's values "
            "suit the model (its input scaling metadata, or BANDS)")
    low, high = float(out.min()), float(out.max())
    worst = float(np.abs(out.sum(axis=-1, dtype=np.float64) - 1.0).max())
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK or worst > SUM_SLACK:
        said = ("its metadata says seg_explainer_output_activation \"none\""
                if activation_source == "metadata" else
                "its output looked like probabilities on a test input")
        raise ModelError(
            f"the model's output is not class probabilities (values from {low:.4g} to "
            f"{high:.4g}, per-pixel sums off by up to {worst:.3g}) although {said}; set "
            "seg_explainer_output_activation to \"softmax\" or \"sigmoid\" in the "
            "model's metadata, or export the model with its final activation")


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


def checked(model):
    """``model`` wrapped in :class:`CheckedModel`, unless it already is."""
    return model if isinstance(model, CheckedModel) else CheckedModel(model)
