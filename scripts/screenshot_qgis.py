"""Run inside QGIS (--code) by scripts/screenshot.sh: sample scene, dock, one SHAP run, READY.

With SEGX_SHOT_KIND=regions (``scripts/screenshot.sh regions``): a layer of detections (chips on
every oil slick and look-alike of the sample's truth, as a detector would give them),
segexplainer:explain_regions on them from the toolbox's Python entry point, the summary layer
loaded and styled by own_share, READY."""
import os

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsGeometry, QgsPointXY, QgsProject, QgsRectangle
from qgis.utils import iface, plugins
from qgis.PyQt.QtCore import QPoint, QTimer, Qt
from qgis.PyQt.QtWidgets import QDockWidget

SHOT = os.environ["SEGX_SHOT"]
MODEL = os.path.join(os.environ["SEGX_ROOT"], "resources", "sample", "oil_unet.onnx")
WINDOW = int(os.environ.get("SEGX_WINDOW", "192"))
HEX = int(os.environ.get("SEGX_HEX", "8"))
SAMPLE = os.path.join(SHOT, "sample")


def start():
    win = iface.mainWindow()
    # The screen in Qt's logical pixels (Xvfb's DPI may scale 1600 x 1000 to 1534 x 959): a
    # window of 1600 logical pixels would run past the screen's right edge, cutting the dock.
    win.setGeometry(win.screen().geometry())
    for dw in win.findChildren(QDockWidget):
        if dw.objectName() in ("Browser", "Browser2"):
            dw.hide()
    if os.environ.get("SEGX_SHOT_KIND") == "regions":
        regions(win)
        return
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


def detections(path, chip=96):
    """Detection chips on every oil slick and look-alike of the truth (its connected parts
    of at least 400 px): ``chip`` px squares centred on three of its pixels, a quarter, half
    and three quarters along it, attribute ``truth`` naming which: what a detector hands
    over."""
    from scipy import ndimage

    ds = gdal.Open(os.path.join(SAMPLE, "truth_classes.tif"))
    classes, gt = ds.ReadAsArray(), ds.GetGeoTransform()
    out = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(ds.GetProjection())
    layer = out.CreateLayer("detections", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("truth", ogr.OFTString))
    for value, name in ((1, "oil"), (2, "lookalike")):
        parts, n = ndimage.label(classes == value)
        for k in range(1, n + 1):
            rows, cols = np.nonzero(parts == k)
            if len(rows) < 400:
                continue
            along = np.argsort(rows * classes.shape[1] + cols)
            for q in (0.25, 0.5, 0.75):
                i = along[int(q * (len(along) - 1))]
                r, c = rows[i] - chip // 2, cols[i] - chip // 2
                x0, x1 = gt[0] + gt[1] * c, gt[0] + gt[1] * (c + chip)
                y0, y1 = gt[3] + gt[5] * r, gt[3] + gt[5] * (r + chip)
                feature = ogr.Feature(layer.GetLayerDefn())
                feature.SetGeometry(ogr.CreateGeometryFromWkt(
                    f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
                feature.SetField("truth", name)
                layer.CreateFeature(feature)
    out = None
    return path


def regions(win):
    """explain_regions on detection chips, the summary styled (SEGX_SHOT_KIND=regions)."""
    import processing

    iface.addRasterLayer(os.path.join(SAMPLE, "scene_vv_db.tif"), "scene_vv_db (VV, dB)")
    chips = detections(os.path.join(SHOT, "detections.gpkg"))
    iface.addVectorLayer(f"{chips}|layername=detections", "detections", "ogr")
    results = processing.runAndLoadResults("segexplainer:explain_regions", {
        "REGIONS": f"{chips}|layername=detections",
        "INPUT": os.path.join(SAMPLE, "scene_vv_db.tif"), "MODEL": MODEL, "CLASS": "oil",
        "METHOD": 0, "WINDOW": 256, "N_SAMPLES": 256, "SEED": 0,
        "OUTPUT_FOLDER": os.path.join(SHOT, "out")})
    summary = [layer for layer in QgsProject.instance().mapLayers().values()
               if layer.source().split("|")[0] == results["OUTPUT"]][0]
    shares = [f["own_share"] for f in summary.getFeatures() if f["status"] == "done"]
    node = QgsProject.instance().layerTreeRoot().findLayer(summary.id())
    node.setExpanded(True)
    extent = QgsRectangle(summary.extent())
    extent.scale(1.15)
    iface.mapCanvas().setExtent(extent)
    iface.mapCanvas().refresh()
    layers = [dw for dw in win.findChildren(QDockWidget) if dw.objectName() == "Layers"]
    win.resizeDocks(layers, [360], Qt.Orientation.Horizontal)   # the legend's labels whole
    iface.messageBar().clearWidgets()     # QGIS's own notices (no internet for its fonts)
    QTimer.singleShot(6000, lambda: open(f"{SHOT}/READY", "w").write(
        f"{results['N_DONE']} regions explained, {results['N_FAILED']} failed; own_share "
        f"{np.round(sorted(shares), 2).tolist()}"))


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
