"""Run inside QGIS (--code) by ``scripts/screenshot.sh regions``: the sample scene, a layer of
detections (chips on every oil slick and look-alike of the sample's truth, as a detector
would give them), segexplainer:explain_regions on them from the toolbox's Python entry point, the
summary layer loaded and styled by own_share, READY."""
import os

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsProject, QgsRectangle
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface

SHOT = os.environ["SEGX_SHOT"]
MODEL = os.path.join(os.environ["SEGX_ROOT"], "resources", "sample", "oil_unet.onnx")
SAMPLE = os.path.join(SHOT, "sample")


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


def start():
    import processing

    win = iface.mainWindow()
    win.setGeometry(win.screen().geometry())
    for dw in win.findChildren(QDockWidget):
        if dw.objectName() in ("Browser", "Browser2"):
            dw.hide()
    iface.addRasterLayer(os.path.join(SAMPLE, "scene_vv_db.tif"), "scene_vv_db (VV, dB)")
    regions = detections(os.path.join(SHOT, "detections.gpkg"))
    iface.addVectorLayer(f"{regions}|layername=detections", "detections", "ogr")
    results = processing.runAndLoadResults("segexplainer:explain_regions", {
        "REGIONS": f"{regions}|layername=detections",
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


QTimer.singleShot(4000, start)
