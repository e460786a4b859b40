"""Hostile and unusual models through the engine (no QGIS): integer inputs, memory bombs,
label-map outputs, fixed non-square inputs, NaN outputs, duplicate class names.

Every model is a tiny graph built here with onnx.helper.
"""

import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from seg_explainer.core.errors import ModelError
from seg_explainer.core.model import ModelInputWarning, ModelMemoryError, SegmentationModel


def save(path, nodes, inputs, outputs, inits=(), metadata=None, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return str(path)


def image(shape=("N", 1, "H", "W"), elem=TensorProto.FLOAT, name="x"):
    return helper.make_tensor_value_info(name, elem, list(shape))


def classes(k=2, shape=None, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info("y", elem, list(shape or ["N", k, "H", "W"]))


def two_class_softmax(src="xf"):
    """[N, 1, H, W] float ``src`` -> softmax(concat(0, src)) over 2 classes as ``y``."""
    return [helper.make_node("Sub", [src, src], ["zero"]),
            helper.make_node("Concat", ["zero", src], ["l"], axis=1),
            helper.make_node("Softmax", ["l"], ["y"], axis=1)]


# ---------------------------------------------------------------- integer inputs


def uint8_model(path, metadata=None):
    """y = softmax(0, x / 64 - 2) of a uint8 input: p(class 1) = 0.5 at x = 128."""
    nodes = [helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["xc", "d"], ["xd"]),
             helper.make_node("Sub", ["xd", "two"], ["xf"])] + two_class_softmax()
    inits = [numpy_helper.from_array(np.array(64.0, np.float32), "d"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    return save(path, nodes, [image(elem=TensorProto.UINT8)], [classes()], inits, metadata)


def p1(x):
    """The uint8 model's p(class 1) for the integer input x."""
    z = x / 64.0 - 2
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("meta", [{}, {"seg_explainer_input_unit": "dB"},
                                  {"seg_explainer_output_activation": "softmax"}])
def test_uint8_model_refuses_db_values_when_its_metadata_states_no_scaling(tmp_path, meta):
    """dB values (-25..5) to a uint8 model whose metadata (none, or our keys without
    seg_explainer_input_scaling) does not state the scaling: refused, never wrapped (-25 would
    become 231 as uint8) nor clipped (every value would become 0)."""
    model = SegmentationModel.load(uint8_model(tmp_path / "m.onnx", meta or None))
    db = np.linspace(-25, 5, 16, dtype=np.float32).reshape(1, 4, 4, 1)
    with pytest.raises(ModelError, match=r"takes uint8 input \(values 0 to 255\) but the values "
                       r"given to it go from -25 to 5 \(13 of 16 outside that range\).*not "
                       r"clipped: choose a raster of the type.*seg_explainer_input_scaling"):
        model.predict(db)


def test_uint8_model_rounds_in_range_values_with_a_warning(tmp_path):
    model = SegmentationModel.load(uint8_model(tmp_path / "m.onnx"))
    x = np.array([0.0, 100.4, 100.6, 255.0], np.float32).reshape(1, 2, 2, 1)
    with pytest.warns(ModelInputWarning, match=r"2 of 4 values .* were not whole numbers and "
                                               r"were rounded"):
        got = model.predict(x)
    np.testing.assert_allclose(got[..., 1].ravel(), p1(np.array([0, 100, 101, 255])),
                               atol=1e-6)
    assert model.input_adjustments == {"clipped": 0, "rounded": 2}


def test_uint8_model_clips_with_a_warning_when_its_metadata_states_the_scaling(tmp_path):
    """A model whose author declared the scaling: values outside 0..255 are clipped (and
    counted), not wrapped: -10 -> 0 and 300 -> 255, not 246 and 44."""
    meta = {"seg_explainer_input_scaling": json.dumps({"type": "none"})}
    model = SegmentationModel.load(uint8_model(tmp_path / "m.onnx", meta))
    x = np.array([-10.0, 0.0, 300.0, 128.0], np.float32).reshape(1, 2, 2, 1)
    with pytest.warns(ModelInputWarning, match=r"2 of 4 values given to the model \(-10 to "
                                               r"300\) were outside its uint8 input.*clipped"):
        got = model.predict(x)
    np.testing.assert_allclose(got[..., 1].ravel(), p1(np.array([0, 0, 255, 128])), atol=1e-6)
    assert model.input_adjustments["clipped"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per model, counted always
        model.predict(x)
    assert model.input_adjustments["clipped"] == 4


# ---------------------------------------------------------------- memory


def memory_bomb(path, op):
    """A model that asks onnxruntime for 4 TB on any input (ConstantOfShape or Expand)."""
    shape = numpy_helper.from_array(np.array([1, 1, 10 ** 6, 10 ** 6], np.int64), "s")
    if op == "ConstantOfShape":
        big = helper.make_node("ConstantOfShape", ["s"], ["big"],
                               value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
        inits = [shape]
    else:
        big = helper.make_node("Expand", ["one"], ["big"])
        big.input.append("s")
        inits = [shape, numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "one")]
    nodes = [big, helper.make_node("ReduceMax", ["big"], ["m"], keepdims=1),
             helper.make_node("Add", ["x", "m"], ["xf"])] + two_class_softmax()
    return save(path, nodes, [image()], [classes()], inits)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand"])
def test_model_asking_for_terabytes_ends_in_a_model_error(tmp_path, op):
    with pytest.raises(ModelMemoryError, match=r"the model asked for 3.73e\+03 GiB in one step "
                       r"on an input of shape \[1, 1, 64, 64\], more than the .* GiB "
                       r"onnxruntime may use here; .*broken or hostile: choose another model"):
        SegmentationModel.load(memory_bomb(tmp_path / "bomb.onnx", op))


def test_call_too_large_for_the_memory_is_refused_before_it_runs(tmp_path, monkeypatch):
    import seg_explainer.core.model as model_module

    path = save(tmp_path / "m.onnx", two_class_softmax("x"), [image()], [classes()])
    model = SegmentationModel.load(path)
    # 1 image of 100 x 100 px, 1 band, 2 classes: 4 x 100 x 100 x (4 + 8) bytes = 480 kB.
    monkeypatch.setattr(model_module, "available_memory", lambda: 200_000)
    calls = []
    real_run = model._session.run
    monkeypatch.setattr(model._session, "run", lambda *a: calls.append(a) or real_run(*a),
                        raising=False)
    with pytest.raises(ModelMemoryError, match=r"one call of the model on 1 image\(s\) of 100 "
                       r"x 100 pixels would need about 0.000447 GiB .*more than the 0.000186 "
                       r"GiB of memory available; use a smaller region of interest"):
        model.predict(np.zeros((3, 100, 100, 1), np.float32))
    assert calls == []
    # Room for two images per call: the batch of 5 is split, the result is the same.
    monkeypatch.setattr(model_module, "available_memory", lambda: 1_000_000)
    x = np.random.default_rng(0).normal(size=(5, 100, 100, 1)).astype(np.float32)
    got = model.predict(x, batch_size=5)
    assert [c[1]["x"].shape[0] for c in calls] == [2, 2, 1]
    monkeypatch.setattr(model_module, "available_memory", lambda: None)
    np.testing.assert_allclose(got, model.predict(x, batch_size=5), atol=1e-6)


# ---------------------------------------------------------------- outputs


def test_argmax_label_map_is_refused_with_the_fix(tmp_path):
    nodes = [helper.make_node("Neg", ["x"], ["nx"]),
             helper.make_node("Concat", ["x", "nx"], ["l"], axis=1),
             helper.make_node("ArgMax", ["l"], ["y"], axis=1, keepdims=0)]
    path = save(tmp_path / "argmax.onnx", nodes, [image()],
                [classes(shape=["N", "H", "W"], elem=TensorProto.INT64)])
    with pytest.raises(ModelError, match=r"outputs a label map \(one class index per pixel; an "
                       r"ArgMax\), which holds no class probabilities.*without its final ArgMax"):
        SegmentationModel.load(path)
    # Cast to float after the ArgMax: still a label map.
    nodes[-1] = helper.make_node("ArgMax", ["l"], ["idx"], axis=1, keepdims=1)
    nodes.append(helper.make_node("Cast", ["idx"], ["y"], to=TensorProto.FLOAT))
    path = save(tmp_path / "argmax_float.onnx", nodes, [image()], [classes(k=1)])
    with pytest.raises(ModelError, match=r"label map .*an ArgMax"):
        SegmentationModel.load(path)


def test_integer_output_is_refused(tmp_path):
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)]
    path = save(tmp_path / "u8out.onnx", nodes, [image()],
                [classes(k=1, elem=TensorProto.UINT8)])
    with pytest.raises(ModelError, match=r"label map .*its type tensor\(uint8\)"):
        SegmentationModel.load(path)


def test_fixed_non_square_input_is_padded_and_a_larger_image_is_refused(tmp_path):
    path = save(tmp_path / "ns.onnx", two_class_softmax("x"), [image((1, 1, 32, 48))],
                [classes(shape=[1, 2, 32, 48])])
    model = SegmentationModel.load(path)
    assert model.fixed_size == (32, 48) and model.tile_size is None
    x = np.random.default_rng(1).normal(size=(3, 20, 40, 1)).astype(np.float32)
    got = model.predict(x)
    assert got.shape == (3, 20, 40, 2)
    np.testing.assert_allclose(got[..., 1], 1 / (1 + np.exp(-x[..., 0])), atol=1e-6)
    with pytest.raises(ModelError, match=r"the model takes 32 x 48 pixel inputs only, the image "
                                         r"is 40 x 40; use a region of interest"):
        model.predict(np.zeros((1, 40, 40, 1), np.float32))


def nan_model(path):
    """NaN wherever x > 0 (sqrt of -x), probabilities elsewhere."""
    nodes = [helper.make_node("Neg", ["x"], ["nx"]),
             helper.make_node("Sqrt", ["nx"], ["xf"])] + two_class_softmax()
    return save(path, nodes, [image()], [classes()],
                metadata={"seg_explainer_output_activation": '"none"'})


def test_nan_output_fails_in_the_engine(tmp_path):
    """The message Processing gives (its CheckedModel), from SegmentationModel.predict itself,
    so plain-Python callers of the engine get it too."""
    from seg_explainer.core import explain_region

    model = SegmentationModel.load(nan_model(tmp_path / "nan.onnx"))
    assert np.isfinite(model.predict(-np.ones((1, 4, 4, 1), np.float32))).all()
    message = (r"the model returned NaN or infinite values; check that the raster's values "
               r"suit the model \(its input scaling metadata, or BANDS\)")
    with pytest.raises(ModelError, match=message):
        model.predict(np.ones((1, 4, 4, 1), np.float32))
    img = -np.ones((16, 16, 1), np.float32)
    img[:4, :4] = 1.0
    region = np.zeros((16, 16), bool)
    region[6:10, 6:10] = True
    with pytest.raises(ModelError, match=message):
        explain_region(model, img, region, [1], "occlusion")


@pytest.mark.parametrize("names,repeated", [
    ('["oil", "oil"]', "'oil'"),
    ('["sea", "Oil ", "oil"]', "'Oil ', 'oil'"),
    ('{"0": "sea", "1": "sea", "2": "ship"}', "'sea'"),
])
def test_duplicate_class_names_are_refused_at_load(tmp_path, names, repeated):
    k = len(json.loads(names))
    nodes = [helper.make_node("Concat", ["x"] * k, ["l"], axis=1),
             helper.make_node("Softmax", ["l"], ["y"], axis=1)]
    path = save(tmp_path / "dup.onnx", nodes, [image()], [classes(k)],
                metadata={"class_names": names})
    with pytest.raises(ModelError, match=f"class_names metadata names the class {repeated} "
                                         r"more than once .*give every class its own name"):
        SegmentationModel.load(path)


def test_a_run_warns_of_the_values_its_model_clipped(tmp_path):
    """Issue 15: values a model's input type clips reach the run's log as a warning (the
    Processing log and the dock), counted per run, not only Python's once-per-model warning."""
    from osgeo import gdal, ogr, osr

    from seg_explainer.core.job import explain_to_files

    meta = {"seg_explainer_input_scaling": json.dumps({"type": "none"})}
    model = SegmentationModel.load(uint8_model(tmp_path / "m.onnx", meta))
    path = str(tmp_path / "scene.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 32, 32, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((0.0, 1.0, 0.0, 32.0, 0.0, -1.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds.SetProjection(srs.ExportToWkt())
    values = np.full((32, 32), 100.0, np.float32)
    values[:4] = 400.0                              # 128 pixels above the uint8 range
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    roi = bytes(ogr.CreateGeometryFromWkt("POLYGON((10 10,20 10,20 20,10 20,10 10))")
                .ExportToWkb())
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelInputWarning)
        explain_to_files(model, path, roi, "1", "rise", window=32, n_masks=3,
                         log=lambda kind, text: said.append((kind, text)))
    clipped = [text for kind, text in said if kind == "warning" and "clipped" in text]
    total = model.input_adjustments["clipped"]
    assert total >= 128                      # the unperturbed image alone clips 128 values
    assert len(clipped) == 1 and clipped[0].startswith(f"{total} values given to the model")
    said.clear()
    explain_to_files(model, path, roi, "1", "rise", window=32, n_masks=3,
                     log=lambda kind, text: said.append((kind, text)))
    again = [text for kind, text in said if kind == "warning" and "clipped" in text]
    assert again[0].startswith(f"{model.input_adjustments['clipped'] - total} values")


# ---------------------------------------------------------------- output layout


@pytest.mark.parametrize("declared", [["N", "H", "W", 2], ["N", "A", "B", "C"]])
def test_a_class_last_output_is_read_right_on_an_image_whose_side_is_the_class_count(
        tmp_path, declared):
    """NCHW input, [N, H, W, K] output: on a 2 x 2 image with 2 classes both readings fit the
    output's shape; the class axis known from the declared shape or the load's test run
    decides (it was taken from the input's layout: the map came out transposed)."""
    from faults import B1, META, W1, conv_init, graph_model, image_input

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["z"]),
             helper.make_node("Transpose", ["z"], ["zt"], perm=[0, 2, 3, 1]),
             helper.make_node("Softmax", ["zt"], ["y"], axis=3)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, declared)
    path = graph_model(tmp_path / "m.onnx", nodes, [image_input()], [out], conv_init(), META)
    model = SegmentationModel.load(path)
    x = np.array([[-40.0, -5.0], [-20.0, 10.0]], np.float32)
    got = model.predict(x.reshape(1, 2, 2, 1))
    logit = B1[1] + W1[1, 0] * x
    np.testing.assert_allclose(got[0, ..., 1], 1 / (1 + np.exp(-logit)), atol=1e-6)
