"""Run inside QGIS (--code) by scripts/screenshot.sh: sample scene, dock, one SHAP run, READY."""
import os
from qgis.core import QgsGeometry, QgsPointXY, QgsProject, QgsRectangle
from qgis.utils import iface, plugins
from qgis.PyQt.QtCore import QPoint, QTimer, Qt
from qgis.PyQt.QtWidgets import QDockWidget

SHOT = os.environ["SEGX_SHOT"]
MODEL = os.path.join(os.environ["SEGX_ROOT"], "resources", "sample", "oil_unet.onnx")
WINDOW = int(os.environ.get("SEGX_WINDOW", "192"))
HEX = int(os.environ.get("SEGX_HEX", "8"))


def start():
    win = iface.mainWindow()
    # The screen in Qt's logical pixels (Xvfb's DPI may scale 1600 x 1000 to 1534 x 959): a
    # window of 1600 logical pixels would run past the screen's right edge, cutting the dock.
    win.setGeometry(win.screen().geometry())
    for dw in win.findChildren(QDockWidget):
        if dw.objectName() in ("Browser", "Browser2"):
            dw.hide()
    layer = iface.addRasterLayer(f"{SHOT}/sample/scene_vv_db.tif", "scene_vv_db (VV, dB)")
    plugin = plugins["seg_explainer"]
    plugin.actions[0].setChecked(True)
    dock = plugin.dock
    win.resizeDocks([dock], [320], Qt.Orientation.Horizontal)
    dock.input_box.raster_combo.setLayer(layer)
    dock.model_picker.file_widget.setFilePath(MODEL)
    # A 120 m disc on the sample's oil/sea "boundary" region.
    region = QgsGeometry.fromPointXY(QgsPointXY(482775.0, 5879485.0)).buffer(120.0, 16)
    dock.region_picker.start_drawing()  # the map tool is active, as after drawing
    dock.region_picker.set_region(region, layer.crs())  # as if drawn with the map tool
    dock.method_form.tabs.setCurrentIndex(0)
    dock.method_form.param_widgets["shap"]["HEX_SIZE"].setValue(HEX)
    dock.method_form.param_widgets["shap"]["N_SAMPLES"].setValue(0)
    dock.method_form.common_widgets["WINDOW"].setValue(WINDOW)
    dock.method_form.common_widgets["BATCH_SIZE"].setValue(16)
    dock.output_box.folder_widget.setFilePath(f"{SHOT}/out")
    run = dock.run()
    run.done.connect(finished)


def finished(run):
    from seg_explainer.ui.result_panel import run_summary

    if not run.ok:
        open(f"{SHOT}/READY", "w").write("FAILED " + run.error)
        return
    signed = [layer for layer in run.layers if layer.name().startswith("signed - ")][0]
    node = QgsProject.instance().layerTreeRoot().findLayer(signed.id())
    node.setExpanded(True)          # the legend: +s excitation, 0, -s inhibition
    node.parent().setExpanded(True)
    extent = QgsRectangle(signed.extent())
    extent.scale(1.25)
    iface.mapCanvas().setExtent(extent)
    iface.mapCanvas().refresh()
    win = iface.mainWindow()
    win.setGeometry(win.screen().geometry())   # a long message must not push the dock off-screen
    QTimer.singleShot(6000, lambda: open(f"{SHOT}/READY", "w").write(
        f"{run_summary(run)} (window {win.width()} px, dock {plugins['seg_explainer'].dock.width()}"
        f" px, its content {plugins['seg_explainer'].dock.widget().width()} px, minimum "
        f"{plugins['seg_explainer'].dock.widget().minimumSizeHint().width()} px; window at "
        f"{win.mapToGlobal(QPoint(0, 0)).x()}, dock at "
        f"{plugins['seg_explainer'].dock.mapToGlobal(QPoint(0, 0)).x()}, window minimum "
        f"{win.minimumSizeHint().width()}, frame {win.frameGeometry().getRect()}, screen "
        f"{win.screen().geometry().getRect()})"))


QTimer.singleShot(4000, start)
