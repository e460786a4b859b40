"""Issue 14, point 1: what a user does in QGIS while a run is in progress crashes nothing and
loses nothing. Each test holds a real run of ``segexplainer:explain_*`` in the task's thread
(a gate in the model's ``predict``), acts on the main thread as a user would, releases the run
and checks the outcome: no Python exception reached QGIS, no partial file, a clear message."""

import threading

import pytest
from qgis.core import Qgis, QgsApplication, QgsFeature, QgsGeometry, QgsProject, QgsVectorLayer

from faults import files_in
from helpers_qgis import hook_model_calls
from test_dock import (CANVAS_CRS, RASTER_CRS, _fast_shap, _Gate, _wait,  # noqa: F401
                       dock, files, patch_polygon_3857, provider, python_errors, raster,
                       ready, settings_group, utm)


@pytest.fixture()
def held(monkeypatch):
    """``gate``: the run's third model call waits in the task's thread until released."""

    gate = _Gate()
    calls = []

    def before(images):
        calls.append(threading.get_ident())
        if len(calls) == 3:
            gate.stop_here()

    hook_model_calls(monkeypatch, before)
    yield gate
    gate.release.set()


def _start_held(dock, gate):
    _fast_shap(dock)
    run = dock.run()
    assert run is not None, dock.result_panel.label.text()
    _wait(gate.reached.is_set)
    assert dock.is_running()
    return run


def _finish(dock, gate):
    gate.release.set()
    _wait(lambda: dock.current_run is None)


def _messages(qgis_iface, level):
    return qgis_iface.messageBar().get_messages(level)


def _out(tmp_path):
    return tmp_path / "out"


def _assert_complete(tmp_path):
    """Five finished outputs and the region outline; no temporary file."""
    names = files_in(_out(tmp_path))
    assert not any(".part" in name or name.startswith(".") for name in names), names
    suffixes = sorted(name.rsplit("_", 1)[1] for name in names)
    assert suffixes == ["cells.gpkg", "excitation.tif", "inhibition.tif", "region.gpkg",
                        "report.png", "signed.tif"], names


def test_removing_the_input_raster_during_a_run(ready, raster, held, tmp_path, python_errors):
    run = _start_held(ready, held)
    QgsProject.instance().removeMapLayer(raster.id())
    QgsApplication.processEvents()
    _finish(ready, held)
    assert run.ok, run.error
    _assert_complete(tmp_path)
    group = QgsProject.instance().layerTreeRoot().findGroup(run.group_name)
    assert group is not None and len(group.children()) == 5
    assert python_errors == []
    # The dock did not switch to one of the results as its input raster or region layer.
    assert ready.input_box.raster_combo.currentLayer() is None
    assert ready.region_picker.layer_combo.count() == 0
    assert not ready.result_panel.run_button.isEnabled()


def test_renaming_the_input_raster_during_a_run(ready, raster, held, tmp_path, python_errors):
    run = _start_held(ready, held)
    raster.setName("renamed scene")
    _finish(ready, held)
    assert run.ok, run.error
    _assert_complete(tmp_path)
    root = QgsProject.instance().layerTreeRoot()
    names = [child.name() for child in root.children()]
    assert names.index(run.group_name) < names.index("renamed scene")
    assert "scene" in run.group_name  # named after the raster as it was at the start
    assert python_errors == []


@pytest.mark.parametrize("action", ["remove", "rename"])
def test_the_region_layer_changing_during_a_run(ready, held, tmp_path, python_errors, action):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32631", "slick", "memory")
    r0, r1, c0, c1 = 63, 87, 73, 107
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPolygonXY(
        [[utm(c0, r0), utm(c1, r0), utm(c1, r1), utm(c0, r1)]]))
    layer.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(layer)
    ready.region_picker.layer_combo.setLayer(layer)
    ready.region_picker.layer_radio.setChecked(True)
    run = _start_held(ready, held)
    if action == "remove":
        QgsProject.instance().removeMapLayer(layer.id())
    else:
        layer.setName("renamed slick")
    QgsApplication.processEvents()
    _finish(ready, held)
    assert run.ok, run.error
    assert run.results["PREDICTION"] > 0.95
    _assert_complete(tmp_path)
    outline = [lyr for lyr in run.layers if lyr.providerType() == "ogr"
               and lyr.source().split("|")[0].endswith("_region.gpkg")]
    assert len(outline) == 1 and outline[0].featureCount() == 1
    assert python_errors == []


def test_closing_the_project_during_a_run(ready, held, tmp_path, qgis_iface, python_errors):
    run = _start_held(ready, held)
    QgsProject.instance().clear()
    _finish(ready, held)
    assert run.ok, run.error
    _assert_complete(tmp_path)  # the results are kept on disk
    # ... and not put into the project opened since
    assert QgsProject.instance().mapLayers() == {}
    assert QgsProject.instance().layerTreeRoot().findGroup(run.group_name) is None
    warnings = _messages(qgis_iface, Qgis.MessageLevel.Warning)
    assert any("project" in text and str(_out(tmp_path)) in text for text in warnings), warnings
    assert str(_out(tmp_path)) in ready.result_panel.label.text()
    assert python_errors == []


def test_closing_the_dock_during_a_run(ready, held, tmp_path, qgis_iface, python_errors):
    run = _start_held(ready, held)
    ready.close()
    assert ready.isHidden()
    _finish(ready, held)
    assert run.ok, run.error
    _assert_complete(tmp_path)
    assert QgsProject.instance().layerTreeRoot().findGroup(run.group_name) is not None
    assert run.group_name in ready.result_panel.message_widget.text()  # the message bar still tells
    assert python_errors == []


def test_starting_a_second_run_during_a_run(ready, held, tmp_path, qgis_iface, python_errors):
    run = _start_held(ready, held)
    tasks = len(QgsApplication.taskManager().tasks())
    assert not ready.result_panel.run_button.isEnabled()
    assert ready.run() is None  # the toolbar's Run while one is running
    assert len(QgsApplication.taskManager().tasks()) == tasks
    assert any("already running" in text for text in _messages(qgis_iface, Qgis.MessageLevel.Info))
    _finish(ready, held)
    assert run.ok, run.error
    _assert_complete(tmp_path)
    assert python_errors == []


def test_unloading_the_plugin_during_a_run(qgis_iface, qgis_new_project, settings_group,
                                           files, provider, tmp_path, held, python_errors):
    """Quitting QGIS unloads the plugin: the run is cancelled, leaves no file and no layer,
    and nothing of the unloaded plugin is called when its task ends."""
    import seg_explainer
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(files["raster"], "scene", "gdal")
    QgsProject.instance().addMapLayer(layer)
    plugin = seg_explainer.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin._ensure_dock()
        dock.input_box.raster_combo.setLayer(layer)
        dock.model_picker.file_widget.setFilePath(files["model"])
        dock.region_picker.set_region(patch_polygon_3857(), CANVAS_CRS)
        dock.method_form.common_widgets["WINDOW"].setValue(64)
        dock.output_box.folder_widget.setFilePath(str(_out(tmp_path)))
        run = _start_held(dock, held)
        task = run.task
    finally:
        plugin.unload()
    assert plugin.dock is None
    held.release.set()
    _wait(lambda: task not in QgsApplication.taskManager().tasks())
    _wait(lambda: run.finished)
    assert run.cancelled and not run.ok
    assert files_in(_out(tmp_path)) == []
    assert [lyr.name() for lyr in QgsProject.instance().mapLayers().values()] == ["scene"]
    assert python_errors == []


def test_the_task_thread_reads_no_parameter(ready, monkeypatch, python_errors):
    """The rule behind the crash of issue 14 (``parameterAsOutputLayer`` in the task's thread
    on parameters naming a deleted layer): every ``parameterAs*`` call of a run happens on the
    main thread, in ``prepareAlgorithm``; the task's thread works on copies."""
    from qgis.core import QgsProcessingAlgorithm

    from seg_explainer.processing_provider.explain import ExplainAlgorithm

    main = threading.get_ident()
    calls = []
    for name in dir(QgsProcessingAlgorithm):
        if name.startswith("parameterAs"):
            real = getattr(QgsProcessingAlgorithm, name)

            def spy(self, *args, _real=real, _name=name, **kwargs):
                calls.append((_name, threading.get_ident()))
                return _real(self, *args, **kwargs)

            monkeypatch.setattr(ExplainAlgorithm, name, spy, raising=False)
    model_threads = []

    hook_model_calls(monkeypatch, lambda images: model_threads.append(threading.get_ident()))
    _fast_shap(ready)
    run = ready.run()
    assert run is not None
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert model_threads and main not in model_threads  # the work ran in the task's thread
    names = {name for name, _ in calls}
    assert {"parameterAsRasterLayer", "parameterAsOutputLayer", "parameterAsFile"} <= names
    assert [name for name, thread in calls if thread != main] == []
    assert python_errors == []


# --------------------------------------------------------------------------- point 6: messages

def test_a_warning_of_the_run_reaches_the_dock_and_the_message_bar(ready, python_errors):
    """A region crossing the raster's edge: the run works on its part inside the raster and
    says so in the dock and in the message bar, at warning level, not a green "ready"."""
    from qgis.core import QgsCoordinateTransform

    ring = [utm(-10, 60), utm(12, 60), utm(12, 80), utm(-10, 80)]
    geom = QgsGeometry.fromPolygonXY([ring])
    geom.transform(QgsCoordinateTransform(RASTER_CRS, CANVAS_CRS, QgsProject.instance()))
    ready.region_picker.set_region(geom, CANVAS_CRS)
    _fast_shap(ready)
    run = ready.run()
    assert run is not None, ready.result_panel.label.text()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert any("edge" in w for w in run.warnings), run.warnings
    assert "crosses the raster" in ready.result_panel.label.text()
    item = ready.result_panel.message_widget
    assert item.level() == Qgis.MessageLevel.Warning
    assert "with warnings" in item.title() and "crosses the raster" in item.text()
    assert python_errors == []


def test_a_cancel_from_qgis_task_manager_reads_as_a_cancel(ready, held, qgis_iface, tmp_path,
                                                           python_errors):
    run = _start_held(ready, held)
    run.task.cancel()            # the task manager's own cancel button
    _finish(ready, held)
    assert run.cancelled and not run.ok and run.error == ""
    assert ready.result_panel.label.text() == "Explanation cancelled; no files were written."
    assert _messages(qgis_iface, Qgis.MessageLevel.Critical) == []
    assert any("cancelled" in text for text in _messages(qgis_iface, Qgis.MessageLevel.Info))
    assert files_in(_out(tmp_path)) == []
    assert python_errors == []


def test_open_report_says_where_the_report_is_and_never_opens_an_older_one(
        ready, qgis_iface, monkeypatch, python_errors):
    import seg_explainer.ui.result_panel as result_panel

    opened = []
    monkeypatch.setattr(result_panel, "open_file", lambda path: opened.append(path) and False)
    _fast_shap(ready)
    first = ready.run()
    _wait(lambda: ready.current_run is None)
    assert first.ok, first.error
    report = first.results["REPORT"]
    assert ready.result_panel.report_button.isEnabled()
    # no application opens it: the message says where it is
    ready.result_panel.report_button.click()
    assert opened == [report]
    warnings = _messages(qgis_iface, Qgis.MessageLevel.Warning)
    assert any(report in text and "No application opened" in text for text in warnings)
    # The next run: the button is off while it runs, and then opens the new report.
    gate = _Gate()
    calls = []

    def before(images):
        calls.append(1)
        if len(calls) == 2:
            gate.stop_here()

    hook_model_calls(monkeypatch, before)
    ready.output_box.folder_widget.setFilePath(ready.output_box.folder_widget.filePath() + "_2")
    second = ready.run()
    try:
        _wait(gate.reached.is_set)
        panel = ready.result_panel
        assert not panel.report_button.isEnabled() and panel.last_report is None
    finally:
        gate.release.set()
    _wait(lambda: ready.current_run is None)
    assert second.ok, second.error
    ready.result_panel.report_button.click()
    assert opened[-1] == second.results["REPORT"] != report
    assert python_errors == []


def test_rise_reports_no_sum_of_contributions(ready):
    from seg_explainer.ui.result_panel import run_summary

    ready.method_form.tabs.setCurrentIndex(1)
    assert ready.method_form.current_method() == "rise"
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(40)
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(8)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert "prediction" in run_summary(run) and "sum of contributions" not in run_summary(run)


# --------------------------------------------------------------------------- point 5: reading

def test_newest_group_on_top_and_earlier_groups_switched_off(ready, raster, tmp_path):
    root = QgsProject.instance().layerTreeRoot()
    _fast_shap(ready)
    first = ready.run()
    _wait(lambda: ready.current_run is None)
    ready.method_form.tabs.setCurrentIndex(1)
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(40)
    second = ready.run()
    _wait(lambda: ready.current_run is None)
    assert first.ok and second.ok, (first.error, second.error)
    names = [child.name() for child in root.children()]
    assert names.index(second.group_name) < names.index(first.group_name) < \
        names.index("scene")
    assert root.findGroup(second.group_name).itemVisibilityChecked()
    assert not root.findGroup(first.group_name).itemVisibilityChecked()
    assert root.findLayer(raster.id()).itemVisibilityChecked()  # the input stays on


def test_negligible_contributions_say_so_and_stay_pale(ready, monkeypatch):
    """A region whose score hardly depends on the image (here: contributions scaled down to
    about 1e-6): a warning says so, and the maps are drawn on the smallest scale."""
    from seg_explainer.core import explain as explain_module
    from seg_explainer.processing_provider.styling import NEGLIGIBLE, SCALE_STEPS

    real = explain_module.explain_region

    def tiny(*args, **kwargs):
        result = real(*args, **kwargs)
        result.signed[...] *= 1e-6 / max(float(abs(result.signed).max()), 1e-30)
        return result

    monkeypatch.setattr(explain_module, "explain_region", tiny)
    ready.method_form.tabs.setCurrentIndex(1)
    ready.method_form.param_widgets["rise"]["N_MASKS"].setValue(40)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    assert run.results["MAX_ABS_CONTRIBUTION"] < NEGLIGIBLE
    assert any("negligible" in w for w in run.warnings)
    assert "negligible" in ready.result_panel.label.text()
    assert ready.result_panel.message_widget.level() == Qgis.MessageLevel.Warning
    signed = [lyr for lyr in run.layers if lyr.name().startswith("signed - ")][0]
    assert signed.renderer().classificationMax() == pytest.approx(SCALE_STEPS[0])


# --------------------------------------------------------------------------- point 7: faithfulness

def test_faithfulness_is_measured_against_a_random_ordering(ready, tmp_path):
    """With FAITHFULNESS on, the run removes and restores the window's pixels in the signed
    map's order and in a random order: on the dark patch the SHAP map is faithful (lower
    deletion, higher insertion AUC than random); the numbers reach the outputs' metadata,
    the algorithm's results and the dock's summary."""
    import json

    from osgeo import gdal

    _fast_shap(ready)
    box = ready.output_box.faithfulness_check
    assert not box.isChecked()  # off by default: it costs 4 x 21 more model evaluations
    box.setChecked(True)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    r = run.results
    assert r["DELETION_AUC"] < r["RANDOM_DELETION_AUC"]
    assert r["INSERTION_AUC"] > r["RANDOM_INSERTION_AUC"]
    text = ready.result_panel.label.text()
    assert "deletion AUC" in text and "random" in text
    meta = gdal.Open(r["SIGNED"]).GetMetadata()
    recorded = json.loads(meta["faithfulness"])
    assert recorded["deletion_auc"] == pytest.approx(r["DELETION_AUC"])
    assert recorded["random_insertion_auc"] == pytest.approx(r["RANDOM_INSERTION_AUC"])
    assert recorded["n_evaluations"] == 4 * 21
    box.setChecked(False)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok and run.results["DELETION_AUC"] != run.results["DELETION_AUC"]  # NaN: off
    assert "faithfulness" not in gdal.Open(run.results["SIGNED"]).GetMetadata()
