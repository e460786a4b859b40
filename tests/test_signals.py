"""SIGINT and SIGTERM (issue 15, point 7): a run stops, leaves no file and fails; a long model
call is terminated (onnxruntime RunOptions.terminate from a watcher thread), not waited for.

The core test signals this process while the model call runs; the qgis_process tests send the
signals to a real ``scripts/qgis_process.sh`` run. No time is measured: the slow model's call
would take many minutes, so a run that ends at all was interrupted.
"""

import os
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from faults import META, class_output, conv_init, graph_model, image_input
from helpers_qgis import ROI_OIL, WRAPPER

#: MatMuls of 256 x 256 in one model call: hours of work on a CPU.
CHAIN = 20000


def slow_model(path, chain=CHAIN):
    """Softmax of the 1x1 convolution, plus 0 x a chain of ``chain`` 256 x 256 MatMuls that
    depend on the input (so nothing is folded at load): one call takes very long."""
    rng = np.random.default_rng(0)
    consts = [numpy_helper.from_array((rng.normal(0, 1 / 16, (256, 256))).astype(np.float32),
                                      "m"),
              numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["logits"]),
             helper.make_node("ReduceMean", ["x"], ["s"], keepdims=0),
             helper.make_node("Mul", ["m", "s"], ["h0"])]
    for i in range(chain):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "m"], [f"g{i}"]))
        nodes.append(helper.make_node("Tanh", [f"g{i}"], [f"h{i + 1}"]))
    nodes += [helper.make_node("ReduceMean", [f"h{chain}"], ["t"], keepdims=0),
              helper.make_node("Mul", ["t", "zero"], ["t0"]),
              helper.make_node("Add", ["logits", "t0"], ["z"]),
              helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    return graph_model(path, nodes, [image_input()], [class_output()], conv_init() + consts,
                       META)


def test_a_signal_terminates_a_model_call_in_progress(tmp_path):
    from seg_explainer.core import interrupt
    from seg_explainer.core.errors import ExplanationCancelled
    from seg_explainer.core.model import SegmentationModel

    model = SegmentationModel.load(slow_model(tmp_path / "slow.onnx", chain=2000))
    before = signal.getsignal(signal.SIGINT)
    started = threading.Event()

    def send_when_running():
        while not interrupt._calls:
            started.wait(0.01)
        started.set()
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send_when_running, daemon=True)
    with interrupt.stop_on_signals() as stop:
        sender.start()
        with pytest.raises(ExplanationCancelled, match="stopped by SIGINT"):
            while True:       # calls until the signal comes (the first one is long enough)
                model.predict(np.zeros((1, 32, 32, 1), np.float32))
    assert started.is_set() and stop.signal == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before and interrupt.requested() is None
    assert not interrupt._calls


def _start(args, home):
    env = dict(os.environ, SEGX_QGIS_HOME=str(home))
    return subprocess.Popen(["bash", str(WRAPPER), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_qgis_process_explain_stops_on_a_signal_and_leaves_nothing(sample_data, tmp_path,
                                                                     signum):
    model = slow_model(tmp_path / "slow.onnx")
    out = tmp_path / "out"
    out.mkdir()
    args = ["run", "segexplainer:explain_shap", "--", f"INPUT={sample_data['scene']}",
            f"MODEL={model}", f"ROI={ROI_OIL.format(**sample_data)}", "CLASS=oil",
            "HEX_SIZE=32", "N_SAMPLES=40", "WINDOW=128", f"EXCITATION={out / 'exc.tif'}",
            f"INHIBITION={out / 'inh.tif'}", f"CELLS={out / 'cells.gpkg'}"]
    proc = _start(args, tmp_path / "qp")
    seen = []
    for line in proc.stdout:          # the window is read: the first model call follows
        seen.append(line)
        if line.startswith("Window of"):
            break
    assert seen and seen[-1].startswith("Window of"), "".join(seen)
    proc.send_signal(signum)
    rest = proc.stdout.read()
    code = proc.wait()
    name = signal.Signals(signum).name
    assert code != 0, rest
    assert f"Explanation stopped by {name}; no output was written." in rest, rest
    assert sorted(os.listdir(out)) == []


def test_qgis_process_segment_stops_on_sigterm_and_removes_its_partial_files(sample_data,
                                                                            tmp_path):
    model = slow_model(tmp_path / "slow.onnx", chain=200)
    out = tmp_path / "out"
    out.mkdir()
    args = ["run", "segexplainer:segment", "--", f"INPUT={sample_data['scene']}",
            f"MODEL={model}", "TILE_SIZE=64", f"PROBABILITIES={out / 'p.tif'}",
            f"CLASSES={out / 'c.tif'}"]
    proc = _start(args, tmp_path / "qp")
    while not any(".part" in n for n in os.listdir(out)) and proc.poll() is None:
        threading.Event().wait(0.05)
    assert proc.poll() is None, proc.stdout.read()
    partial = sorted(os.listdir(out))
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait() != 0, rest
    assert "Segmentation stopped by SIGTERM; no output was written." in rest, rest
    assert partial and sorted(os.listdir(out)) == []
    assert Path(sample_data["scene"]).is_file()


def test_explain_regions_on_a_local_cluster_stops_on_sigterm(sample_data, tmp_path):
    """The regions run on worker processes of a local Dask cluster; SIGTERM to this process
    (under core.interrupt.stop_on_signals, as qgis_process runs an algorithm) stops the
    submission and ends the workers' model calls in progress, so the run returns cancelled
    with no region done (it went on to the end: each region's model calls take minutes)."""
    from seg_explainer.core.interrupt import stop_on_signals
    from seg_explainer.core.regions import explain_regions, read_regions

    model = slow_model(tmp_path / "slow.onnx")
    regions, crs = read_regions(sample_data["regions"])
    said = []

    def log(kind, text):
        said.append(text)
        if "to explain on 1 worker(s)" in text:     # submitted next: signal in 3 s
            threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM)).start()

    with stop_on_signals() as stop:
        run = explain_regions(regions, model, "oil", "rise", str(tmp_path / "out"),
                              raster=sample_data["scene"], crs_wkt=crs, window=96, n_masks=20,
                              n_workers=1, log=log)
    assert any("to explain on 1 worker(s)" in text for text in said), said
    assert stop.signal == "SIGTERM" and run.cancelled and run.n_done == 0
    assert not os.path.isdir(tmp_path / "out" / "regions") or \
        os.listdir(tmp_path / "out" / "regions") == []


def test_qgis_process_explain_regions_stops_on_sigterm_within_the_region(sample_data, tmp_path):
    """Through qgis_process, on its local cluster: the signal ends the worker's model call in
    progress (each call takes minutes), the run fails naming it and no region is left."""
    model = slow_model(tmp_path / "slow.onnx")
    out = tmp_path / "out"
    args = ["run", "segexplainer:explain_regions", "--", f"REGIONS={sample_data['regions']}",
            f"INPUT={sample_data['scene']}", f"MODEL={model}", "CLASS=oil", "METHOD=1",
            "N_MASKS=20", "WINDOW=96", "WORKERS=1", f"OUTPUT_FOLDER={out}"]
    proc = _start(args, tmp_path / "qp")
    # qgis_process's stdout is a pipe (block-buffered): wait for the regions' folder instead,
    # made just before the workers start, then for the first region's model call to begin
    while not (out / "regions").is_dir() and proc.poll() is None:
        threading.Event().wait(0.05)
    threading.Event().wait(8.0)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait() != 0, rest
    assert "Explanation of the regions stopped by SIGTERM: 0 of 3 regions are complete" in rest
    assert os.listdir(out / "regions") == []
