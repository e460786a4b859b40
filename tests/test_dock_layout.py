"""Issue 14, point 4: the dock fits its default width in a 1600 x 1000 QGIS window, with no
horizontal scroll bar, every key widget inside the visible area (offscreen screenshots:
``dock_<case>.png`` in the test's folder)."""

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtWidgets import QMainWindow, QScrollArea, QTextEdit

from test_dock import dock, files, provider, raster, ready, settings_group  # noqa: F401


#: The width QGIS 3.22 gave the dock on a 1600 x 1000 screen in issue 14.
DEFAULT_WIDTH = 298


@pytest.fixture()
def window(dock):
    """A 1600 x 1000 main window with a map area and the dock on the right at the width the
    analyst of issue 14 got (QGIS shares the right dock area with its own panels)."""
    main = QMainWindow()
    main.setCentralWidget(QTextEdit())
    main.resize(1600, 1000)
    main.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    main.show()
    dock.show()
    QgsApplication.processEvents()
    main.resizeDocks([dock], [DEFAULT_WIDTH], Qt.Orientation.Horizontal)
    QgsApplication.processEvents()
    yield main
    main.removeDockWidget(dock)
    main.close()
    main.deleteLater()


def _settle():
    for _ in range(5):
        QgsApplication.processEvents()


def _check_fits(dock, tmp_path, name):
    _settle()
    dock.grab().save(str(tmp_path / f"dock_{name}.png"))
    scroll = dock.findChild(QScrollArea)
    bar = scroll.horizontalScrollBar()
    assert not bar.isVisible() and bar.maximum() == 0, (name, bar.maximum(), dock.width())
    viewport = scroll.viewport()
    right = viewport.width()
    widgets = [dock.input_box.raster_combo, dock.input_box.bands_edit,
               dock.model_picker.file_widget, dock.model_picker.recent_combo,
               dock.model_picker.class_combo, dock.region_picker.draw_button,
               dock.region_picker.layer_combo, dock.method_form.tabs,
               dock.output_box.folder_widget, dock.output_box.estimate_button,
               dock.output_box.estimate_label]
    for widget in widgets:
        if not widget.isVisible():
            continue
        left = widget.mapTo(viewport, QPoint(0, 0)).x()
        assert left >= 0 and left + widget.width() <= right, \
            (name, widget.objectName() or type(widget).__name__, left, widget.width(), right)
    panel = dock.result_panel
    for widget in (panel.run_button, panel.cancel_button, panel.report_button, panel.progress):
        left = widget.mapTo(dock, QPoint(0, 0)).x()
        assert left >= 0 and left + widget.width() <= dock.width(), type(widget).__name__


def test_the_empty_dock_fits_its_default_width(window, dock, tmp_path):
    assert dock.width() <= DEFAULT_WIDTH  # nothing in it forces the dock wider
    _check_fits(dock, tmp_path, "empty")
    assert dock.minimumSizeHint().width() <= DEFAULT_WIDTH


def test_the_ready_dock_fits_after_estimate_and_a_run(window, ready, tmp_path):
    from test_dock import _wait

    _check_fits(ready, tmp_path, "ready")
    ready.output_box.estimate_button.click()
    _wait(lambda: ready.output_box.estimate_task is None)
    _check_fits(ready, tmp_path, "estimated")
    for index in range(ready.method_form.tabs.count()):
        ready.method_form.tabs.setCurrentIndex(index)
        _check_fits(ready, tmp_path, f"tab{index}")
    ready.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(8)
    ready.method_form.param_widgets["shap"]["N_SAMPLES"].setValue(60)
    ready.method_form.tabs.setCurrentIndex(0)
    ready.method_form.common_widgets["BATCH_SIZE"].setValue(8)
    run = ready.run()
    _wait(lambda: ready.current_run is None)
    assert run.ok, run.error
    _check_fits(ready, tmp_path, "finished")
    assert ready.width() <= DEFAULT_WIDTH
