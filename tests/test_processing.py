"""The Processing algorithms on the sample scene and model: outputs, georeferencing, metadata,
graphical models, qgis_process, and bad input."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import shapely
from osgeo import gdal, ogr

from helpers_qgis import (ROI_OIL, ROOT, project_restored, provider,  # noqa: F401 (fixtures)
                          qgis_process, wait_until)

ROI_PIXEL = "{regions}|layername=pixel"
SMALL = {"WINDOW": 128, "BATCH_SIZE": 8, "SEED": 3}


def run(alg, params, feedback=None):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    return processing.run(f"segexplainer:{alg}", params, context=QgsProcessingContext(),
                          feedback=feedback or QgsProcessingFeedback())


def recording_feedback():
    """A feedback that keeps the errors and the information reported to the user (the log a
    toolbox user reads)."""
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []
            self.infos = []

        def reportError(self, error, fatalError=False):  # noqa: N802, N803
            self.errors.append(error)

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)

    return Recording()


def _array(path, band=1):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(band).ReadAsArray(), ds.GetGeoTransform(), ds.GetProjection(), \
        ds.GetMetadata(), ds.GetRasterBand(band).GetNoDataValue()


def _region(path, name):
    """The named sample region as a shapely geometry (no OGR objects outlive this call)."""
    import shapely

    ds = ogr.Open(path)
    layer = ds.GetLayer("regions")
    layer.SetAttributeFilter(f"name = '{name}'")
    feature = layer.GetNextFeature()
    return shapely.from_wkb(bytes(feature.GetGeometryRef().ExportToWkb()))


def _outputs(tmp_path, prefix, cells=True):
    out = {"EXCITATION": str(tmp_path / f"{prefix}_exc.tif"),
           "INHIBITION": str(tmp_path / f"{prefix}_inh.tif"),
           "SIGNED": str(tmp_path / f"{prefix}_signed.tif"),
           "REPORT": str(tmp_path / f"{prefix}_report.png")}
    if cells:
        out["CELLS"] = str(tmp_path / f"{prefix}_cells.gpkg")
    return out


def test_explain_shap_outputs_are_on_the_raster_grid_and_add_up(provider, sample_data, tmp_path):
    out = _outputs(tmp_path, "shap")
    res = run("explain_shap", {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                               "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil",
                               "HEX_SIZE": 16, "N_SAMPLES": 150, **SMALL, **out})
    exc, gt, crs, meta, nodata = _array(out["EXCITATION"])
    inh, gt2, _, _, _ = _array(out["INHIBITION"])
    signed, _, _, _, _ = _array(out["SIGNED"])
    scene = gdal.Open(sample_data["scene"])
    sgt = scene.GetGeoTransform()
    assert exc.shape == (128, 128) and gt == gt2
    assert gt[1] == sgt[1] and gt[5] == sgt[5]
    for origin, step, i in ((gt[0], sgt[1], 0), (gt[3], sgt[5], 3)):
        offset = (origin - sgt[i]) / step
        assert abs(offset - round(offset)) < 1e-9  # snapped to the raster's pixel grid
    assert "32631" in crs or "UTM zone 31N" in crs
    valid = exc != nodata
    assert (exc[valid] >= 0).all() and (inh[valid] >= 0).all()
    np.testing.assert_allclose(signed[valid], exc[valid] - inh[valid], atol=1e-6)
    assert meta["method"] == "shap" and meta["class"] == "oil" and meta["seed"] == "3"
    assert len(meta["model_sha256"]) == 64 and meta["seg_explainer_version"]
    assert json.loads(meta["parameters"])["hex_size"] == 16
    assert res["PREDICTION"] > 0.5
    cells_ds = ogr.Open(out["CELLS"])  # keep the dataset alive while its layer is used
    layer = cells_ds.GetLayer(0)
    values = [f["value"] for f in layer]
    assert len(values) > 20 and all(f is not None for f in values)
    # Efficiency through the whole stack: the cells' values add up to prediction - base value.
    assert abs(sum(values) - (res["PREDICTION"] - res["BASE_VALUE"])) < 1e-4
    assert abs(res["SUM_CONTRIBUTIONS"] - sum(values)) < 1e-6
    layer.ResetReading()
    ranks = sorted(f["rank"] for f in layer)
    assert ranks == list(range(1, len(values) + 1))
    assert layer.GetMetadata()["model_sha256"] == meta["model_sha256"]
    # The strongest excitation lies in the region of interest's neighbourhood.
    layer.ResetReading()
    best = max(layer, key=lambda f: f["value"])
    best_cell = shapely.from_wkb(bytes(best.GetGeometryRef().ExportToWkb()))
    assert best_cell.distance(_region(sample_data["regions"], "oil")) < 100.0
    assert Path(out["REPORT"]).stat().st_size > 10_000


def test_explain_rise_and_occlusion(provider, sample_data, tmp_path):
    rise_out = _outputs(tmp_path, "rise", cells=False)
    res = run("explain_rise", {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                               "ROI": ROI_OIL.format(**sample_data), "CLASS": "1",
                               "N_MASKS": 60, **SMALL, **rise_out})
    assert res["N_EVALUATIONS"] >= 60
    exc, gt, _, meta, _ = _array(rise_out["EXCITATION"])
    assert meta["method"] == "rise" and exc.max() > 0
    occ_out = _outputs(tmp_path, "occ")
    res = run("explain_occlusion", {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                                    "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil",
                                    "MAX_DEPTH": 2, "N_BEST": 2, **SMALL, **occ_out})
    cells_ds = ogr.Open(occ_out["CELLS"])
    layer = cells_ds.GetLayer(0)
    depths = [f["depth"] for f in layer]
    assert depths and set(depths) <= {0, 1, 2}  # 0 = the whole window, kept when pruning says so
    assert res["N_EVALUATIONS"] >= 5  # unoccluded image, whole window, four quadrants at least


def _crop_line(feedback):
    lines = [line for line in feedback.infos if line.startswith("Receptive-field crop")]
    assert len(lines) <= 1
    return lines[0] if lines else None


def test_rise_cropped_to_the_receptive_field_equals_the_uncropped_run(provider, sample_data,
                                                                     tmp_path):
    """CROP on a 768 px window around one pixel: the sample U-Net's receptive field (~300 px)
    fits in a smaller crop, and RISE's map is the uncropped one up to float rounding."""
    params = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
              "ROI": ROI_PIXEL.format(**sample_data), "CLASS": "oil", "N_MASKS": 8,
              "WINDOW": 768, "BATCH_SIZE": 8, "SEED": 3, "CROP_MULTIPLE": 64}
    runs = {}
    for crop in (True, False):
        out = _outputs(tmp_path, f"crop_{crop}", cells=False)
        del out["REPORT"]
        feedback = recording_feedback()
        res = run("explain_rise", {**params, "CROP": crop, **out}, feedback)
        runs[crop] = (res, out, feedback)
    res, out, feedback = runs[True]
    assert feedback.errors == []
    signed, gt, _, meta, nodata = _array(out["SIGNED"])
    recorded = json.loads(meta["parameters"])
    assert recorded["crop"] == "auto" and recorded["crop_multiple"] == 64
    r0, r1, c0, c1 = recorded["crop_window"]
    assert signed.shape == (768, 768)
    assert (r1 - r0) * (c1 - c0) < 768 * 768  # a real crop, not the whole window
    for edge in (r0, r1, c0, c1):  # CROP_MULTIPLE reached the engine
        assert edge % 64 == 0 or edge == 768
    regions = ogr.Open(sample_data["regions"])  # dataset, layer and feature kept alive
    layer = regions.GetLayer("pixel")
    feature = layer.GetNextFeature()
    point = feature.GetGeometryRef()
    row, col = int((point.GetY() - gt[3]) / gt[5]), int((point.GetX() - gt[0]) / gt[1])
    assert r0 <= row < r1 and c0 <= col < c1  # the crop holds the region's pixel
    line = _crop_line(feedback)
    assert line is not None and "of the 768 x 768 px window" in line
    assert f"rows {r0} to {r1 - 1} and columns {c0} to {c1 - 1}" in line
    # The same explanation as without the crop.
    plain_res, plain_out, plain_feedback = runs[False]
    plain, plain_gt, _, plain_meta, _ = _array(plain_out["SIGNED"])
    assert _crop_line(plain_feedback) is None
    plain_recorded = json.loads(plain_meta["parameters"])
    assert plain_recorded["crop"] is None and plain_recorded["crop_multiple"] == 64
    assert "crop_window" not in plain_recorded
    assert gt == plain_gt
    valid = signed != nodata
    assert np.abs(signed[valid]).max() > 1e-4  # a map worth comparing
    np.testing.assert_allclose(signed[valid], plain[valid], rtol=0, atol=1e-5)
    for key in ("PREDICTION", "BASE_VALUE"):
        assert res[key] == pytest.approx(plain_res[key], abs=1e-5)
    assert res["N_EVALUATIONS"] > plain_res["N_EVALUATIONS"]  # the crop's search is counted


def test_crop_that_cannot_shrink_the_window_says_why_and_changes_nothing(provider, sample_data,
                                                                        tmp_path):
    """A 128 px window is smaller than the receptive field: no crop, the same outputs."""
    params = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
              "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "N_MASKS": 20, **SMALL}
    maps = {}
    for crop in (True, False):
        out = _outputs(tmp_path, f"nocrop_{crop}", cells=False)
        del out["REPORT"]
        feedback = recording_feedback()
        run("explain_rise", {**params, "CROP": crop, **out}, feedback)
        maps[crop] = _array(out["SIGNED"])
        if crop:
            line = _crop_line(feedback)
            assert line is not None and "none, the whole 128 x 128 px window" in line
            assert "no crop smaller than the image" in line
    recorded = json.loads(maps[True][3]["parameters"])
    assert recorded["crop"] == "auto" and recorded["crop_window"] is None
    assert recorded["crop_multiple"] == 32  # the default
    np.testing.assert_allclose(maps[True][0], maps[False][0], rtol=0, atol=1e-6)


def test_segment_writes_named_probabilities_and_a_paletted_class_map(provider, sample_data,
                                                                      tmp_path):
    scene = gdal.Open(sample_data["scene"])
    gt = scene.GetGeoTransform()
    # An extent of 300 x 300 pixels around the oil region.
    centre = _region(sample_data["regions"], "oil").centroid
    cx, cy = centre.x, centre.y
    half = 150 * gt[1]
    extent = f"{cx - half},{cx + half},{cy - half},{cy + half} [EPSG:32631]"
    res = run("segment", {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                          "EXTENT": extent, "TILE_SIZE": 128, "OVERLAP": 16,
                          "PROBABILITIES": str(tmp_path / "p.tif"),
                          "CLASSES": str(tmp_path / "c.tif")})
    probs = gdal.Open(res["PROBABILITIES"])
    assert probs.RasterCount == 4
    assert [probs.GetRasterBand(b).GetDescription() for b in range(1, 5)] == \
        ["sea", "oil", "lookalike", "ship"]
    p = probs.ReadAsArray()
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-4)
    classes = gdal.Open(res["CLASSES"])
    assert classes.GetRasterBand(1).GetColorTable() is not None
    c = classes.ReadAsArray()
    # Against the truth over the same pixels: the class map finds the oil.
    pgt = classes.GetGeoTransform()
    col0, row0 = round((pgt[0] - gt[0]) / gt[1]), round((pgt[3] - gt[3]) / gt[5])
    truth = gdal.Open(sample_data["truth"]).ReadAsArray(col0, row0, c.shape[1], c.shape[0])
    inter = ((c == 1) & (truth == 1)).sum()
    union = ((c == 1) | (truth == 1)).sum()
    assert union > 0 and inter / union > 0.5


def test_graphical_model_chains_segment_and_explain(provider, sample_data, tmp_path):
    import processing
    from qgis.core import (QgsProcessingContext, QgsProcessingFeedback,
                           QgsProcessingModelAlgorithm)

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(ROOT / "tests" / "data" / "segment_and_explain.model3"))
    res = processing.run(model, {
        "scene": sample_data["scene"], "model": sample_data["model"],
        "roi": ROI_OIL.format(**sample_data), "class": "oil",
        "segment:probabilities": str(tmp_path / "probs.tif"),
        "explain:excitation": str(tmp_path / "exc.tif"),
        "explain:inhibition": str(tmp_path / "inh.tif")},
        context=QgsProcessingContext(), feedback=QgsProcessingFeedback())
    assert gdal.Open(res["segment:probabilities"]).RasterCount == 4
    exc = gdal.Open(res["explain:excitation"]).ReadAsArray()
    inh = gdal.Open(res["explain:inhibition"]).ReadAsArray()
    assert exc.shape == inh.shape == (128, 128) and exc.max() > 0


def test_qgis_process_runs_explain_shap_headless(sample_data, tmp_path):
    out = _outputs(tmp_path, "cli")
    args = ["run", "segexplainer:explain_shap", "--", f"INPUT={sample_data['scene']}",
            f"MODEL={sample_data['model']}", f"ROI={ROI_OIL.format(**sample_data)}",
            "CLASS=oil", "HEX_SIZE=32", "N_SAMPLES=40", "WINDOW=128"]
    args += [f"{k}={v}" for k, v in out.items()]
    proc = qgis_process(args, tmp_path / "qp")
    assert "0...10...20" in proc.stdout  # progress
    assert "SUM_CONTRIBUTIONS" in proc.stdout
    for key in ("EXCITATION", "INHIBITION", "CELLS"):
        assert Path(out[key]).is_file()


def test_qgis_process_refuses_a_seed_beyond_the_generators_range(sample_data, tmp_path):
    """Issue 15: SEED 2^31 is refused by name through qgis_process, never silently changed."""
    out = _outputs(tmp_path / "out", "seed", cells=False)
    args = ["run", "segexplainer:explain_rise", "--", f"INPUT={sample_data['scene']}",
            f"MODEL={sample_data['model']}", f"ROI={ROI_OIL.format(**sample_data)}",
            "CLASS=oil", "N_MASKS=8", "WINDOW=64", f"SEED={2 ** 31}"]
    args += [f"{k}={v}" for k, v in out.items()]
    proc = qgis_process(args, tmp_path / "qp", check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert re.search(r"Incorrect parameter value for SEED|SEED must be", said), said[-2000:]
    assert not any(Path(path).exists() for path in out.values())


BAD_INPUT = [
    ("region outside the raster", {"ROI": "POINT_FAR"}, "outside the raster"),
    ("region larger than the window", {"WINDOW": 16}, "Increase WINDOW"),
    ("not an ONNX model", {"MODEL": "NOT_ONNX"}, "ONNX"),
    ("unknown class", {"CLASS": "whale"}, "no class 'whale'"),
    ("band count", {"INPUT": "TWO_BANDS"}, "channel"),
    ("empty region layer", {"ROI": "EMPTY"}, "no features"),
    ("raster without CRS", {"INPUT": "NO_CRS"}, "coordinate reference system"),
    # QGIS read these as band [0], which the run then called "band 0"
    ("bands as words", {"BANDS": "abc"}, r"BANDS: 'abc' cannot be read as band numbers\. "
                                         r"Give whole band numbers separated by ';' \(e\.g\. "
                                         r"1;2\)"),
    ("bands as a fraction", {"BANDS": "1.9"}, r"BANDS: '1\.9' cannot be read as band numbers"),
    # issue 15: the engine never silently explains a different place than the one drawn
    ("region in an engineering CRS", {"ROI": "ENGINEERING"},
     r"ROI: (no transformation is known|the region cannot be)"),
    ("region in metres in a layer that says degrees", {"ROI": "UTM_AS_DEGREES"},
     r"ROI: the region's coordinates \(e\.g\. [\d.e+]+, [\d.e+]+\) are not degrees, but its "
     r"layer's CRS \(EPSG:4326.*\) is in degrees: the layer's CRS is probably wrong"),
    ("region at the UTM zone's antipode", {"ROI": "ANTIPODE"},
     r"ROI: the region (cannot be placed|\(longitude -17\d)"),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, sample_data):
    folder = tmp_path_factory.mktemp("bad")
    not_onnx = folder / "model.onnx"
    not_onnx.write_text("this is not a model")
    src = gdal.Open(sample_data["scene"])
    data = src.GetRasterBand(1).ReadAsArray(0, 0, 256, 256)
    two = gdal.GetDriverByName("GTiff").Create(str(folder / "two.tif"), 256, 256, 2,
                                               gdal.GDT_Float32)
    two.SetGeoTransform(src.GetGeoTransform())
    two.SetProjection(src.GetProjection())
    for b in (1, 2):
        two.GetRasterBand(b).WriteArray(data)
    two = None
    nocrs = gdal.GetDriverByName("GTiff").Create(str(folder / "nocrs.tif"), 256, 256, 1,
                                                 gdal.GDT_Float32)
    nocrs.GetRasterBand(1).WriteArray(data)
    nocrs = None
    gt = src.GetGeoTransform()
    far = folder / "far.geojson"
    far.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Point", "coordinates": [gt[0] - 50_000, gt[3] + 50_000]}}],
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}}}))
    corner = folder / "corner.geojson"
    x, y = gt[0] + 100 * gt[1], gt[3] + 100 * gt[5]
    corner.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Point", "coordinates": [x, y]}}],
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}}}))
    antipode = folder / "antipode.geojson"          # the raster is near 2.7 E, 53 N
    antipode.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[-177.3, -53.05], [-177.2, -53.05],
                                                         [-177.2, -52.95], [-177.3, -52.95],
                                                         [-177.3, -53.05]]]}}]}))
    as_degrees = folder / "utm_as_degrees.geojson"  # UTM metres in a file that says WGS 84
    as_degrees.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + 200, y],
                                                         [x + 200, y + 200], [x, y + 200],
                                                         [x, y]]]}}]}))
    from osgeo import osr

    local = osr.SpatialReference()
    local.SetFromUserInput('LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],'
                           'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(folder / "engineering.gpkg"))
    lyr = ds.CreateLayer("site", local, ogr.wkbPolygon)
    feature = ogr.Feature(lyr.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt(
        f"POLYGON(({x} {y},{x + 200} {y},{x + 200} {y + 200},{x} {y + 200},{x} {y}))"))
    lyr.CreateFeature(feature)
    feature = lyr = ds = None
    return {"NOT_ONNX": str(not_onnx), "TWO_BANDS": str(folder / "two.tif"),
            "ENGINEERING": str(folder / "engineering.gpkg"), "ANTIPODE": str(antipode),
            "UTM_AS_DEGREES": str(as_degrees),
            "NO_CRS": str(folder / "nocrs.tif"), "POINT_FAR": str(far),
            "CORNER": str(corner),
            "EMPTY": ROI_OIL.format(**sample_data).replace("'oil'", "'nothing'")}


@pytest.mark.parametrize("case,change,message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_stops_with_a_clear_message_and_no_output(provider, sample_data, bad_inputs,
                                                            tmp_path, case, change, message):
    from qgis.core import QgsProcessingException

    params = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
              "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "HEX_SIZE": 32,
              "N_SAMPLES": 20, **SMALL, **_outputs(tmp_path, "bad")}
    if case in ("band count", "raster without CRS"):
        params["ROI"] = bad_inputs["CORNER"]
    params.update({k: bad_inputs.get(v, v) for k, v in change.items()})
    feedback = recording_feedback()
    with pytest.raises(QgsProcessingException) as raised:
        run("explain_shap", params, feedback)
    # Errors found while preparing reach the user through the log, the rest in the exception.
    assert re.search(message, " ".join([str(raised.value), *feedback.errors]))
    assert list(tmp_path.iterdir()) == []


def batch_dialog(alg, n_rows, load):
    """QGIS's batch dialog for ``segexplainer:<alg>`` with ``n_rows`` rows and "Load layers
    on completion" set to ``load``: ``(dialog, its panel, a context for typing values)``."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects
    from qgis.core import QgsApplication

    dialog = BatchAlgorithmDialog(
        QgsApplication.processingRegistry().createAlgorithmById(f"segexplainer:{alg}"))
    panel = dialog.mainWidget()
    panel.checkLoadLayersOnCompletion.setChecked(load)
    while panel.batchRowCount() < n_rows:
        panel.addRow()
    return dialog, panel, dataobjects.createContext()


def test_batch_dialog_runs_several_rows(provider, sample_data, qgis_iface, tmp_path):
    """QGIS's own batch-processing dialog, two rows (oil and sea), run as a user would."""
    dialog, panel, context = batch_dialog("explain_rise", 2, load=False)
    for row, region in enumerate(["oil", "sea"]):
        values = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                  "ROI": ROI_OIL.format(**sample_data).replace("'oil'", f"'{region}'"),
                  "CLASS": "oil", "N_MASKS": 30, "WINDOW": 96, "BATCH_SIZE": 8}
        for name, value in values.items():
            panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value,
                                                                                 context)
        for name in ("EXCITATION", "INHIBITION"):
            widget = panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column[name])
            widget.setValue(str(tmp_path / f"{region}_{name.lower()}.tif"))
    dialog.runAlgorithm()
    # QGIS 3.22 runs the rows before runAlgorithm() returns; 3.40+ runs them as background tasks,
    # with the dialog's controls blocked until the last row is done (3.44 may close and delete
    # the dialog then): wait for that, on every version.
    from qgis.PyQt import sip

    outputs = [tmp_path / f"{region}_excitation.tif" for region in ("oil", "sea")]
    wait_until(lambda: all(p.exists() for p in outputs)
               and (sip.isdeleted(dialog) or dialog.runButton().isEnabled()),
               "both batch rows finishing")
    for region in ("oil", "sea"):
        ds = gdal.Open(str(tmp_path / f"{region}_excitation.tif"))
        assert ds is not None and ds.GetMetadata()["method"] == "rise"
    oil = json.loads(gdal.Open(str(tmp_path / "oil_excitation.tif")).GetMetadata()["window"])
    sea = json.loads(gdal.Open(str(tmp_path / "sea_excitation.tif")).GetMetadata()["window"])
    assert oil != sea  # each row explained its own region
    if not sip.isdeleted(dialog):
        dialog.close()


@pytest.mark.parametrize("load", [True, False], ids=["load", "no-load"])
def test_batch_dialog_runs_explain_regions_rows(provider, sample_data, qgis_iface, tmp_path,
                                                project_restored, load):
    """QGIS's batch dialog with explain_regions: two rows (RISE, occlusion), each into its own
    output folder, each writing its complete summary, loaded and styled when "Load layers on
    completion" is on (as a user has it), and not loaded when it is off (it loaded anyway)."""
    from pytest_qgis.utils import process_events
    from qgis.core import QgsProject, QgsRuleBasedRenderer
    from qgis.PyQt import sip

    # pytest-qgis delivers deferred deletions whenever a layer is added (legendLayersAdded):
    # inside the batch dialog's result handling that deletes the dialog's feedback under it
    # (QGIS then fails calling any post-processor). QGIS itself never does so: off here.
    QgsProject.instance().legendLayersAdded.disconnect(process_events)
    try:
        dialog, panel, context = batch_dialog("explain_regions", 2, load=load)
        rows = {"rise": {"METHOD": 1, "N_MASKS": 16}, "occlusion": {"METHOD": 2, "MAX_DEPTH": 1}}
        for row, (method, extra) in enumerate(rows.items()):
            values = {"REGIONS": f"{sample_data['regions']}|layername=regions",
                      "INPUT": sample_data["scene"], "MODEL": sample_data["model"],
                      "CLASS": "oil", "WINDOW": 96, "SCHEDULER": "serial", **extra}
            for name, value in values.items():
                panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value,
                                                                                     context)
            widget = panel.tblParameters.cellWidget(row + 1,
                                                    panel.parameter_to_column["OUTPUT_FOLDER"])
            widget.setValue(str(tmp_path / method))
        dialog.runAlgorithm()
        summaries = [tmp_path / method / "regions.gpkg" for method in rows]
        wait_until(lambda: all(p.exists() for p in summaries)
                   and (sip.isdeleted(dialog) or dialog.runButton().isEnabled()),
                   "both batch rows finishing")
        for method, path in zip(rows, summaries):
            ds = ogr.Open(str(path))
            layer = ds.GetLayerByName("regions")
            assert [f.GetField("status") for f in layer] == ["done"] * 3
            assert layer.GetMetadataItem("method") == method     # each row its own method
        loaded = {lyr.source().split("|")[0]: lyr for lyr in project_restored.mapLayers().values()}
        for path in summaries:
            if load:
                assert isinstance(loaded[str(path)].renderer(), QgsRuleBasedRenderer)
            else:
                assert str(path) not in loaded
        if not sip.isdeleted(dialog):
            dialog.close()
    finally:
        QgsProject.instance().legendLayersAdded.connect(process_events)


def test_band_numbers_read_every_separator_qgis_users_type():
    from seg_explainer.processing_provider.common import band_numbers

    class Alg:                                  # a list value goes to QGIS's own reading
        def parameterAsInts(self, parameters, key, context):  # noqa: N802
            return list(parameters[key])

    for text, want in (("1;2", [1, 2]), ("1, 2", [1, 2]), (" 3 ", [3]), ("2 1", [2, 1]),
                       ("", None), ([2], [2]), ([], None)):
        assert band_numbers(Alg(), {"BANDS": text}, None) == want, text


def test_an_extent_in_an_unknown_crs_is_refused(provider, sample_data, tmp_path):
    """EXTENT '... [EPSG:999999]': PROJ said 'crs not found' and the extent was silently taken
    in the raster's CRS."""
    from qgis.core import QgsProcessingException

    feedback = recording_feedback()
    params = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
              "EXTENT": "482825,483025,5879765,5879965 [EPSG:999999]", "TILE_SIZE": 64,
              "PROBABILITIES": str(tmp_path / "p.tif")}
    with pytest.raises(QgsProcessingException) as raised:
        run("segment", params, feedback)
    assert re.search(r"EXTENT: its CRS 'EPSG:999999' is not one QGIS knows",
                     " ".join([str(raised.value), *feedback.errors]))
    assert list(tmp_path.iterdir()) == []
