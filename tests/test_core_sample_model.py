"""The trained sample model: it loads, and SHAP credits the slick for the oil region's score."""

from pathlib import Path

import numpy as np
import pytest

from seg_explainer.core.cells import hexagon_grid
from seg_explainer.core.explain import explain_region
from seg_explainer.core.model import SegmentationModel

MODEL = Path(__file__).resolve().parent.parent / "resources" / "sample" / "oil_unet.onnx"
WINDOW = 256

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="sample model not built yet "
                                "(make sample-model)")


@pytest.fixture(scope="module")
def oil_window():
    from seg_explainer.resources.sample import scene as sample_scene

    scene = sample_scene.generate_scene(sample_scene.DEFAULT_SEED)
    oil = sample_scene.sample_regions(scene)["oil"]
    size = scene["size"]
    r0 = int(np.clip(oil["row"] - WINDOW // 2, 0, size - WINDOW))
    c0 = int(np.clip(oil["col"] - WINDOW // 2, 0, size - WINDOW))
    win = (slice(r0, r0 + WINDOW), slice(c0, c0 + WINDOW))
    image = np.where(scene["valid"][win], scene["sigma0_db"][win], np.nan)
    rows, cols = np.indices((WINDOW, WINDOW))
    region = np.hypot(rows + 0.5 - (oil["row"] - r0), cols + 0.5 - (oil["col"] - c0)) \
        <= oil["radius_px"]
    return image.astype(np.float32)[..., None], region, scene["classes"][win]


def test_sample_model_loads():
    model = SegmentationModel.load(MODEL)
    assert model.class_names == ["sea", "oil", "lookalike", "ship"]
    assert model.n_channels == 1 and model.n_classes == 4
    d = model.describe()
    assert d["scaling"]["type"] == "minmax" and d["convention"] == "seg_explainer"
    assert d["output_activation"] == "none" and d["output_activation_source"] == "metadata"


def test_shap_credits_the_slick(oil_window):
    image, region, truth = oil_window
    model = SegmentationModel.load(MODEL)
    e = explain_region(model, image, region, 1, "shap", hex_size=44, n_samples=160,
                       batch_size=16)
    assert e.full_value[0] > 0.5                         # the model calls the region oil
    values = np.array([c["value"][0] for c in e.cells])
    np.testing.assert_allclose(values.sum(), e.full_value[0] - e.base_value[0], atol=1e-5)
    # cells that overlap the slick (truth raster) hold most of the positive contribution
    labels = hexagon_grid(WINDOW, WINDOW, 44).labels
    np.testing.assert_allclose(e.signed, values[labels].astype(np.float32))
    on_slick = np.bincount(labels.ravel(), weights=(truth == 1).ravel(),
                           minlength=len(values)) > 0
    positive = np.clip(values, 0, None)
    assert positive[on_slick].sum() > 0.9 * positive.sum()
    assert not on_slick.all()                            # the window also shows open sea
    assert values[on_slick].sum() > 0
