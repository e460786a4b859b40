"""The dock in a real headless QGIS: model metadata, hints, settings, runs of the
``segexplainer:explain_*`` algorithms in the task manager (tiny ONNX model, small windows),
and the dock's rows of the robustness matrix: bad models, cancel at every stage, unwritable
folders, a full disk and models failing mid-run."""

import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem,
                       QgsCoordinateTransform, QgsFeature, QgsGeometry, QgsPointXY, QgsProject,
                       QgsRasterLayer, QgsRectangle, QgsTask, QgsVectorLayer)
from qgis.PyQt.QtCore import QElapsedTimer, QPoint, Qt, QThreadPool, QTimer
from qgis.PyQt.QtTest import QTest

from faults import (BAD_MODELS, ENOSPC, GPU_OOM, NO_SPACE, disk_full_after, failing_model,
                    files_in, model_fails_after, unwritable_folder)
from helpers_qgis import hook_model_calls

RASTER_CRS = QgsCoordinateReferenceSystem("EPSG:32631")
CANVAS_CRS = QgsCoordinateReferenceSystem("EPSG:3857")
X0, Y0, PIXEL = 480000.0, 5890000.0, 10.0
SIZE = 160
PATCH = (60, 90, 70, 110)  # rows, cols of the dark ("oil") patch: row0, row1, col0, col1


# --------------------------------------------------------------------------- data

def build_tiny_model(path, tile=64):
    """A 3x3-average segmentation model: oil where the neighbourhood is darker than -21 dB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((2, 1, 3, 3), np.float32)
    w[1, 0] = -1.0 / 9.0
    b = np.array([0.0, -21.0], np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["logits"], pads=[1, 1, 1, 1]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                      ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in {"model_type": '"Segmentor"', "class_names": '["sea", "oil"]',
                       "tiles_size": str(tile),
                       "seg_explainer_input_scaling": '{"type": "none"}',
                       "seg_explainer_output_activation": '"none"'}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return str(path)


def write_raster(path, n_bands=1):
    """The scene in band 1; any further band is bright, about 0 dB (sea, no oil anywhere)."""
    from osgeo import gdal, osr

    rng = np.random.default_rng(3)
    data = (-16.0 + rng.normal(0, 1.0, (SIZE, SIZE))).astype(np.float32)
    r0, r1, c0, c1 = PATCH
    data[r0:r1, c0:c1] -= 10.0
    ds = gdal.GetDriverByName("GTiff").Create(str(path), SIZE, SIZE, n_bands, gdal.GDT_Float32)
    ds.SetGeoTransform([X0, PIXEL, 0, Y0, 0, -PIXEL])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(data)
    for band in range(2, n_bands + 1):
        ds.GetRasterBand(band).WriteArray(rng.normal(0, 1.0, data.shape).astype(np.float32))
    ds = None
    return str(path)


def utm(col, row):
    """Map coordinates (EPSG:32631) of a pixel position."""
    return QgsPointXY(X0 + col * PIXEL, Y0 - row * PIXEL)


def patch_polygon_3857():
    """The dark patch (shrunk by 3 px) as a polygon in the canvas CRS EPSG:3857."""
    r0, r1, c0, c1 = PATCH
    ring = [utm(c0 + 3, r0 + 3), utm(c1 - 3, r0 + 3), utm(c1 - 3, r1 - 3), utm(c0 + 3, r1 - 3)]
    geom = QgsGeometry.fromPolygonXY([ring])
    geom.transform(QgsCoordinateTransform(RASTER_CRS, CANVAS_CRS, QgsProject.instance()))
    return geom


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dock_data")
    return {"model": build_tiny_model(folder / "tiny.onnx"),
            "raster": write_raster(folder / "scene.tif"),
            "raster2": write_raster(folder / "scene_two_bands.tif", n_bands=2)}


@pytest.fixture()
def settings_group(monkeypatch):
    """Keep the tests' QgsSettings away from the user's ``seg_explainer/`` group."""
    from qgis.core import QgsSettings

    import seg_explainer.ui.settings as settings_module

    group = f"seg_explainer_test_{os.getpid()}"
    monkeypatch.setattr(settings_module, "SETTINGS", group)
    QgsSettings().remove(group)
    yield group
    QgsSettings().remove(group)


@pytest.fixture()
def provider(qgis_processing):
    from seg_explainer.processing_provider.provider import SegExplainerProvider

    registry = QgsApplication.processingRegistry()
    prov = SegExplainerProvider()
    registry.addProvider(prov)
    yield prov
    registry.removeProvider(prov)


@pytest.fixture()
def raster(files, qgis_new_project):
    layer = QgsRasterLayer(files["raster"], "scene", "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture()
def raster2(files, raster):
    """A second raster: band 1 the same scene, band 2 bright (no oil)."""
    layer = QgsRasterLayer(files["raster2"], "scene two bands", "gdal")
    assert layer.isValid() and layer.bandCount() == 2
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture()
def dock(qgis_iface, qgis_new_project, settings_group):
    from seg_explainer.ui.dock import SegExplainerDock

    qgis_iface.messageBar().clear_messages()
    canvas = qgis_iface.mapCanvas()
    widget = SegExplainerDock(qgis_iface)
    widget.show()
    yield widget
    if widget.current_run is not None:
        widget.cancel()
        _wait(lambda: widget.current_run is None)
    widget.shutdown()
    widget.close()
    widget.deleteLater()
    canvas.stopRendering()  # returns once a render of the run's layers has stopped
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()  # the runs' (now empty) groups


@pytest.fixture()
def ready(dock, raster, files, provider, tmp_path):
    """A dock set up for a small run: tiny model, window 64, region drawn in EPSG:3857."""
    dock.input_box.raster_combo.setLayer(raster)
    dock.model_picker.file_widget.setFilePath(files["model"])
    assert dock.model_picker.info is not None, dock.model_picker.label.text()
    dock.region_picker.set_region(patch_polygon_3857(), CANVAS_CRS)
    dock.method_form.common_widgets["WINDOW"].setValue(64)
    dock.method_form.common_widgets["BATCH_SIZE"].setValue(32)
    dock.output_box.folder_widget.setFilePath(str(tmp_path / "out"))
    return dock


def _wait(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        QgsApplication.processEvents()
        time.sleep(0.002)


def _select_method(dock, method):
    from seg_explainer.core.parameters import EXPLAIN_METHODS

    dock.method_form.tabs.setCurrentIndex(EXPLAIN_METHODS.index(method))


def _group_children(group):
    return [child.name() for child in group.children()]


# --------------------------------------------------------------------------- widgets

def test_no_raster_layer_gives_a_hint_not_a_failure(dock, qgis_iface, provider):
    assert not dock.hint.isHidden()
    assert "No raster layer is open" in dock.hint.text()
    assert "Add Raster Layer" in dock.hint.text()
    assert not dock.result_panel.run_button.isEnabled()
    assert dock.run() is None
    errors = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("No raster layer is open" in e for e in errors)


def test_only_raster_layers_are_offered(dock, raster):
    vector = QgsVectorLayer("Polygon?crs=EPSG:32631", "polygons", "memory")
    QgsProject.instance().addMapLayer(vector)
    combo = dock.input_box.raster_combo
    names = [combo.itemText(i) for i in range(combo.count())]
    assert names == ["scene"]
    regions = [dock.region_picker.layer_combo.itemText(i)
               for i in range(dock.region_picker.layer_combo.count())]
    assert regions == ["polygons"]


def test_model_metadata_is_shown_and_fills_the_classes(dock, files, raster):
    dock.input_box.raster_combo.setLayer(raster)
    info = dock.model_picker.load(files["model"])
    assert info["classes"] == ["sea", "oil"]
    text = dock.model_picker.label.text()
    for expected in ["0 sea, 1 oil", "64 px", "NCHW", "none (metadata)", "type none"]:
        assert expected in text, (expected, text)
    classes = dock.model_picker.class_combo
    assert [classes.itemText(i) for i in range(classes.count())] == \
        ["sea", "oil"]
    assert dock.model_picker.class_combo.currentText() == "oil"
    assert dock.model_picker.recent_models()[0] == info["path"]


def test_unreadable_model_is_a_readable_message(dock, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf")
    assert dock.model_picker.load(str(bad)) is None
    text = dock.model_picker.label.text()
    assert "cannot be used" in text and "broken.onnx" in text
    assert "Traceback" not in text
    assert dock.model_picker.class_combo.count() == 0
    assert dock.model_picker.load(str(tmp_path / "missing.onnx")) is None
    assert "not found" in dock.model_picker.label.text()


def test_method_tabs_carry_the_papers_defaults(dock):
    values = {m: dock.method_form.method_values(m) for m in ("shap", "rise", "occlusion")}
    assert values == {"shap": {"HEX_SIZE": 0, "N_SAMPLES": 0},
                      "rise": {"N_MASKS": 2000, "GRID_SIZE": 8, "P_KEEP": 0.5},
                      "occlusion": {"MAX_DEPTH": 4, "N_BEST": 5}}
    assert [dock.method_form.tabs.tabText(i) for i in range(3)] == ["SHAP", "RISE", "Occlusion"]
    common = dock.method_form.common_widgets
    assert common["WINDOW"].value() == 0 and common["BATCH_SIZE"].value() == 0
    assert common["SEED"].value() == 0 and common["BASELINE"].currentIndex() == 0
    for widgets in dock.method_form.param_widgets.values():
        for widget in widgets.values():
            assert "default" in widget.toolTip()
    # an automatic choice reads "auto", not a bare 0 (nor an older rule's words)
    automatic = {"WINDOW": common["WINDOW"],
                 "HEX_SIZE": dock.method_form.param_widgets["shap"]["HEX_SIZE"],
                 "N_SAMPLES": dock.method_form.param_widgets["shap"]["N_SAMPLES"],
                 "BATCH_SIZE": common["BATCH_SIZE"]}
    for key, widget in automatic.items():
        assert widget.text() == "auto", key
        widget.setValue(30)
        assert widget.text().replace(".0", "") == "30", key


def test_settings_persist_across_sessions(qgis_iface, dock, files, raster, tmp_path):
    from seg_explainer.ui.dock import SegExplainerDock

    dock.model_picker.load(files["model"])
    _select_method(dock, "rise")
    dock.method_form.param_widgets["rise"]["N_MASKS"].setValue(777)
    dock.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(9)
    dock.method_form.common_widgets["WINDOW"].setValue(96)
    dock.method_form.common_widgets["SEED"].setValue(5)
    dock.output_box.folder_widget.setFilePath(str(tmp_path / "results"))
    dock.save_settings()
    again = SegExplainerDock(qgis_iface)
    try:
        assert again.method_form.current_method() == "rise"
        assert again.method_form.param_widgets["rise"]["N_MASKS"].value() == 777
        assert again.method_form.param_widgets["shap"]["HEX_SIZE"].value() == 9
        common = again.method_form.common_widgets
        assert common["WINDOW"].value() == 96 and common["SEED"].value() == 5
        assert again.output_box.folder_widget.filePath() == str(tmp_path / "results")
        info = again.model_picker.info
        assert info is not None and info["path"] == files["model"]
        assert again.model_picker.recent_combo.itemData(1) == files["model"]
    finally:
        again.shutdown()
        again.deleteLater()


def test_a_default_the_user_kept_follows_the_plugin(qgis_iface, qgis_new_project,
                                                    settings_group):
    """A value equal to its default is not stored, so a later default applies to it; the 1
    that versions before automatic batches stored for BATCH_SIZE (their default) is dropped
    once, a value chosen by hand is kept."""
    from qgis.core import QgsSettings

    from seg_explainer.ui.dock import SegExplainerDock

    stored = QgsSettings()
    stored.setValue(f"{settings_group}/BATCH_SIZE", 1)     # as an earlier version saved it
    stored.setValue(f"{settings_group}/SEED", 5)
    docks = [SegExplainerDock(qgis_iface)]
    try:
        common = docks[0].method_form.common_widgets
        assert common["BATCH_SIZE"].value() == 0 and common["SEED"].value() == 5
        common["BATCH_SIZE"].setValue(1)                      # chosen now: kept
        common["SEED"].setValue(0)                            # back to the default: forgotten
        docks[0].save_settings()
        assert str(stored.value(f"{settings_group}/BATCH_SIZE")) == "1"
        assert stored.value(f"{settings_group}/SEED") is None
        assert stored.value(f"{settings_group}/WINDOW") is None
        docks.append(SegExplainerDock(qgis_iface))
        assert docks[1].method_form.common_widgets["BATCH_SIZE"].value() == 1
    finally:
        for d in docks:
            d.shutdown()
            d.deleteLater()


def test_estimate_counts_evaluations_and_times_one_batch(ready, monkeypatch):
    """The estimate counts the run's evaluations; 'Estimate time' times one batch of the
    model and, for SHAP's own work, the machine's boosted-trees rounds, in its background
    task: no estimate after it times anything on the GUI thread."""
    import importlib
    import threading

    from seg_explainer.core.cells import hexagon_grid

    solve_time = importlib.import_module("seg_explainer.core.solve_time")
    monkeypatch.setattr(solve_time, "_coefficients", None)      # not yet timed in this process
    timed_on, real_rounds = [], solve_time._timed_rounds

    def timed_rounds(*args):
        timed_on.append(threading.current_thread() is threading.main_thread())
        return real_rounds(*args)

    monkeypatch.setattr(solve_time, "_timed_rounds", timed_rounds)

    cells = hexagon_grid(64, 64, 22).n_cells
    _select_method(ready, "shap")
    ready.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(22)
    count, seconds = ready.update_estimate()
    assert count == min(2 * cells + 2048, 2 ** cells - 2) + 2
    _select_method(ready, "rise")
    assert ready.update_estimate() == (2001, None)
    task = ready.start_estimate()
    assert task is not None
    _wait(lambda: ready.output_box.estimate_task is None)
    assert task.seconds_per_evaluation is not None and task.seconds_per_evaluation > 0
    count, seconds = ready.update_estimate()
    assert seconds == pytest.approx(task.seconds_per_evaluation * 2001)
    assert "about" in ready.output_box.estimate_label.text()
    # SHAP's time (same window and batch, so already timed) adds its own fits after the model
    ks = importlib.import_module("seg_explainer.core.kernel_shap")
    _select_method(ready, "shap")
    for size in (6, 9):                  # any cell count, from the same timing
        ready.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(size)
        plan = ready.plan()
        count, seconds = ready.update_estimate()
        solve = ks.solve_seconds(plan.n_cells, count - 2)
        assert count == plan.evaluations and solve > 0
        assert seconds == pytest.approx(task.seconds_per_evaluation * count + solve)
    assert timed_on and not any(timed_on)      # timed, in the background task only


def test_the_estimate_times_the_automatic_batch(ready):
    """BATCH_SIZE 0 (automatic) is timed as a run takes it: the engine chooses the batch for
    the window, and the timing is kept apart from a batch size set by hand."""
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(0)
    _select_method(ready, "rise")
    assert ready.batch_size() is None and ready.update_estimate() == (2001, None)
    task = ready.start_estimate()
    assert task is not None and task.batch_size is None
    _wait(lambda: ready.output_box.estimate_task is None)
    assert task.seconds_per_evaluation is not None and task.seconds_per_evaluation > 0, task.error
    count, seconds = ready.update_estimate()
    assert seconds == pytest.approx(task.seconds_per_evaluation * count)
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(4)
    assert ready.batch_size() == 4 and ready.update_estimate() == (2001, None)


def test_occlusion_s_estimate_samples_its_real_trees(ready):
    """Issue 14 point 3: occlusion's evaluations depend on what the model sees; 'Estimate time'
    samples the run's own trees (core.estimate.measured_occlusion_evaluations on the run's
    inputs) and the run then spends about that many."""
    from seg_explainer.core.estimate import measured_occlusion_evaluations
    from seg_explainer.core.job import read_job, resolve_class
    from seg_explainer.core.model import SegmentationModel

    _select_method(ready, "occlusion")
    ready.method_form.param_widgets["occlusion"]["MAX_DEPTH"].setValue(3)
    plan = ready.plan()
    assert ready.update_estimate() == (plan.evaluations, None)     # not timed yet
    task = ready.start_estimate()
    assert task is not None and task.occlusion is not None
    _wait(lambda: ready.output_box.estimate_task is None, timeout=120)
    assert task.evaluations is not None, task.error
    spec = task.occlusion
    assert spec["window"] == 64 and spec["params"]["max_depth"] == 3
    model = SegmentationModel.load(ready.model_picker.path())
    job = read_job(model, spec["source"], spec["roi_wkb"], bands=spec["bands"],
                   window=spec["window"])
    index = resolve_class(spec["class_name"], model.class_names)
    assert task.evaluations == measured_occlusion_evaluations(model, job, index,
                                                              spec["params"])[0]
    count, seconds = ready.update_estimate()
    assert count == task.evaluations
    assert seconds == pytest.approx(task.seconds_per_evaluation * count)
    assert "from a sample of its trees" in ready.output_box.estimate_label.text()
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    _wait(lambda: ready.current_run is None, timeout=120)
    assert run.ok, run.error
    assert 0.75 <= run.results["N_EVALUATIONS"] / count <= 1.25


def test_draw_tool_from_the_dock_sets_the_region(dock, qgis_iface, raster):
    canvas = qgis_iface.mapCanvas()
    canvas.show()
    canvas.resize(600, 600)
    QTest.qWait(10)
    canvas.setDestinationCrs(CANVAS_CRS)
    transform = QgsCoordinateTransform(RASTER_CRS, CANVAS_CRS, QgsProject.instance())
    canvas.setExtent(transform.transformBoundingBox(
        QgsRectangle(X0, Y0 - SIZE * PIXEL, X0 + SIZE * PIXEL, Y0)))
    tool = dock.region_picker.start_drawing()
    assert canvas.mapTool() is tool
    target = utm(100, 40)
    p = canvas.getCoordinateTransform().transform(transform.transform(target))
    pos = QPoint(round(p.x()), round(p.y()))
    for button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
        QTest.mouseClick(canvas.viewport(), button, Qt.KeyboardModifier.NoModifier, pos)
    assert dock.region_picker.crs.authid() == "EPSG:3857"
    point = QgsGeometry(dock.region_picker.geometry)
    point.transform(QgsCoordinateTransform(CANVAS_CRS, RASTER_CRS, QgsProject.instance()))
    assert point.asPoint().distance(target) < 2 * canvas.mapUnitsPerPixel()
    assert "one pixel" in dock.region_picker.label.text()
    canvas.unsetMapTool(tool)


def test_bands_and_crop_reach_the_parameters(ready, raster, raster2):
    _, params, *_ = ready.build_parameters()
    assert params["BANDS"] is None and params["CROP"] is False  # the algorithm's defaults
    assert ready.input_box.bands_edit.placeholderText() == "1 (all bands)"
    ready.input_box.bands_edit.setText(" 1 ")
    ready.method_form.common_widgets["CROP"].setChecked(True)
    _, params, *_ = ready.build_parameters()
    assert params["BANDS"] == [1] and params["CROP"] is True
    # A 2-band raster with the 1-channel model: empty Bands (all bands) cannot work; the
    # placeholder and the hint say what to give; the band order is kept as typed.
    ready.input_box.raster_combo.setLayer(raster2)
    assert ready.input_box.bands_edit.text() == ""  # the bands typed for 'scene' do not carry over
    assert ready.input_box.bands_edit.placeholderText() == \
        "e.g. 1: 1 band(s) in model-channel order"
    assert not ready.result_panel.run_button.isEnabled()
    assert "The model takes 1 channel(s) but 'scene two bands' has 2 band(s). Under Bands, " \
           "give 1 of its band numbers" in ready.hint.text()
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QTextDocument

    shown = QTextDocument()   # one problem alone is shown as HTML: a bullet, not "&bull;"
    shown.setHtml(ready.hint.text())
    assert ready.hint.textFormat() == Qt.TextFormat.RichText
    assert shown.toPlainText().startswith("\u2022 The model takes 1 channel(s)")
    ready.input_box.bands_edit.setText("2")
    assert ready.result_panel.run_button.isEnabled() and ready.hint.isHidden()
    _, params, *_ = ready.build_parameters()
    assert params["BANDS"] == [2] and params["INPUT"] == raster2.id()  # by id: see ExplainRun
    ready.input_box.raster_combo.setLayer(raster)  # each raster keeps its own bands
    assert ready.input_box.bands_edit.text() == "1"
    ready.input_box.raster_combo.setLayer(raster2)
    assert ready.input_box.bands_edit.text() == "2"


@pytest.mark.parametrize("text,hint", [
    ("a", "Bands: 'a' is not a band number. Give band numbers separated by commas, in "
          "model-channel order (e.g. 1), or leave it empty for all bands."),
    ("1.5", "Bands: '1.5' is not a band number."),
    ("2", "Bands: 'scene' has band(s) 1 to 1; 2 is not among them. Give band numbers from 1 "
          "to 1."),
    ("0, 3", "Bands: 'scene' has band(s) 1 to 1; 0, 3 are not among them."),
    ("1, 1", "Bands: the model takes 1 channel(s) but 2 band(s) are given. Give 1 band "
             "number(s) in model-channel order, e.g. 1."),
], ids=["letters", "decimal", "beyond the band count", "zero and beyond",
        "more bands than channels"])
def test_invalid_bands_disable_run_with_a_hint(ready, qgis_iface, text, hint):
    from seg_explainer.ui.text import html as _html

    assert ready.result_panel.run_button.isEnabled() and ready.hint.isHidden()
    ready.input_box.bands_edit.setText(text)
    assert not ready.result_panel.run_button.isEnabled()
    assert not ready.hint.isHidden() and _html(hint) in ready.hint.text(), ready.hint.text()
    with pytest.raises(ValueError, match=re.escape(hint)):
        ready.build_parameters()
    assert ready.run() is None and ready.current_run is None  # the toolbar's Run
    assert _html(hint) in ready.result_panel.label.text()
    assert any(hint in message for message in _critical(qgis_iface))
    ready.input_box.bands_edit.setText("1")  # fixed
    assert ready.result_panel.run_button.isEnabled() and ready.hint.isHidden()
    assert ready.problems() == []


def test_bands_and_crop_persist_across_sessions(qgis_iface, ready, raster, raster2):
    from seg_explainer.ui.dock import SegExplainerDock

    ready.method_form.common_widgets["CROP"].setChecked(True)
    ready.input_box.bands_edit.setText("1")
    ready.input_box.raster_combo.setLayer(raster2)
    ready.input_box.bands_edit.setText("2, 1")
    ready.input_box.raster_combo.setLayer(raster)
    ready.save_settings()
    again = SegExplainerDock(qgis_iface)
    try:
        assert again.method_form.common_widgets["CROP"].isChecked()
        assert again.input_box.raster_combo.currentLayer() is raster
        assert again.input_box.bands_edit.text() == "1"
        again.input_box.raster_combo.setLayer(raster2)
        assert again.input_box.bands_edit.text() == "2, 1"
        assert again.model_picker.info is not None  # the last model: 1 channel, so "2, 1" is wrong
        assert "the model takes 1 channel(s) but 2 band(s) are given" in again.input_box.bands()[1]
    finally:
        again.shutdown()
        again.deleteLater()
    ready.method_form.common_widgets["CROP"].setChecked(False)
    ready.save_settings()
    again = SegExplainerDock(qgis_iface)
    try:
        assert not again.method_form.common_widgets["CROP"].isChecked()
    finally:
        again.shutdown()
        again.deleteLater()


# --------------------------------------------------------------------------- runs

def test_run_adds_styled_layers_in_a_group_above_the_raster(ready, raster, qgis_iface,
                                                            tmp_path):
    from qgis.core import QgsSingleBandPseudoColorRenderer

    from seg_explainer.processing_provider.styling import colour_scale, unit_ramp_scale
    from seg_explainer.ui.result_panel import run_summary
    from seg_explainer.core.cells import hexagon_grid

    _select_method(ready, "shap")
    ready.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(8)
    ready.method_form.param_widgets["shap"]["N_SAMPLES"].setValue(120)
    expected_count, _ = ready.update_estimate()
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    assert run.task in QgsApplication.taskManager().tasks()
    panel = ready.result_panel
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    r = run.results
    assert r["N_EVALUATIONS"] == expected_count
    assert r["PREDICTION"] > 0.95  # the region is the dark patch: oil
    assert r["SUM_CONTRIBUTIONS"] == pytest.approx(r["PREDICTION"] - r["BASE_VALUE"], abs=1e-3)
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup(run.group_name)
    # Issue 14 point 5: the group says raster, class, method, date and time; each layer its
    # output, class, method and time.
    assert group is not None and run.group_name.startswith("scene - oil - shap - ")
    stamp = run.group_name.rsplit(" ", 1)[1]
    assert _group_children(group) == [f"{name} - oil - shap - {stamp}" for name in (
        "region of interest", "cells", "signed", "excitation", "inhibition")]
    names = [child.name() for child in root.children()]
    assert names.index(run.group_name) < names.index("scene")
    signed = [layer for layer in run.layers if layer.name().startswith("signed - ")][0]
    renderer = signed.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    # Issue 14 point 5: the run's colour scale, the step at or above its largest contribution
    largest = r["MAX_ABS_CONTRIBUTION"]
    assert largest == pytest.approx(unit_ramp_scale(signed))
    scale = colour_scale(largest)[0]
    assert largest <= scale < 2.5 * largest
    assert renderer.classificationMax() == pytest.approx(scale)
    assert renderer.classificationMin() == pytest.approx(-scale)
    labels = [item.label for item in renderer.shader().rasterShaderFunction().colorRampItemList()]
    assert labels[0] == f"-{scale:g} inhibition" and labels[-1] == f"+{scale:g} excitation"
    legend = renderer.shader().rasterShaderFunction().legendSettings()  # the legend's words
    assert (legend.minimumLabel(), legend.maximumLabel()) == (labels[0], labels[-1])
    assert f"colour scale +-{scale:g}" in run_summary(run)
    cells = [layer for layer in run.layers if layer.name().startswith("cells - ")][0]
    assert cells.featureCount() == hexagon_grid(64, 64, 8).n_cells
    # The window (64 x 64 px of the raster grid) is placed around the region, which was drawn
    # in EPSG:3857 and reprojected by the algorithm.
    assert signed.crs().authid() == "EPSG:32631"
    assert (signed.width(), signed.height()) == (64, 64)
    centre = utm((PATCH[2] + PATCH[3]) / 2, (PATCH[0] + PATCH[1]) / 2)
    assert signed.extent().contains(centre)
    region = [layer for layer in run.layers if layer.name().startswith("region of ")][0]
    assert ready.region_picker.drawn_radio.isChecked()  # the new outline layer did not take over
    assert region.featureCount() == 1 and region.crs().authid() == "EPSG:3857"
    assert region.providerType() == "ogr"  # written with the outputs, not a memory layer
    assert region.source().split("|")[0].endswith("_region.gpkg")
    # Summary and report
    text = ready.result_panel.label.text()
    assert "prediction" in text and f"{expected_count} model evaluations" in text
    panel = ready.result_panel
    assert panel.report_button.isEnabled() and Path(panel.last_report).is_file()
    assert panel.message_widget.findChildren(type(panel.report_button))[0].text() == \
        "Open report"
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 6 and not any(".part" in f for f in files)


def test_run_keeps_the_gui_responsive(ready):
    _select_method(ready, "rise")
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(3000)
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(16)
    gaps = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    run = ready.run()
    assert run is not None
    progress = []
    run.progressChanged.connect(progress.append)
    _wait(lambda: ready.current_run is None)
    timer.stop()
    assert run.ok, run.error
    assert len(gaps) > 10  # the run took long enough to measure
    assert max(gaps) < 500, max(gaps)
    assert len(progress) > 5 and max(progress) == pytest.approx(100)


def test_cancel_stops_the_run_and_leaves_no_files(ready, tmp_path):
    _select_method(ready, "rise")
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(500000)  # minutes if not cancelled
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(8)
    run = ready.run()
    assert run is not None
    progress = []
    run.progressChanged.connect(progress.append)
    _wait(lambda: len(progress) >= 2)
    ready.cancel()
    _wait(lambda: ready.current_run is None, timeout=20)
    assert run.cancelled and not run.ok
    assert "cancelled" in ready.result_panel.label.text()
    out = tmp_path / "out"
    assert list(out.iterdir()) == []
    assert QgsProject.instance().layerTreeRoot().findGroup(run.group_name) is None
    panel = ready.result_panel
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_selected_features_of_a_layer_as_region(ready, tmp_path):
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "regions", "memory")
    to_wgs = QgsCoordinateTransform(RASTER_CRS, QgsCoordinateReferenceSystem("EPSG:4326"),
                                    QgsProject.instance())
    features = []
    for c0, r0 in [(75, 65), (10, 10)]:
        ring = [utm(c0, r0), utm(c0 + 20, r0), utm(c0 + 20, r0 + 15), utm(c0, r0 + 15)]
        geom = QgsGeometry.fromPolygonXY([ring])
        geom.transform(to_wgs)
        feature = QgsFeature()
        feature.setGeometry(geom)
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    ready.region_picker.layer_combo.setLayer(layer)
    picker = ready.region_picker
    assert picker.drawn_radio.isChecked()  # a layer appearing does not switch the source
    picker.layer_combo.activated.emit(picker.layer_combo.currentIndex())  # the user's pick
    assert ready.region_picker.layer_radio.isChecked()
    ready.region_picker.selected_only.setChecked(True)
    assert any("selected" in p for p in ready.problems())
    layer.selectByIds([layer.getFeatures().__next__().id()])
    assert ready.problems() == []
    _select_method(ready, "occlusion")
    ready.method_form.param_widgets["occlusion"]["MAX_DEPTH"].setValue(2)
    ready.method_form.param_widgets["occlusion"]["N_BEST"].setValue(1)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert run.results["PREDICTION"] > 0.95  # the selected feature lies on the dark patch
    group = QgsProject.instance().layerTreeRoot().findGroup(run.group_name)
    assert _group_children(group)[0].startswith("region of interest - oil - occlusion - ")
    assert run.group_name.startswith("scene - oil - occlusion - ")


def test_region_outside_the_raster_is_a_readable_error(ready, qgis_iface, tmp_path):
    far = QgsGeometry.fromPointXY(QgsPointXY(1000000.0, 7000000.0))  # EPSG:3857, far north
    ready.region_picker.set_region(far, CANVAS_CRS)
    _select_method(ready, "rise")
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(10)
    run = ready.run()
    if run is not None:
        _wait(lambda: ready.current_run is None)
        assert not run.ok and not run.cancelled
    text = ready.result_panel.label.text()
    assert "outside the raster" in text and "Traceback" not in text
    errors = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("outside the raster" in e for e in errors)
    assert not any((tmp_path / "out").iterdir())


def test_run_with_crop_and_bands_records_them_in_the_outputs(ready, raster2, tmp_path):
    """CROP and BANDS from the dock reach the algorithm: the 2-band raster's band 1 is the
    scene (band 2 is bright, no oil: BANDS "2" would predict about 0), the 3 x 3 px model's
    receptive field lets a 64 px crop of the 128 px window stand for it, and the outputs'
    metadata record both."""
    import json

    from osgeo import gdal

    _fast_shap(ready)
    ready.input_box.raster_combo.setLayer(raster2)
    ready.input_box.bands_edit.setText("1")
    ready.method_form.common_widgets["CROP"].setChecked(True)
    # in a 64 px window no crop on multiples of 32 px is smaller
    ready.method_form.common_widgets["WINDOW"].setValue(128)
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert run.results["PREDICTION"] > 0.95  # band 1, the dark patch: oil
    out = tmp_path / "out"
    rasters = sorted(out.glob("*.tif"))
    assert [p.name.rsplit("_", 1)[1] for p in rasters] == \
        ["excitation.tif", "inhibition.tif", "signed.tif"]
    for path in rasters:
        ds = gdal.Open(str(path))
        assert (ds.RasterXSize, ds.RasterYSize) == (128, 128)  # outputs cover the whole window
        meta = ds.GetMetadata()
        recorded = json.loads(meta["parameters"])
        assert recorded["crop"] == "auto" and recorded["crop_multiple"] == 32
        r0, r1, c0, c1 = recorded["crop_window"]  # a real crop, edges on multiples of 32 px
        assert (r1 - r0, c1 - c0) == (64, 64)
        assert all(edge % 32 == 0 for edge in (r0, r1, c0, c1))
        row0, col0, _, _ = json.loads(meta["window"])
        region_rows = (PATCH[0] + 3 - row0, PATCH[1] - 3 - row0)
        region_cols = (PATCH[2] + 3 - col0, PATCH[3] - 3 - col0)
        assert r0 <= region_rows[0] and region_rows[1] <= r1  # the crop holds the region
        assert c0 <= region_cols[0] and region_cols[1] <= c1
        assert json.loads(meta["bands"]) == [1]
        assert meta["input_raster"] == raster2.source()


def test_toolbar_actions_open_the_dock_draw_run_and_unload(qgis_iface, qgis_new_project,
                                                           settings_group, qgis_processing):
    import seg_explainer

    canvas = qgis_iface.mapCanvas()
    plugin = seg_explainer.classFactory(qgis_iface)
    plugin.initGui()
    try:
        names = [a.objectName() for a in plugin.toolbar.actions()]
        assert names == ["SegExplainerShowDock", "SegExplainerDrawRegion", "SegExplainerRun",
                         "SegExplainerCancel"]
        assert not plugin.cancel_action.isEnabled()
        plugin.draw_action.trigger()
        assert plugin.dock is not None and not plugin.dock.isHidden()
        assert canvas.mapTool() is plugin.dock.region_picker.map_tool
        assert plugin.draw_action.isChecked()
        plugin.run_action.trigger()  # nothing to run yet: a hint, no exception
        assert "No raster layer is open" in plugin.dock.result_panel.label.text()
    finally:
        plugin.unload()
    assert canvas.mapTool() is None
    assert plugin.dock is None and plugin.toolbar is None and plugin.actions == []


# --------------------------------------------------------------------------- bad input, faults
# The dock's rows of the robustness matrix (README.md, "Bad input and faults"): the same broken
# models and injected faults as test_robustness.py (from faults.py), met through the dock and
# its background task. Every case ends with the dock's message, no file left, no Python
# exception escaping to QGIS (no traceback dialog), and the dock ready for the next run.

DOCK_BAD_MODELS = [case for case in BAD_MODELS if case[0] in (
    "not ONNX", "truncated ONNX", "custom operator", "external data outside its folder",
    "external data at an absolute path", "external data file missing", "two inputs")]


class _Gate:
    """Holds the task's thread at a chosen point until the test, on the main thread, has
    acted (pressed Cancel, looked at the files)."""

    def __init__(self):
        self.reached = threading.Event()
        self.release = threading.Event()

    def stop_here(self):  # the task's thread
        self.reached.set()
        if not self.release.wait(60):
            raise RuntimeError("the test never released the task")


class _HoldTask(QgsTask):
    """A sub-task that runs until ``release`` is set or it is cancelled; a task that depends on
    it stays queued meanwhile."""

    def __init__(self, release):
        super().__init__("hold", QgsTask.Flag.CanCancel)
        self.release = release

    def run(self):
        while not self.release.wait(0.05):
            if self.isCanceled():
                return False
        return True


@pytest.fixture()
def python_errors(monkeypatch):
    """Exceptions that escaped to Python's excepthook (QGIS shows those in a traceback
    dialog); the test asserts there are none."""
    caught = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: caught.append(info))
    return caught


def _critical(qgis_iface):
    return qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)


def _fast_shap(dock, batch=8):
    """SHAP on 64 x 64 px with 120 coalitions: 15 batches of 8 (plus the unmasked image)."""
    _select_method(dock, "shap")
    dock.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(8)
    dock.method_form.param_widgets["shap"]["N_SAMPLES"].setValue(120)
    dock.method_form.common_widgets["BATCH_SIZE"].setValue(batch)


def _assert_ready_after(dock, run, python_errors, n_layers):
    """The run left no group, layer or Python exception, and the dock takes the next run."""
    assert dock.current_run is None and not dock.is_running()
    panel = dock.result_panel
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert dock.form.isEnabled() and dock.result_panel.progress.value() == 0
    assert QgsProject.instance().layerTreeRoot().findGroup(run.group_name) is None
    assert len(QgsProject.instance().mapLayers()) == n_layers
    assert python_errors == []
    for text in (dock.result_panel.label.text(), run.error, *dock.iface.messageBar().get_messages(
            Qgis.MessageLevel.Critical)):
        assert "Traceback" not in text


def _next_run_works(dock, tmp_path):
    """Runs once more (the faults are gone): five result files, the region outline and the
    layers."""
    out = tmp_path / "next"
    dock.output_box.folder_widget.setFilePath(str(out))
    run = dock.run()
    assert run is not None, dock.result_panel.label.text()
    _wait(lambda: dock.current_run is None)
    assert run.ok, run.error
    assert len(files_in(out)) == 6 and not any(".part" in f for f in files_in(out))
    assert QgsProject.instance().layerTreeRoot().findGroup(run.group_name) is not None


@pytest.mark.parametrize("case,make,message", DOCK_BAD_MODELS,
                         ids=[c[0] for c in DOCK_BAD_MODELS])
def test_bad_model_picked_in_the_dock_shows_the_message_and_enables_no_run(
        ready, qgis_iface, tmp_path, python_errors, case, make, message):
    from seg_explainer.ui.text import html as _html

    good = ready.model_picker.info["path"]
    assert ready.result_panel.run_button.isEnabled()
    folder = tmp_path / "model"
    folder.mkdir()
    bad = str(make(folder))
    tasks = len(QgsApplication.taskManager().tasks())
    ready.model_picker.file_widget.setFilePath(bad)  # what the file dialog does
    assert ready.model_picker.info is None
    error = ready.model_picker.error
    assert error.startswith("This model cannot be used: ")
    assert re.search(message, error, re.DOTALL), error
    assert _html(error) in ready.model_picker.label.text() and _html(error) in ready.hint.text()
    assert not ready.hint.isHidden()
    assert ready.model_picker.class_combo.count() == 0
    assert not ready.result_panel.run_button.isEnabled()
    assert not ready.output_box.estimate_button.isEnabled()
    assert ready.run() is None  # the toolbar's Run: the message again, no task
    assert ready.current_run is None
    assert len(QgsApplication.taskManager().tasks()) == tasks
    assert _html(error) in ready.result_panel.label.text()
    assert any(error in text for text in _critical(qgis_iface))
    assert bad not in ready.model_picker.recent_models()
    assert python_errors == [] and "Traceback" not in ready.model_picker.label.text()
    ready.model_picker.file_widget.setFilePath(good)  # choosing a good model again makes it ready
    assert ready.model_picker.info is not None and ready.result_panel.run_button.isEnabled()


@pytest.mark.parametrize("stage", ["before start", "during model evaluations",
                                   "while writing"])
def test_cancel_from_the_dock_at_every_stage_leaves_no_files(ready, tmp_path, monkeypatch,
                                                            python_errors, stage):
    from seg_explainer.core import geoio
    from seg_explainer.core.model import SegmentationModel

    _fast_shap(ready)
    n_layers = len(QgsProject.instance().mapLayers())
    out = tmp_path / "out"
    gate = _Gate()
    loads, predictions, writes = [], [], []
    real_load = SegmentationModel.load.__func__
    real_write = geoio.write_geotiff
    stop_at_batch = 3

    def load(cls, *args, **kwargs):
        loads.append(1)
        return real_load(cls, *args, **kwargs)

    def predict(images):
        predictions.append(len(images))
        if stage == "during model evaluations" and len(predictions) == stop_at_batch:
            gate.stop_here()

    def write_geotiff(path, *args, **kwargs):
        writes.append(path)
        if stage == "while writing" and len(writes) == 2:  # EXCITATION is complete
            gate.stop_here()
        return real_write(path, *args, **kwargs)

    release_pool = threading.Event()
    with monkeypatch.context() as patch:
        patch.setattr(SegmentationModel, "load", classmethod(load))
        hook_model_calls(patch, predict)
        patch.setattr(geoio, "write_geotiff", write_geotiff)
        if stage == "before start":  # the task waits in the task manager's queue
            # Held there by a sub-task it depends on, which runs until released (blocking the
            # thread pool instead raced with QGIS's own use of the pool and was flaky).
            from seg_explainer.ui import task as task_module

            real_start = task_module.start_task
            holds = []

            def start_held(task):
                hold = _HoldTask(release_pool)
                holds.append(hold)
                task.addSubTask(hold, [], QgsTask.SubTaskDependency.ParentDependsOnSubTask)
                return real_start(task)

            patch.setattr(task_module, "start_task", start_held)
        try:
            run = ready.run()
            assert run is not None, ready.result_panel.label.text()
            if stage == "before start":
                assert run.task.status() == QgsTask.TaskStatus.Queued
            else:
                _wait(gate.reached.is_set)
            if stage == "while writing":  # the complete EXCITATION, under a temporary name
                assert [Path(f).suffix for f in files_in(out)] == [".tif"]
                assert ".part" in files_in(out)[0] and files_in(out)[0].startswith(".")
            ready.result_panel.cancel_button.click()
            gate.release.set()
            _wait(lambda: ready.current_run is None, timeout=20)
        finally:
            gate.release.set()
            release_pool.set()
        if stage == "before start":  # the task never ran, even once the pool was free
            _wait(lambda: QThreadPool.globalInstance().activeThreadCount() == 0)
            assert run.task is None
    assert run.cancelled and not run.ok
    assert ready.result_panel.label.text() == "Explanation cancelled; no files were written."
    assert files_in(out) == []
    if stage == "before start":
        assert loads == [] and predictions == [] and writes == []
    elif stage == "during model evaluations":
        # stopped before the batch after the one running when Cancel was pressed
        assert len(predictions) == stop_at_batch and writes == []
    else:
        assert len(writes) == 2 and len(predictions) > stop_at_batch
    _assert_ready_after(ready, run, python_errors, n_layers)
    _next_run_works(ready, tmp_path)


def test_output_folder_not_writable_is_a_message_in_the_dock(ready, qgis_iface, tmp_path,
                                                              python_errors):
    _fast_shap(ready)
    n_layers = len(QgsProject.instance().mapLayers())
    folder = unwritable_folder(tmp_path)
    ready.output_box.folder_widget.setFilePath(str(folder))
    run = ready.run()
    assert run is not None
    _wait(lambda: ready.current_run is None)
    assert not run.ok and not run.cancelled
    message = rf"EXCITATION: cannot write to the folder '{re.escape(str(folder))}' \(.+\)\. " \
              "Choose a folder you can write to."
    assert re.search(message, ready.result_panel.label.text()), ready.result_panel.label.text()
    assert any(re.search(message, text) for text in _critical(qgis_iface))
    assert not list(folder.glob("*scene_oil_shap_*"))  # nothing, not even temporary files
    _assert_ready_after(ready, run, python_errors, n_layers)
    # A folder that cannot even be created (its path runs through a file): the dock says so
    # before any task starts.
    (tmp_path / "a_file").write_text("x")
    ready.output_box.folder_widget.setFilePath(str(tmp_path / "a_file" / "results"))
    assert ready.run() is None and ready.current_run is None
    text = ready.result_panel.label.text()
    assert "cannot be created" in text and "choose another" in text
    assert python_errors == []
    _next_run_works(ready, tmp_path)


def test_disk_full_while_writing_is_a_message_in_the_dock(ready, qgis_iface, tmp_path,
                                                          monkeypatch, python_errors):
    _fast_shap(ready)
    n_layers = len(QgsProject.instance().mapLayers())
    with monkeypatch.context() as patch:
        writes = disk_full_after(patch, 1, ENOSPC)  # EXCITATION is written, INHIBITION fails
        run = ready.run()
        assert run is not None
        _wait(lambda: ready.current_run is None)
    assert len(writes) == 2
    assert not run.ok and not run.cancelled
    message = f"INHIBITION: {NO_SPACE}. Nothing was written."
    assert message in ready.result_panel.label.text(), ready.result_panel.label.text()
    assert any(message in text for text in _critical(qgis_iface))
    assert files_in(tmp_path / "out") == []  # the complete EXCITATION went too
    _assert_ready_after(ready, run, python_errors, n_layers)
    _next_run_works(ready, tmp_path)


@pytest.mark.parametrize("fault", ["model failing on some inputs",
                                   "model failing after 2 calls"])
def test_model_failing_mid_run_ends_the_task_with_its_message(ready, qgis_iface, tmp_path,
                                                              monkeypatch, python_errors,
                                                              fault):
    _fast_shap(ready)
    n_layers = len(QgsProject.instance().mapLayers())
    calls = []
    with monkeypatch.context() as patch:
        if fault == "model failing on some inputs":
            # The image passes (values < 100 dB); the constant baseline 1000 makes it fail.
            ready.model_picker.file_widget.setFilePath(failing_model(tmp_path / "failing.onnx"))
            assert ready.model_picker.info is not None, ready.model_picker.label.text()
            ready.method_form.common_widgets["BASELINE"].setCurrentIndex(2)
            ready.method_form.common_widgets["BASELINE_VALUE"].setValue(1000.0)
            cause = r".*indices element out of data bounds.*"
        else:
            calls = model_fails_after(patch, 2, GPU_OOM)
            cause = re.escape(GPU_OOM)
        # The model runs on 64 x 64 px windows: the message does not blame the size.
        expected = r"the model failed on an input of shape \[\d+, 1, 64, 64\] \(" + cause + \
                   r"\); the model runs on inputs of this size, so the values .* or the " \
                   r"machine .* try another baseline or a smaller batch size"
        run = ready.run()
        assert run is not None
        _wait(lambda: ready.current_run is None)
    assert not run.ok and not run.cancelled
    label = ready.result_panel.label
    assert re.search(expected, label.text(), re.DOTALL), label.text()
    assert re.search(expected, run.error, re.DOTALL)
    assert any(re.search(expected, text, re.DOTALL) for text in _critical(qgis_iface))
    if calls:
        assert len(calls) == 3
    assert files_in(tmp_path / "out") == []
    _assert_ready_after(ready, run, python_errors, n_layers)
    # the same model works on the image
    ready.method_form.common_widgets["BASELINE"].setCurrentIndex(0)
    _next_run_works(ready, tmp_path)


def test_the_automatic_window_and_cells_are_shown_before_the_run_and_used(ready):
    """Issue 14 point 2: with WINDOW and HEX_SIZE at 0 the dock shows the window and cells the
    run then uses."""
    _select_method(ready, "shap")
    ready.method_form.common_widgets["WINDOW"].setValue(0)
    ready.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(0)
    ready.method_form.param_widgets["shap"]["N_SAMPLES"].setValue(120)
    plan = ready.plan()
    assert plan is not None and plan.window_auto and plan.cell_size_auto
    ready.update_estimate()
    text = ready.output_box.estimate_label.text()
    assert f"{plan.window} x {plan.window} px window (automatic)" in text
    assert f"cells of {plan.cell_size:g} px (automatic), {plan.n_cells:,} cells" in text
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert run.results["N_EVALUATIONS"] == plan.evaluations
    signed = [layer for layer in run.layers if layer.name().startswith("signed - ")][0]
    assert (signed.width(), signed.height()) == (plan.window, plan.window)
    cells = [layer for layer in run.layers if layer.name().startswith("cells - ")][0]
    assert cells.featureCount() == plan.n_cells


def test_a_sentinel1_zip_opened_from_the_dock_is_explained_calibrated(ready, tmp_path):
    """Issue 15 point 1 in the dock: a Sentinel-1 product as downloaded (a zip of its .SAFE
    folder, which QGIS cannot add as a layer: "Cannot open GDAL dataset") opens with the
    button beside Raster layer as its manifest.safe inside the zip, is chosen, and a run on
    it reads the calibrated product (the outputs say so) on a UTM grid; a file that is no
    raster is said beside the button and nothing is added."""
    import json

    from osgeo import gdal, osr

    from seg_explainer.core.sentinel1 import is_sentinel1
    from seg_explainer.resources.sample import safe_product

    product = safe_product.write_safe(tmp_path / "s1", size=200)
    assert not QgsRasterLayer(product["zip"], "plain", "gdal").isValid()
    box = ready.input_box
    before = set(QgsProject.instance().mapLayers())
    not_raster = tmp_path / "notes.txt"
    not_raster.write_text("not a raster")
    assert box.open_file(str(not_raster)) is None
    assert "notes.txt cannot be opened as a raster" in box.open_error.text()
    assert set(QgsProject.instance().mapLayers()) == before
    layer = box.open_file(product["zip"])
    assert layer is not None and layer.isValid(), box.open_error.text()
    assert box.raster() is layer and not box.open_error.text()
    assert layer.name() == safe_product.PRODUCT.split("/")[0].removesuffix(".SAFE")
    assert layer.source().startswith("/vsizip/") and is_sentinel1(layer.source())
    # QGIS 3.40 shows a GCP-georeferenced raster with an alpha band (3.22 does not); the run
    # reads the product's one measurement, so the 1-channel model needs no Bands
    assert box.bands_edit.n_bands == 1
    assert box.bands() == ([], None)
    line = pixel = 100
    corners = safe_product._lonlat(product["scene"], [line - 10, line + 10],
                                   [pixel - 10, pixel + 10])
    (x0, y0), (x1, y1) = corners
    ready.region_picker.set_region(
        QgsGeometry.fromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"),
        QgsCoordinateReferenceSystem("EPSG:4326"))
    _select_method(ready, "rise")
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(16)
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    _wait(lambda: ready.current_run is None, timeout=120)
    assert run.ok, run.error
    signed = next((tmp_path / "out").glob("*_signed.tif"))
    ds = gdal.Open(str(signed))
    assert "UTM zone 31N" in osr.SpatialReference(ds.GetProjection()).GetName()
    record = json.loads(ds.GetMetadataItem("sentinel1"))
    assert record["unit"] in ("dB", "linear")
    assert ds.GetMetadataItem("input_raster") == layer.source()


def test_a_gcp_raster_s_alpha_band_is_not_a_band_to_feed(ready, tmp_path):
    """QGIS (3.40; not 3.22) opens a raster georeferenced only by GCPs through a warped VRT
    with an alpha band (2 bands for a 1-band file); the run reads the file's 1 band, so the
    dock counts that one and asks for no Bands with a 1-channel model, and band 2 is refused
    as not the file's."""
    from osgeo import gdal, osr

    path = tmp_path / "gcps.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 40, 40, 1, gdal.GDT_Float32)
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    ds.SetGCPs([gdal.GCP(2.7 + 0.001 * p, 53.1 - 0.001 * q, 0, p, q)
                for q in (0, 40) for p in (0, 40)], wgs.ExportToWkt())
    ds = None
    layer = ready.input_box.open_file(str(path))
    assert layer is not None and ready.input_box.bands_edit.n_bands == 1
    assert ready.input_box.bands() == ([], None)
    ready.input_box.bands_edit.setText("2")
    bands, problem = ready.input_box.bands()
    assert bands is None and "has band(s) 1 to 1" in problem
