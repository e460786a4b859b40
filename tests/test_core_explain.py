"""explain_region with pure-numpy fake models whose answers are known."""

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from seg_explainer.core.baselines import baseline_image
from seg_explainer.core.cells import hexagon_grid, square_grid
from seg_explainer.core.errors import ExplanationCancelled
from seg_explainer.core.explain import DEFAULTS, explain_region

H = W = 48


class FakeModel:
    """Two classes (or three); P(class 1) = sigmoid(logit(image)) everywhere."""

    def __init__(self, logit, n_classes=2):
        self.logit = logit
        self.class_names = ["sea", "oil", "ship"][:n_classes]
        self.calls = []

    def predict(self, images, batch_size=None):
        images = np.asarray(images, dtype=np.float32)
        assert images.ndim == 4 and not np.isnan(images).any()
        self.calls.append(len(images))
        s = 1.0 / (1.0 + np.exp(-self.logit(images)))
        if len(self.class_names) == 2:
            return np.stack([1 - s, s], axis=-1).astype(np.float32)
        return np.stack([(1 - s) * 0.7, s, (1 - s) * 0.3], axis=-1).astype(np.float32)


def local_dark(images):
    """Oil = locally dark: a weighted local mean of band 0 below the scene level."""
    band = images[..., 0]
    return -0.8 * (uniform_filter(band, size=(1, 9, 9), mode="nearest") + 15.0)


def planted(rows, cols):
    """A model that looks only at the mean of band 0 over one rectangle."""
    def logit(images):
        v = images[:, rows, cols, 0].mean(axis=(1, 2))
        return np.broadcast_to(-0.5 * (v + 15.0)[:, None, None], images.shape[:3])
    return logit


def scene(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(-15.0, 1.0, size=(H, W, 1)).astype(np.float32)
    x[12:24, 12:24, 0] -= 8.0          # a dark slick at rows/cols 12..23
    return x


def slick_region():
    region = np.zeros((H, W), bool)
    region[15:21, 15:21] = True
    return region


# ------------------------------------------------------------------ SHAP


def test_shap_efficiency_and_cell_map():
    model = FakeModel(local_dark)
    x = scene()
    e = explain_region(model, x, slick_region(), 1, "shap", hex_size=8, n_samples=400)
    values = np.array([c["value"][0] for c in e.cells])
    assert e.method == "shap" and e.class_names == ("oil",)
    np.testing.assert_allclose(values.sum(), e.full_value[0] - e.base_value[0], atol=1e-6)
    # full value = region mean probability of the unmasked image, base = all baseline
    p_full = model.predict(x[None])[0, ..., 1][slick_region()].mean()
    p_base = model.predict(baseline_image(x, "mean")[None])[0, ..., 1][slick_region()].mean()
    np.testing.assert_allclose(e.full_value[0], p_full, rtol=1e-6)
    np.testing.assert_allclose(e.base_value[0], p_base, rtol=1e-6)
    np.testing.assert_allclose(e.prediction, model.predict(x[None])[0])
    # each pixel carries its cell's value
    cells = hexagon_grid(H, W, 8)
    assert len(e.cells) == cells.n_cells == e.details["n_cells"]
    np.testing.assert_allclose(e.signed, values[cells.labels], rtol=1e-6)
    np.testing.assert_array_equal(e.excitation, np.maximum(e.signed, 0))
    np.testing.assert_array_equal(e.inhibition, np.maximum(-e.signed, 0))
    assert e.signed.shape == (H, W) and e.signed_all.shape == (1, H, W)
    # the slick's cells carry the excitation
    top = np.argmax(values)
    assert e.cells[top]["polygon"].intersects(__import__("shapely").box(12, 12, 24, 24))
    assert e.params == {"hex_size": 8, "cell_shape": "hexagon", "n_samples": 400,
                        "baseline": "mean", "baseline_value": None, "blur_sigma": 8.0,
                        "seed": 0, "batch_size": 16, "method": "shap"}
    assert not e.details["exact"]
    assert e.n_evaluations == 402 and e.seconds > 0
    assert all(c["standard_error"].shape == (1,) for c in e.cells)


def test_shap_planted_cell_takes_everything():
    # square cells of 12 px: the cell covering rows/cols 24..35 is the only one the model sees
    model = FakeModel(planted(slice(26, 34), slice(26, 34)))
    x = scene()
    x[26:34, 26:34, 0] -= 6.0
    region = np.zeros((H, W), bool)
    region[3, 40] = True                # a single pixel far away: the model is global
    e = explain_region(model, x, region, 1, "shap", cell_shape="square", hex_size=12)
    values = np.array([c["value"][0] for c in e.cells])
    labels = square_grid(H, W, 12).labels
    planted_cell = labels[30, 30]
    total = e.full_value[0] - e.base_value[0]
    assert total > 0.3
    np.testing.assert_allclose(values[planted_cell], total, rtol=1e-6)
    others = np.delete(values, planted_cell)
    assert np.abs(others).max() < 1e-6 * abs(total) + 1e-9
    assert e.params["n_samples"] == 2 * 16 + 2048


def test_two_classes_cost_the_same_as_one():
    x = scene()
    one_model = FakeModel(local_dark)
    one = explain_region(one_model, x, slick_region(), 1, "shap", hex_size=14, n_samples=200)
    two_model = FakeModel(local_dark)
    two = explain_region(two_model, x, slick_region(), [1, 0], "shap", hex_size=14,
                         n_samples=200)
    assert two.n_evaluations == one.n_evaluations
    assert sum(two_model.calls) == sum(one_model.calls)
    np.testing.assert_allclose(two.signed, one.signed, atol=1e-6)
    # two classes of a binary model: contributions are opposite
    np.testing.assert_allclose(two.signed_all[1], -two.signed_all[0], atol=1e-6)
    assert two.class_names == ("oil", "sea") and two.classes == (1, 0)
    assert two.cells[0]["value"].shape == (2,)


def test_cancel_stops_within_one_batch():
    model = FakeModel(local_dark)
    state = {"asked": 0}

    def cancel():
        state["asked"] += 1
        return len(model.calls) >= 3

    with pytest.raises(ExplanationCancelled):
        explain_region(model, scene(), slick_region(), 1, "shap", hex_size=14, n_samples=400,
                       batch_size=8, cancel=cancel)
    assert len(model.calls) == 3


def test_progress_is_monotone_and_ends_at_one():
    seen = []
    explain_region(FakeModel(local_dark), scene(), slick_region(), 1, "shap", hex_size=14,
                   n_samples=100, batch_size=10, progress=seen.append)
    assert len(seen) >= 10
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert seen[-1] == 1.0 and 0 <= seen[0] <= 1


def test_nodata_is_filled_and_left_out_of_the_region():
    x = scene()
    x[:10, :, 0] = np.nan               # a strip of nodata
    region = slick_region()
    region[5, 5] = True                 # one region pixel on nodata
    model = FakeModel(local_dark)
    e = explain_region(model, x, region, 1, "shap", hex_size=14, n_samples=200)
    assert np.all(np.isfinite(e.signed)) and np.isfinite(e.full_value).all()
    assert not e.region_mask[5, 5] and e.region_mask.sum() == 36
    values = np.array([c["value"][0] for c in e.cells])
    np.testing.assert_allclose(values.sum(), e.full_value[0] - e.base_value[0], atol=1e-6)


def test_baselines_are_selectable():
    x = scene()
    for kind, extra in [("zero", {}), ("constant", {"baseline_value": -20.0}),
                        ("blur", {"blur_sigma": 3.0})]:
        e = explain_region(FakeModel(local_dark), x, slick_region(), 1, "shap", hex_size=16,
                           n_samples=60, baseline=kind, **extra)
        assert e.params["baseline"] == kind
        values = np.array([c["value"][0] for c in e.cells])
        np.testing.assert_allclose(values.sum(), e.full_value[0] - e.base_value[0], atol=1e-6)
    e = explain_region(FakeModel(local_dark), x[:24, :24], slick_region()[:24, :24], 1, "shap",
                       hex_size=12, n_samples=20, baseline="inpaint")
    assert np.isfinite(e.signed).all()


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, error, message", [
    ({"method": "lime"}, ValueError, "unknown method 'lime'.*shap, rise, occlusion"),
    ({"n_sample": 10}, TypeError, "unexpected parameter.*n_sample"),
    ({"classes": 5}, ValueError, "class 5 does not exist.*0..1"),
    ({"classes": []}, ValueError, "no class"),
    ({"classes": [1, 1]}, ValueError, "repeats"),
    ({"region_mask": np.zeros((H, W), bool)}, ValueError, "region of interest is empty"),
    ({"region_mask": np.ones((4, 4), bool)}, ValueError, "region_mask has shape"),
    ({"baseline": "grey"}, ValueError, "unknown baseline 'grey'"),
    ({"baseline": "infill"}, ValueError, "occlusion"),
    ({"baseline": "constant"}, ValueError, "baseline_value"),
    ({"hex_size": 0}, ValueError, "hex_size"),
    ({"p_keep": 1.5}, ValueError, "p_keep"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"n_masks": 2.5}, ValueError, "n_masks must be an integer"),
    ({"cell_shape": "triangle"}, ValueError, "cell_shape"),
])
def test_invalid_arguments(kwargs, error, message):
    args = {"model": FakeModel(local_dark), "image": scene(), "region_mask": slick_region(),
            "classes": 1, "method": "shap"}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        explain_region(**args)


def test_defaults_are_documented():
    # issue 14: the cell size follows the region by default (core.cells.auto_cell_size)
    assert DEFAULTS["hex_size"] is None and DEFAULTS["n_masks"] == 2000
    assert DEFAULTS["baseline"] == "mean" and DEFAULTS["batch_size"] is None


# ------------------------------------------------------------------ RISE


def planted_scene():
    x = scene()
    x[26:34, 26:34, 0] -= 6.0
    return x


def test_rise_peaks_on_the_planted_area():
    model = FakeModel(planted(slice(26, 34), slice(26, 34)))
    region = np.zeros((H, W), bool)
    region[3, 40] = True
    e = explain_region(model, planted_scene(), region, 1, "rise", n_masks=600, grid_size=6,
                       batch_size=50)
    inside = np.zeros((H, W), bool)
    inside[26:34, 26:34] = True
    assert e.signed[inside].mean() > 0
    assert e.signed[inside].mean() > 5 * np.abs(e.signed[~inside]).mean()
    r, c = np.unravel_index(np.argmax(e.signed), e.signed.shape)
    assert 22 <= r < 38 and 22 <= c < 38
    assert e.cells == () and e.n_evaluations == 601    # the masks + the unmasked image
    assert e.params == {"n_masks": 600, "grid_size": 6, "p_keep": 0.5, "baseline": "mean",
                        "baseline_value": None, "blur_sigma": 8.0, "seed": 0,
                        "batch_size": 50, "method": "rise"}
    np.testing.assert_allclose(e.base_value, e.details["mean_score"])


def test_rise_two_classes_and_cancel():
    model = FakeModel(local_dark, n_classes=3)
    one = explain_region(model, scene(), slick_region(), 1, "rise", n_masks=64)
    calls = len(model.calls)
    three = explain_region(model, scene(), slick_region(), [1, 0, 2], "rise", n_masks=64)
    assert len(model.calls) - calls == calls and three.n_evaluations == one.n_evaluations
    np.testing.assert_allclose(three.signed, one.signed, atol=1e-6)
    assert three.signed_all.shape == (3, H, W)
    model.calls.clear()
    with pytest.raises(ExplanationCancelled):
        explain_region(model, scene(), slick_region(), 1, "rise", n_masks=64, batch_size=8,
                       cancel=lambda: len(model.calls) >= 2)
    assert len(model.calls) == 2


def test_rise_rejects_inpaint():
    with pytest.raises(ValueError, match="RISE"):
        explain_region(FakeModel(local_dark), scene(), slick_region(), 1, "rise",
                       baseline="inpaint")


# ------------------------------------------------------------------ occlusion


@pytest.mark.parametrize("baseline", ["mean", "infill"])
def test_occlusion_peaks_on_the_planted_area(baseline):
    model = FakeModel(planted(slice(26, 34), slice(26, 34)))
    region = np.zeros((H, W), bool)
    region[3, 40] = True
    e = explain_region(model, planted_scene(), region, 1, "occlusion", max_depth=3, n_best=3,
                       baseline=baseline)
    # the unoccluded image was scored inside the run, not again afterwards
    assert e.n_evaluations == sum(model.calls)
    inside = np.zeros((H, W), bool)
    inside[26:34, 26:34] = True
    assert e.signed[inside].mean() > 0
    assert e.signed[inside].mean() > 5 * np.abs(e.signed[~inside]).mean()
    r, c = np.unravel_index(np.argmax(e.signed), e.signed.shape)
    assert 22 <= r < 38 and 22 <= c < 38
    assert len(e.cells) > 0
    # base value = the score with the whole image occluded (the quadtree's root)
    whole = (baseline_image(planted_scene(), "mean") if baseline == "mean" else
             np.broadcast_to(planted_scene().mean(axis=(0, 1)), planted_scene().shape))
    np.testing.assert_allclose(e.base_value[0],
                               model.predict(whole[None])[0, 3, 40, 1], rtol=1e-5)
    leaf = max(e.cells, key=lambda cell: cell["value"][0])
    assert leaf["standard_error"] is None and leaf["depth"] >= 1
    assert leaf["polygon"].intersects(__import__("shapely").box(26, 26, 34, 34))
    assert e.params == {"max_depth": 3, "n_best": 3, "baseline": baseline,
                        "baseline_value": None, "blur_sigma": 8.0, "batch_size": 16,
                        "method": "occlusion"}
    np.testing.assert_allclose(e.prediction, model.predict(planted_scene()[None])[0])


def test_occlusion_progress_and_cancel():
    model = FakeModel(local_dark)
    seen = []
    e = explain_region(model, scene(), slick_region(), [1, 0], "occlusion", max_depth=2,
                       batch_size=8, progress=seen.append)
    assert all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0
    assert e.signed_all.shape == (2, H, W)
    model.calls.clear()
    with pytest.raises(ExplanationCancelled):
        explain_region(model, scene(), slick_region(), 1, "occlusion", max_depth=2,
                       batch_size=4, cancel=lambda: len(model.calls) >= 2)
    assert len(model.calls) == 2


# ------------------------------------------------------------------ the region's pixels only


@pytest.mark.parametrize("method, params", [("shap", {"n_samples": 40, "hex_size": 8}),
                                            ("rise", {"n_masks": 24}),
                                            ("occlusion", {"max_depth": 2})])
def test_region_pixels_only_give_the_same_explanation_bit_for_bit(tmp_path, method, params):
    # a SegmentationModel activates and reduces only the region's pixels (predict_pixels);
    # a model with predict alone is reduced from its whole output: the same numbers
    from test_core_model import build_model

    from seg_explainer.core.model import SegmentationModel

    rng = np.random.default_rng(5)
    model = SegmentationModel.load(build_model(
        tmp_path / "m.onnx", weights=rng.normal(size=(9, 1)) * 0.3,
        bias=rng.normal(size=9)))

    class PredictOnly:
        class_names = model.class_names

        def predict(self, images, batch_size=None):
            return model.predict(images, batch_size=batch_size)

    image, region = scene(), slick_region()
    a = explain_region(model, image, region, [1, 4], method, batch_size=7, **params)
    b = explain_region(PredictOnly(), image, region, [1, 4], method, batch_size=7, **params)
    np.testing.assert_array_equal(a.signed_all, b.signed_all)
    np.testing.assert_array_equal(a.prediction, b.prediction)
    np.testing.assert_array_equal(a.base_value, b.base_value)
    assert a.n_evaluations == b.n_evaluations
