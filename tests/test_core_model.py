"""SegmentationModel and its metadata, on tiny ONNX graphs built here and checked against numpy."""

import hashlib
import json
import math
import sys
import types

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from seg_explainer.core.errors import ModelError
from seg_explainer.core.metadata import (MAX_LIST_LENGTH, MAX_VALUE_CHARS, InputScaling,
                                         parse_metadata)
from seg_explainer.core.model import SegmentationModel, infer_layout

RNG = np.random.default_rng(42)


def build_model(path, *, weights, bias, activation=None, layout="NCHW", batch="N", height="H",
                width="W", metadata=None, extra_input=False):
    """Save a 1x1-convolution segmentation model: logits[k] = sum_c W[k, c] x[c] + b[k].

    ``activation`` None | "softmax" | "sigmoid" is applied inside the graph. ``layout``
    "NHWC" wraps the graph in Transposes. Dimensions given as str are dynamic.
    """
    k, c = weights.shape
    nodes = []
    src = "x"
    if layout == "NHWC":
        in_shape = [batch, height, width, c]
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        src = "x_nchw"
    else:
        in_shape = [batch, c, height, width]
    nodes.append(helper.make_node("Conv", [src, "w", "b"], ["logits"]))
    last = "logits"
    if activation == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["act"], axis=1))
        last = "act"
    elif activation == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["act"]))
        last = "act"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["y"], perm=[0, 2, 3, 1]))
        out_shape = [batch, height, width, k]
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
        out_shape = [batch, k, height, width]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        nodes, "seg", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(weights.reshape(k, c, 1, 1).astype(np.float32), "w"),
                     numpy_helper.from_array(bias.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def logits_np(x, weights, bias):
    """[N, H, W, C] model-space input -> [N, H, W, K] logits."""
    return np.einsum("nhwc,kc->nhwk", x.astype(np.float64), weights) + bias


def softmax_np(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid_np(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture
def wb3():
    return RNG.normal(size=(3, 2)), RNG.normal(size=3)


def images(n=2, h=8, w=9, c=2, scale=1.0, offset=0.0):
    return (RNG.normal(size=(n, h, w, c)) * scale + offset).astype(np.float32)


# ------------------------------------------------------------------ no metadata


def test_softmax_inside_graph_is_probabilities(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="softmax"))
    assert model.output_activation == "none"
    assert model.activation_source == "inferred"
    assert model.metadata.convention == "none"
    assert model.class_names == ["class 0", "class 1", "class 2"]
    assert (model.n_classes, model.n_channels) == (3, 2)
    assert model.fixed_size is None and model.tile_size is None
    x = images()
    got = model.predict(x)
    assert got.dtype == np.float32 and got.shape == (2, 8, 9, 3)
    np.testing.assert_allclose(got, softmax_np(logits_np(x, w, b)), atol=1e-5)


def test_logits_get_softmax(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w * 5, bias=b))
    assert model.output_activation == "softmax"
    x = images(n=5)
    got = model.predict(x, batch_size=2)
    np.testing.assert_allclose(got, softmax_np(logits_np(x, w * 5, b)), atol=1e-5)


def test_single_channel_probability_becomes_two_classes(tmp_path):
    w, b = np.array([[1.5, -0.5]]), np.array([0.2])
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="sigmoid"))
    assert model.output_activation == "none"
    assert model.n_classes == 2
    x = images()
    p = sigmoid_np(logits_np(x, w, b))[..., 0]
    got = model.predict(x)
    np.testing.assert_allclose(got[..., 1], p, atol=1e-5)
    np.testing.assert_allclose(got[..., 0], 1 - p, atol=1e-5)


def test_single_channel_logits_get_sigmoid(tmp_path):
    w, b = np.array([[3.0, -2.0]]), np.array([0.5])
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b))
    assert model.output_activation == "sigmoid"
    x = images()
    np.testing.assert_allclose(model.predict(x)[..., 1], sigmoid_np(logits_np(x, w, b))[..., 0],
                               atol=1e-5)


def test_raw_values_unchanged_without_metadata(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w * 0.01, bias=b))
    x = images(scale=20, offset=-25)  # SAR dB-like values: must not be divided by 255
    np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(x, w * 0.01, b)),
                               atol=1e-5)


# ------------------------------------------------------------------ layouts, sizes, batches


def test_nhwc_fixed_size_fixed_batch(tmp_path, wb3):
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax",
                       layout="NHWC", batch=1, height=12, width=12)
    model = SegmentationModel.load(path)
    assert model.input_layout == "NHWC" and model.layout_source == "inferred"
    assert model.fixed_size == (12, 12) and model.tile_size == 12
    x = images(n=3, h=12, w=12)
    np.testing.assert_allclose(model.predict(x, batch_size=8),
                               softmax_np(logits_np(x, w, b)), atol=1e-5)
    # a smaller image is padded with its mean and the output cropped (1x1 conv: no effect)
    small = images(n=1, h=7, w=10)
    np.testing.assert_allclose(model.predict(small), softmax_np(logits_np(small, w, b)),
                               atol=1e-5)
    with pytest.raises(ModelError, match="12 x 12"):
        model.predict(images(n=1, h=13, w=12))


def test_predict_without_a_batch_size_takes_the_automatic_batch(tmp_path, wb3, monkeypatch):
    """predict's default is the engine's automatic batch for the input size (7 images of
    160 x 160 a call, one of 512 x 512), not a rule of its own."""
    from seg_explainer.core.batching import batch_size_for

    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b))
    calls, run = [], model._run
    monkeypatch.setattr(model, "_run", lambda x: calls.append(len(x)) or run(x))
    for edge, n in ((160, 16), (512, 3)):
        calls.clear()
        x = images(n=n, h=edge, w=edge)
        np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(x, w, b)), atol=1e-5)
        step = batch_size_for(None, edge, edge)
        assert calls == [step] * (n // step) + ([n % step] if n % step else [])
    assert batch_size_for(None, 160, 160) == 7 and batch_size_for(None, 512, 512) == 1


def test_fixed_batch_two_pads_the_last_chunk(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="softmax", batch=2))
    x = images(n=3)
    np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(x, w, b)), atol=1e-5)


@pytest.mark.parametrize("layout, k, fixed", [("NCHW", 3, False), ("NHWC", 3, False),
                                               ("NCHW", 1, False), ("NCHW", 9, False),
                                               ("NHWC", 9, True), ("NCHW", 3, True)])
def test_predict_pixels_is_predict_at_those_pixels_bit_for_bit(tmp_path, layout, k, fixed):
    # only the pixels asked for are activated, with the same arithmetic (9 classes: numpy's
    # pairwise sum over the classes, which depends on the memory layout); a fixed-size model
    # pads the image, so its output's rows are not contiguous once cropped
    w, b = RNG.normal(size=(k, 2)) * 3, RNG.normal(size=k)
    sizes = dict(batch=1, height=12, width=12) if fixed else {}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               layout=layout, **sizes))
    assert model.output_activation == ("sigmoid" if k == 1 else "softmax")
    x = images(n=5, h=10 if fixed else 8, w=11 if fixed else 9, scale=4.0)
    pixels = np.array([0, 3, 17, 40, 71, 5])
    want = model.predict(x, batch_size=2)
    got = model.predict_pixels(x, pixels, batch_size=2)
    assert got.dtype == np.float32 and got.shape == (5, 6, model.n_classes)
    np.testing.assert_array_equal(got, want.reshape(5, -1, model.n_classes)[:, pixels])


@pytest.mark.parametrize("fixed", [False, True])
def test_prepared_images_predict_as_the_images_do(tmp_path, wb3, fixed):
    # the explanations prepare the next batch (preprocessing, padding) while the model runs
    w, b = wb3
    sizes = dict(batch=1, height=12, width=12) if fixed else {}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               **sizes))
    x = images(n=3, h=10, w=11, scale=3.0)
    x[1, 2, 3, 0] = np.nan                      # nodata, filled in the preparation
    prepared = model.prepare_images(x)
    assert prepared.shape == x.shape and len(prepared) == 3
    np.testing.assert_array_equal(model.predict(prepared, batch_size=2),
                                  model.predict(x, batch_size=2))
    pixels = np.array([0, 7, 50, 109])
    np.testing.assert_array_equal(model.predict_pixels(prepared, pixels, batch_size=2),
                                  model.predict_pixels(x, pixels, batch_size=2))
    other = SegmentationModel.load(build_model(tmp_path / "o.onnx", weights=w, bias=b,
                                               **sizes))
    with pytest.raises(ValueError, match="prepared for another model"):
        other.predict(prepared)
    with pytest.raises(ModelError, match="band"):
        model.prepare_images(np.zeros((1, 10, 11, 3), np.float32))


def test_infer_layout():
    assert infer_layout([None, 3, None, None]) == "NCHW"
    assert infer_layout([1, 256, 256, 3]) == "NHWC"
    assert infer_layout(["N", "H", "W", 2]) == "NHWC"
    assert infer_layout([1, 4, 4, 4]) == "NCHW"          # ambiguous
    assert infer_layout([1, 64, 64, 12], n_channels=12) == "NHWC"
    assert infer_layout([None, None, None, None]) == "NCHW"


def test_stated_layout_wins(tmp_path, wb3):
    w, b = wb3
    # 4 x 4 spatial, 2 channels at the end: the metadata says NHWC explicitly.
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax",
                       layout="NHWC", height=2, width=2,
                       metadata={"seg_explainer_input_layout": "NHWC"})
    model = SegmentationModel.load(path)
    assert model.input_layout == "NHWC" and model.layout_source == "metadata"
    x = images(h=2, w=2)
    np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(x, w, b)), atol=1e-5)


# ------------------------------------------------------------------ metadata conventions


def test_deepness_metadata(tmp_path, wb3):
    w, b = wb3
    meta = {"model_type": json.dumps("Segmentor"),
            "class_names": json.dumps({"0": "sea", "1": "oil", "2": "look-alike"}),
            "resolution": json.dumps(1000), "tiles_size": json.dumps(256),
            "tiles_overlap": json.dumps(15),
            "standardization_mean": json.dumps([0.4, 0.5]),
            "standardization_std": json.dumps([0.2, 0.25]), "seg_thresh": json.dumps(0.5)}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="softmax", metadata=meta))
    assert model.metadata.convention == "deepness"
    assert model.class_names == ["sea", "oil", "look-alike"]
    assert model.tile_size == 256
    assert model.metadata.resolution_cm == 1000.0 and model.metadata.tiles_overlap == 15
    x = images(scale=60, offset=120)
    xs = (x / 255.0 - np.array([0.4, 0.5])) / np.array([0.2, 0.25])
    np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(xs, w, b)), atol=1e-5)
    d = model.describe()
    assert d["classes"] == ["sea", "oil", "look-alike"]
    assert d["scaling"] == {"type": "divide", "divisor": 255.0}
    assert d["convention"] == "deepness" and d["tile_size"] == 256
    assert d["output_activation"] == "none" and d["input_layout"] == "NCHW"
    assert d["input_shape"] == [None, 2, None, None]


def test_our_metadata_minmax_and_activation(tmp_path, wb3):
    w, b = wb3
    meta = {"seg_explainer_input_scaling": json.dumps(
                {"type": "minmax", "min": -35.0, "max": 5.0, "clip": True}),
            "seg_explainer_output_activation": "softmax",
            "standardization_mean": "0.5", "standardization_std": "0.25",
            "class_names": json.dumps(["sea", "oil", "ship"])}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               metadata=meta))
    assert model.metadata.convention == "seg_explainer"
    assert model.output_activation == "softmax" and model.activation_source == "metadata"
    x = images(scale=15, offset=-20)
    xs = (np.clip((x + 35.0) / 40.0, 0, 1) - 0.5) / 0.25
    np.testing.assert_allclose(model.predict(x), softmax_np(logits_np(xs, w, b)), atol=1e-5)
    assert model.describe()["scaling"] == {"type": "minmax", "min": -35.0, "max": 5.0,
                                           "clip": True}


def test_stated_sigmoid_single_channel_names(tmp_path):
    w, b = np.array([[1.0, 1.0]]), np.array([0.0])
    meta = {"seg_explainer_output_activation": '"sigmoid"', "class_names": '{"0": "oil"}'}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               metadata=meta))
    assert model.class_names == ["background", "oil"]
    x = images()
    np.testing.assert_allclose(model.predict(x)[..., 1], sigmoid_np(logits_np(x, w, b))[..., 0],
                               atol=1e-5)


def test_nan_is_filled_with_band_mean(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="softmax"))
    x = images(n=1)
    x_nan = x.copy()
    x_nan[0, :3, :4, 0] = np.nan
    filled = x.copy()
    filled[0, :3, :4, 0] = np.nanmean(x_nan[0, :, :, 0])
    got = model.predict(x_nan)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, softmax_np(logits_np(filled, w, b)), atol=1e-5)


def test_sha256_and_path(tmp_path, wb3):
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax")
    model = SegmentationModel.load(path, n_threads=1, providers=["CPUExecutionProvider"])
    assert model.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert model.path == path
    assert model.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("n_threads", [None, 2])
def test_onnxruntime_threads_do_not_spin_between_runs(tmp_path, wb3, n_threads):
    """onnxruntime's threads spin after every run by default, taking the cores from the
    engine's own work between runs (RISE's masks, compositing, scoring); every session is
    made with spinning off."""
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax")
    model = SegmentationModel.load(path, n_threads=n_threads)
    options = model._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found.*check the path"):
        SegmentationModel.load(tmp_path / "nope.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("this is not a model")
    with pytest.raises(ModelError, match="not an ONNX model.*export"):
        SegmentationModel.load(path)


def test_two_inputs(tmp_path, wb3):
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, extra_input=True)
    with pytest.raises(ModelError, match="2 inputs.*single input"):
        SegmentationModel.load(path)


def test_rank_3_input(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelError, match="rank 3.*4-D"):
        SegmentationModel.load(tmp_path / "m.onnx")


def test_channel_mismatch(tmp_path, wb3):
    w, b = wb3
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               activation="softmax"))
    with pytest.raises(ModelError, match="3 band.*takes 2"):
        model.predict(images(c=3))


def test_class_names_count_mismatch(tmp_path, wb3):
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax",
                       metadata={"class_names": '["sea", "oil"]'})
    with pytest.raises(ModelError, match="2 classes.*outputs 3.*class_names"):
        SegmentationModel.load(path)


def test_standardization_length_mismatch(tmp_path, wb3):
    w, b = wb3
    path = build_model(tmp_path / "m.onnx", weights=w, bias=b, activation="softmax",
                       metadata={"standardization_mean": "[0.1, 0.2, 0.3]"})
    with pytest.raises(ModelError, match="standardization_mean.*3 values.*2 channels"):
        SegmentationModel.load(path)


# ------------------------------------------------------------------ metadata parsing


def test_metadata_empty():
    meta = parse_metadata({})
    assert meta.convention == "none" and meta.input_scaling == InputScaling("none")
    assert meta.class_names is None and meta.output_activation is None


def test_metadata_python_literal_class_names():
    meta = parse_metadata({"class_names": "{0: 'sea', 1: 'oil'}"})
    assert meta.class_names == ("sea", "oil") and meta.convention == "deepness"
    assert meta.input_scaling == InputScaling("divide", divisor=255.0)


@pytest.mark.parametrize("key, value, message", [
    ("class_names", '{"0": "sea", "2": "oil"}', "class_names.*not consecutive"),
    ("class_names", "__import__('os')", "class_names.*expected"),
    ("class_names", json.dumps(["x"] * (MAX_LIST_LENGTH + 1)), "class_names.*items"),
    ("class_names", "[" * 50 + "]" * 50, "class_names"),
    ("standardization_mean", "[0.1, NaN]", "standardization_mean.*non-finite"),
    ("standardization_std", "[0.1, 0]", "standardization_std.*> 0"),
    ("standardization_std", '["a"]', "standardization_std.*list of numbers"),
    ("tiles_size", "12.5", "tiles_size.*integer"),
    ("tiles_size", "-4", "tiles_size.*integer"),
    ("tiles_overlap", "100", "tiles_overlap"),
    ("resolution", "Infinity", "resolution.*non-finite"),
    ("seg_thresh", "1.5", "seg_thresh"),
    ("model_type", '"Detector"', "model_type.*Segmentor"),
    ("seg_explainer_input_scaling", '{"type": "log"}', "input_scaling.*expected"),
    ("seg_explainer_input_scaling", '{"type": "divide", "divisor": 0}', "divisor"),
    ("seg_explainer_input_scaling", '{"type": "minmax", "min": 5, "max": 1}', "greater"),
    ("seg_explainer_input_scaling", '{"type": "minmax", "min": 0, "max": 1, "clip": "yes"}',
     "clip"),
    ("seg_explainer_input_layout", "NWHC", "input_layout.*NCHW, NHWC"),
    ("seg_explainer_output_activation", "relu", "output_activation.*none, softmax, sigmoid"),
    ("seg_explainer_input_nodata", '{"fill": "median"}', "input_nodata.*fill"),
    ("class_names", "x" * (MAX_VALUE_CHARS + 1), "class_names.*characters"),
])
def test_metadata_errors(key, value, message):
    with pytest.raises(ModelError, match=message):
        parse_metadata({key: value})


def test_metadata_accepts_plain_and_quoted_text():
    a = parse_metadata({"seg_explainer_input_layout": "nhwc",
                        "seg_explainer_output_activation": '"Softmax"',
                        "seg_explainer_input_nodata": '{"fill": -30}',
                        "model_type": "Segmentor", "tiles_size": '"512"'})
    assert (a.input_layout, a.output_activation, a.nodata_fill) == ("NHWC", "softmax", -30.0)
    assert a.tile_size == 512 and a.convention == "seg_explainer"
    assert a.input_scaling.type == "none"
    b = parse_metadata({"seg_explainer_training": '{"seeds": [1, 2]}'})
    assert b.convention == "seg_explainer" and b.raw == {"seg_explainer_training":
                                                         '{"seeds": [1, 2]}'}


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["class_names", "standardization_mean", "tiles_size",
                            "seg_explainer_input_scaling", "seg_explainer_input_nodata",
                            "seg_explainer_output_activation", "model_type"]),
       value=st.one_of(st.text(max_size=60), st.from_regex(r"[\[\]{}\"0-9a-z:,.\- ]{0,40}")))
def test_metadata_never_fails_with_anything_but_model_error(key, value):
    try:
        parse_metadata({key: value})
    except ModelError as exc:
        assert key in str(exc)


@pytest.mark.parametrize("scaling", [
    {"type": "none"}, {"type": "divide", "divisor": 255.0},
    {"type": "minmax", "min": -35.0, "max": 5.0, "clip": False},
    {"type": "minmax", "min": -35.0, "max": 5.0, "clip": True}])
@pytest.mark.parametrize("spread", [30.0, 3.0])
def test_preprocess_is_the_stated_formula_in_float32_bit_for_bit(tmp_path, wb3, scaling, spread):
    """Scaling then standardisation, each step one float32 operation as the metadata states
    it (done in place by preprocess): equal bit for bit; NaN filled with the image's band
    mean first; the caller's array is left as it was. Spread 30: values beyond [min, max]
    (clipped), 3: none."""
    w, b = wb3
    meta = {"standardization_mean": "[0.5, -0.25]", "standardization_std": "[0.25, 2.0]",
            "seg_explainer_input_scaling": json.dumps(scaling)}
    model = SegmentationModel.load(build_model(tmp_path / "m.onnx", weights=w, bias=b,
                                               metadata=meta))
    x = images(n=3, scale=spread, offset=-25 if spread > 10 else -15)
    assert (np.abs(x + 15) > 20).any() == (spread > 10)
    hole = np.zeros(x.shape, bool)
    hole[1, 2:5, 1:3, 0] = True
    x[hole] = np.nan
    given_x = x.copy()
    f32 = np.float32
    filled = x.copy()
    filled[hole] = np.nanmean(x[1, ..., 0], dtype=np.float64)
    if scaling["type"] == "none":
        scaled = filled
    elif scaling["type"] == "divide":
        scaled = filled / f32(255.0)
    else:
        scaled = (filled - f32(-35.0)) / f32(40.0)
        if scaling["clip"]:
            scaled = np.clip(scaled, f32(0), f32(1))
    expected = ((scaled - np.array([0.5, -0.25], f32)) / np.array([0.25, 2.0], f32))
    out = model.preprocess(x)
    assert out.dtype == np.float32
    assert np.array_equal(out[~hole], expected[~hole].astype(np.float32))
    np.testing.assert_allclose(out[hole], expected[hole], rtol=1e-5, atol=1e-5)
    assert np.array_equal(x, given_x, equal_nan=True)


@pytest.mark.skipif(sys.platform == "win32", reason="reads Linux's /proc/meminfo")
def test_available_memory_is_read_again_only_after_its_ttl(monkeypatch):
    import seg_explainer.core.model as model_module

    reads, clock = [], [1000.0]
    monkeypatch.setattr(model_module, "_AVAILABLE", [-math.inf, None])
    monkeypatch.setattr(model_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(model_module, "_meminfo",
                        lambda key: reads.append(key) or (len(reads) << 30))
    assert model_module.available_memory() == 1 << 30
    clock[0] += model_module.AVAILABLE_MEMORY_TTL * 0.9
    assert model_module.available_memory() == 1 << 30 and len(reads) == 1
    clock[0] += model_module.AVAILABLE_MEMORY_TTL * 0.2
    assert model_module.available_memory() == 2 << 30 and len(reads) == 2
