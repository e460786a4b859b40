"""Broken models and injected faults, shared by the robustness matrix (test_robustness.py,
through Processing) and the dock's tests (test_dock.py, through the dock's background task).

Every model is a tiny ONNX graph built with onnx.helper; every fault is a monkeypatch of the
writer or of onnxruntime. Nothing here imports QGIS.
"""

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_core_model import build_model

# 1x1 convolution, two classes: p(oil) = softmax(0, 0.2 x + 3), 0.5 at x = -15 dB.
W1, B1 = np.array([[0.0], [0.2]]), np.array([0.0, 3.0])
META = {"class_names": '["sea", "oil"]', "seg_explainer_output_activation": "none"}


# --------------------------------------------------------------------------- graphs


def graph_model(path, nodes, inputs, outputs, initializers=(), metadata=None, opsets=None,
                functions=()):
    """Save a model of ``nodes`` (opset 13 unless ``opsets``) with ``metadata`` props."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 13)],
                              functions=list(functions))
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return str(path)


def image_input(c=1):
    """The input ``x``: [N, c, H, W], dynamic sizes."""
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, "H", "W"])


def class_output(k=2):
    """The output ``y``: [N, k, H, W], dynamic sizes."""
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", k, "H", "W"])


def conv_init():
    """Initializers ``w`` and ``b`` of the 1x1 convolution W1, B1."""
    return [numpy_helper.from_array(W1.reshape(2, 1, 1, 1).astype(np.float32), "w"),
            numpy_helper.from_array(B1.astype(np.float32), "b")]


def tiny_model(path, metadata=META):
    """Softmax of the 1x1 convolution W1, B1: a model that works."""
    return build_model(path, weights=W1, bias=B1, activation="softmax", metadata=metadata)


def failing_model(path, threshold=100.0):
    """Softmax of the 1x1 convolution, but a Gather fails when the batch's maximum > threshold
    (its index becomes 10, outside a 2-element table): a model that fails on some inputs."""
    consts = [numpy_helper.from_array(np.array(threshold, np.float32), "thr"),
              numpy_helper.from_array(np.array(10, np.int64), "ten"),
              numpy_helper.from_array(np.zeros(2, np.float32), "table")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["logits"]),
             helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "thr"], ["big"]),
             helper.make_node("Cast", ["big"], ["big_i"], to=TensorProto.INT64),
             helper.make_node("Mul", ["big_i", "ten"], ["idx"]),
             helper.make_node("Gather", ["table", "idx"], ["zero"], axis=0),
             helper.make_node("Add", ["logits", "zero"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    return graph_model(path, nodes, [image_input()], [class_output()], conv_init() + consts,
                       META)


# --------------------------------------------------------------------------- bad model files
# Each maker writes a bad model into ``folder`` (an empty folder of its own) and returns its
# path; files it needs outside the model's folder go to ``folder.parent``.


def not_onnx(folder):
    path = folder / "model.onnx"
    path.write_text("this is not a model")
    return path


def truncated(folder):
    raw = Path(tiny_model(folder / "whole.onnx")).read_bytes()
    os.unlink(folder / "whole.onnx")
    path = folder / "model.onnx"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def custom_op(folder):
    """onnxruntime-extensions' PyOp: its library (Python code) is never registered."""
    return graph_model(folder / "model.onnx",
                       [helper.make_node("PyOp", ["x"], ["y"], domain="ai.onnx.contrib")],
                       [image_input()], [class_output()], metadata=META,
                       opsets=[helper.make_opsetid("", 13),
                               helper.make_opsetid("ai.onnx.contrib", 1)])


def unknown_standard_op(folder):
    """An operator ONNX does not have, in ONNX's own domain (a misspelt or custom one)."""
    return graph_model(folder / "model.onnx", [helper.make_node("FooBar", ["x"], ["y"])],
                       [image_input()], [class_output()], metadata=META)


def external(location):
    """A maker of the tiny model with its weights ``w`` stored in the file ``location``
    ("ABS" is replaced by the absolute path of ``folder.parent / "secret.bin"``); the model
    goes to ``folder / "model_dir"``, so "../secret.bin" is outside its folder and exists."""
    def make(folder):
        secret = folder.parent / "secret.bin"
        secret.write_bytes(W1.reshape(2, 1, 1, 1).astype(np.float32).tobytes())
        (folder / "model_dir").mkdir()
        path = folder / "model_dir" / "model.onnx"
        model = onnx.load(tiny_model(folder / "base.onnx"))
        os.unlink(folder / "base.onnx")
        tensor = next(t for t in model.graph.initializer if t.name == "w")
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        loc = location.replace("ABS", str(secret))
        for key, value in (("location", loc), ("offset", "0"), ("length", "8")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(path))
        return path
    return make


def two_inputs(folder):
    return build_model(folder / "model.onnx", weights=W1, bias=B1, extra_input=True)


def rank3(folder):
    return graph_model(
        folder / "model.onnx", [helper.make_node("Identity", ["x"], ["y"])], [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8])])


def classifier(folder):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["l"]),
             helper.make_node("GlobalAveragePool", ["l"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    return graph_model(folder / "model.onnx", nodes, [image_input()],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                       conv_init(), META)


def python_in_metadata(folder):
    """class_names holding Python code that would create ``folder.parent / "PWNED"``."""
    sentinel = folder.parent / "PWNED"
    meta = dict(META, class_names=f"__import__('os').system('touch {sentinel}')")
    return tiny_model(folder / "model.onnx", metadata=meta)


#: (case, maker, regular expression the message must match)
BAD_MODELS = [
    ("model file missing", lambda folder: folder / "missing.onnx", "does not exist"),
    ("not ONNX", not_onnx, "not an ONNX model.*export"),
    ("truncated ONNX", truncated, "not an ONNX model.*export"),
    ("custom operator", custom_op, "operator 'PyOp' of domain 'ai.onnx.contrib'.*custom "
     "operator.*standard ONNX"),
    ("unknown operator of the ONNX domain", unknown_standard_op, "operator 'FooBar', which is "
     "not an ONNX operator of opset 13.*standard ONNX"),
    ("external data outside its folder", external("../secret.bin"),
     "outside the model's own folder.*Re-export"),
    ("external data at an absolute path", external("ABS"), "outside the model's own folder"),
    ("external data file missing", external("weights.bin"), "weights file 'weights.bin' is "
     "missing.*copy it"),
    ("two inputs", two_inputs, "2 inputs.*single input"),
    ("input rank 3", rank3, "rank 3.*4-D"),
    ("output not a per-pixel map", classifier, "not a per-pixel map"),
    ("Python code in metadata", python_in_metadata, "class_names.*expected"),
]


# --------------------------------------------------------------------------- faults


NO_SPACE = "no space left on the output disk; free space or choose another folder"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
GDAL_ENOSPC = RuntimeError("TIFFAppendToStrip:Write error at scanline 0: No space left on device")
GPU_OOM = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of GPU memory"


def disk_full_after(monkeypatch, n, exc):
    """Make every GeoTIFF block write after the first ``n`` raise ``exc``; returns the list
    that gets one entry per write attempted."""
    from seg_explainer.core import geoio

    real = geoio._BlockWriter.write
    calls = []

    def write(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(geoio._BlockWriter, "write", write)
    return calls


def model_fails_after(monkeypatch, n, message=GPU_OOM):
    """Make onnxruntime's ``InferenceSession.run`` raise RuntimeError(message) after ``n``
    calls (as a GPU running out of memory mid-run does); returns the list of calls."""
    import onnxruntime as ort

    real_run = ort.InferenceSession.run
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise RuntimeError(message)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "run", flaky)
    return calls


def unwritable_folder(tmp_path):
    """An existing folder in which no file can be created: a read-only folder in
    ``tmp_path``, or, for root (whom permissions do not stop), /sys."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    os.chmod(folder, 0o555)
    for candidate in (folder, Path("/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no unwritable folder available")


def files_in(folder):
    """Names of every file and folder under ``folder`` (hidden temporary files included)."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
