"""The algorithms as a toolbox user runs them: QGIS's own single-algorithm dialog, and results
loaded into the project, styled from resources/styles and grouped per run."""

import json
import re
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from helpers_qgis import ROI_OIL, provider, project_restored, wait_until  # noqa: F401

STYLES = Path(__file__).resolve().parent.parent / "resources" / "styles"


def _ramp_colours(qml):
    """The colours of the colour-ramp items of a raster style, in order."""
    return re.findall(r'<item [^>]*color="(#[0-9a-fA-F]{6})"', (STYLES / qml).read_text())


def _layers_by_source(project):
    return {layer.source().split("|")[0]: layer for layer in project.mapLayers().values()}


def run_in_dialog(alg_id, values, qgis_iface, tmp_path, monkeypatch):
    """Open the toolbox's dialog for ``alg_id``, type ``values`` into its panel, click Run.

    Returns ``(ok, results, html log, what the dialog would run)`` once the run (a
    background task) has finished.
    """
    # pytest-qgis's interface answers unknown calls with a MagicMock, which the dialog's
    # parameter panel cannot take as the browser model; QGIS accepts none.
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: None, raising=False)
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from processing.tools import dataobjects
    from qgis.core import QgsApplication
    from qgis.gui import QgsProcessingAlgorithmDialogBase
    from qgis.PyQt import sip

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dialog = AlgorithmDialog(alg, parent=qgis_iface.mainWindow())
    panel = dialog.mainWidget()
    context = dataobjects.createContext()
    for name, value in values.items():
        panel.wrappers[name].setParameterValue(value, context)
    typed = dialog.createProcessingParameters()
    log = tmp_path / f"{alg_id.split(':')[1]}_log.html"
    finished = []

    def on_finished(ok, results):
        # Emitted just before the dialog closes itself (it may be deleted right after).
        dialog.saveLogToFile(str(log), QgsProcessingAlgorithmDialogBase.LogFormat.FormatHtml)
        finished.append((ok, results))

    ok_params, message = alg.checkParameterValues(typed, context)
    assert ok_params, message
    dialog.algorithmFinished.connect(on_finished)
    dialog.runButton().click()
    wait_until(lambda: finished, "the dialog's run", limit=120)
    if not sip.isdeleted(dialog):
        dialog.close()
        dialog.deleteLater()
    ok, results = finished[0]
    return ok, results, log.read_text(), typed


def assert_clean_log(html):
    # reportError() lines are red in the dialog's log (Qt writes the colour as #ff0000).
    assert not re.search(r"color:\s*(red|#ff0000)", html, re.IGNORECASE), html
    assert "Execution completed in" in html


def test_toolbox_dialog_runs_explain_occlusion(provider, sample_data, qgis_iface,
                                               project_restored, tmp_path, monkeypatch):
    """The dialog the toolbox opens: parameters typed into its panel, the Run button clicked,
    the algorithm run as a background task; valid outputs, opened in the project, no error."""
    outputs = {"EXCITATION": tmp_path / "exc.tif", "INHIBITION": tmp_path / "inh.tif",
               "CELLS": tmp_path / "cells.gpkg"}
    values = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
              "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "WINDOW": 96,
              "MAX_DEPTH": 2, "N_BEST": 2, "BATCH_SIZE": 8,
              **{key: str(path) for key, path in outputs.items()}}
    ok, results, html, typed = run_in_dialog("segexplainer:explain_occlusion", values,
                                             qgis_iface, tmp_path, monkeypatch)
    # What the dialog ran is what was typed in.
    assert typed["CLASS"] == "oil" and typed["MAX_DEPTH"] == 2 and typed["WINDOW"] == 96
    assert ok, html
    assert_clean_log(html)
    assert "Window of 96 x 96 px" in html  # our own pushInfo reached the dialog's log
    for key, path in outputs.items():
        assert Path(results[key]) == path and path.is_file()
    for key in ("EXCITATION", "INHIBITION"):
        ds = gdal.Open(str(outputs[key]))
        assert ds is not None and ds.GetDriver().ShortName == "GTiff"
        assert (ds.RasterXSize, ds.RasterYSize) == (96, 96) and ds.GetProjection()
        assert ds.GetMetadata()["method"] == "occlusion"
        assert json.loads(ds.GetMetadata()["parameters"])["max_depth"] == 2
        data = ds.GetRasterBand(1).ReadAsArray()
        assert (data[data != -9999] >= 0).all()
    assert gdal.Open(str(outputs["EXCITATION"])).ReadAsArray().max() > 0
    cells_ds = ogr.Open(str(outputs["CELLS"]))
    assert cells_ds.GetDriver().GetName() == "GPKG"
    layer = cells_ds.GetLayer("cells")
    depths = [feature["depth"] for feature in layer]
    assert depths and set(depths) <= {0, 1, 2}
    assert results["N_EVALUATIONS"] >= 5
    # "Open output file after running" is on by default: the outputs are in the project.
    loaded = _layers_by_source(project_restored)
    for path in outputs.values():
        assert str(path) in loaded and loaded[str(path)].isValid()


@pytest.mark.parametrize("alg", ["segment", "explain_shap", "explain_rise"])
def test_toolbox_dialog_runs_every_other_algorithm(alg, provider, sample_data, qgis_iface,
                                                   project_restored, tmp_path, monkeypatch):
    """The same dialog path for the other three algorithms, on the sample scene and model."""
    common = {"INPUT": sample_data["scene"], "MODEL": sample_data["model"]}
    if alg == "segment":
        outputs = {"PROBABILITIES": tmp_path / "p.tif", "CLASSES": tmp_path / "c.tif"}
        values = dict(common, TILE_SIZE=256)
    else:
        outputs = {"EXCITATION": tmp_path / "exc.tif", "INHIBITION": tmp_path / "inh.tif"}
        values = dict(common, ROI=ROI_OIL.format(**sample_data), CLASS="oil", WINDOW=96)
        values.update({"HEX_SIZE": 24, "N_SAMPLES": 40, "CELLS": str(tmp_path / "c.gpkg")}
                      if alg == "explain_shap" else {"N_MASKS": 24})
    values.update({key: str(path) for key, path in outputs.items()})
    ok, results, html, _ = run_in_dialog(f"segexplainer:{alg}", values, qgis_iface,
                                         tmp_path, monkeypatch)
    assert ok, html
    assert_clean_log(html)
    scene = gdal.Open(sample_data["scene"])
    for key, path in outputs.items():
        assert Path(results[key]) == path
        ds = gdal.Open(str(path))
        assert ds is not None and ds.GetDriver().ShortName == "GTiff" and ds.GetProjection()
        if alg == "segment":        # the whole raster, on its grid
            assert (ds.RasterXSize, ds.RasterYSize) == (scene.RasterXSize, scene.RasterYSize)
            assert ds.GetGeoTransform() == scene.GetGeoTransform()
        else:
            assert (ds.RasterXSize, ds.RasterYSize) == (96, 96)
            assert ds.GetMetadata()["method"] == alg.split("_")[1]
    if alg == "segment":            # probabilities: one band per class, summing to 1
        ds = gdal.Open(str(outputs["PROBABILITIES"]))
        probs = ds.ReadAsArray()
        valid = probs[0] != ds.GetRasterBand(1).GetNoDataValue()
        assert probs.shape[0] >= 2 and valid.mean() > 0.5
        assert abs(probs[:, valid].sum(axis=0) - 1).max() < 1e-3
    else:
        assert gdal.Open(str(outputs["EXCITATION"])).ReadAsArray().max() > 0


def test_loaded_results_are_styled_and_grouped_above_the_input(provider, sample_data,
                                                               project_restored, tmp_path):
    """Run as the toolbox does (results to load on completion): StyleAndGroup gives every
    layer its QML style and files it under one group named for the run, above the input."""
    import processing
    from qgis.core import (QgsExpressionContextUtils, QgsProcessingContext,
                           QgsProcessingFeedback, QgsRasterLayer, QgsRenderContext,
                           QgsSingleBandPseudoColorRenderer)

    from seg_explainer.processing_provider.styling import colour_scale

    project = project_restored
    scene = QgsRasterLayer(sample_data["scene"], "scene")
    assert scene.isValid()
    project.addMapLayer(scene)
    outputs = {"EXCITATION": tmp_path / "exc.tif", "INHIBITION": tmp_path / "inh.tif",
               "SIGNED": tmp_path / "signed.tif", "CELLS": tmp_path / "cells.gpkg"}
    context = QgsProcessingContext()
    context.setProject(project)
    results = processing.runAndLoadResults(
        "segexplainer:explain_shap",
        {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
         "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "WINDOW": 96, "HEX_SIZE": 24,
         "N_SAMPLES": 40, "BATCH_SIZE": 8,
         **{key: str(path) for key, path in outputs.items()}},
        feedback=QgsProcessingFeedback(), context=context)
    assert results is not None
    loaded = _layers_by_source(project)
    layers = {key: loaded[str(path)] for key, path in outputs.items()}
    # Issue 14 point 5: layer names say output, class, method and time; the group says the
    # raster, class, method, date and time.
    names = {key: layer.name() for key, layer in layers.items()}
    stamps = {name.rsplit(" - ", 1)[1] for name in names.values()}
    assert len(stamps) == 1 and re.fullmatch(r"\d\d:\d\d:\d\d", stamps.pop())
    assert {key: name.rsplit(" - ", 1)[0] for key, name in names.items()} == {
        "EXCITATION": "excitation - oil - shap", "INHIBITION": "inhibition - oil - shap",
        "SIGNED": "signed - oil - shap", "CELLS": "cells - oil - shap"}
    group = project.layerTreeRoot().findLayer(layers["SIGNED"].id()).parent()
    assert re.fullmatch(r"scene - oil - shap - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", group.name())

    # Rasters: the QML's pseudocolour ramp, its unit scale stretched to the data.
    for key, qml in (("SIGNED", "signed.qml"), ("EXCITATION", "excitation.qml"),
                     ("INHIBITION", "inhibition.qml")):
        layer = layers[key]
        renderer = layer.renderer()
        assert isinstance(renderer, QgsSingleBandPseudoColorRenderer), key
        items = renderer.shader().rasterShaderFunction().colorRampItemList()
        assert [item.color.name() for item in items] == \
            [c.lower() for c in _ramp_colours(qml)], key
        # one scale for the run: the step at or above its largest contribution
        scale = colour_scale(results["MAX_ABS_CONTRIBUTION"])[0]
        stats = layer.dataProvider().bandStatistics(1)
        own = max(abs(stats.minimumValue), abs(stats.maximumValue))
        assert own <= results["MAX_ABS_CONTRIBUTION"] + 1e-6 <= scale + 1e-6, key
        assert renderer.classificationMax() == pytest.approx(scale), key
        word = {"SIGNED": "excitation", "EXCITATION": "excitation", "INHIBITION": "inhibition"}
        assert items[-1].label.endswith(f"{scale:g} {word[key]}"), key
        assert layer.renderer().opacity() == pytest.approx(0.85), key
    signed = layers["SIGNED"].renderer()
    # Diverging and symmetric about zero: red inhibition, transparent 0, green excitation.
    assert signed.classificationMin() == pytest.approx(-signed.classificationMax())
    ramp = signed.shader().rasterShaderFunction().colorRampItemList()
    assert ramp[0].color.name() == "#b2182b" and ramp[-1].color.name() == "#1a9850"
    middle = [item for item in ramp if item.value == 0]
    assert len(middle) == 1 and middle[0].color.alpha() == 0
    assert layers["EXCITATION"].renderer().classificationMin() == 0

    # Cells: graduated on "value" over the run's colour scale, the legend in words.
    cells = layers["CELLS"]
    renderer = cells.renderer()
    assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "value"
    scale = colour_scale(results["MAX_ABS_CONTRIBUTION"])[0]
    largest = max(abs(f["value"]) for f in cells.getFeatures())
    stored = QgsExpressionContextUtils.layerScope(cells).variable("segx_max_abs_value")
    assert 0 < largest <= float(stored) == scale
    labels = [item.label() for item in renderer.legendSymbolItems()]
    assert len(labels) == 7 and all(labels)
    assert all(label.endswith("inhibition") for label in labels[:3])
    assert labels[3].startswith("about 0")
    assert all(label.endswith("excitation") for label in labels[4:])
    context = QgsRenderContext()
    renderer.startRender(context, cells.fields())
    try:
        for feature in cells.getFeatures():
            colour = renderer.symbolForFeature(feature, context).color()
            value = feature["value"]
            if value > 0.1 * scale:        # green: excitation
                assert colour.green() > colour.red() and colour.alpha() > 0, value
            elif value < -0.1 * scale:     # red: inhibition
                assert colour.red() > colour.green() and colour.alpha() > 0, value
    finally:
        renderer.stopRender(context)
    # the strongest classes take the signed raster's end colours' side of the ramp
    ranges = renderer.ranges()          # kept: each range owns its symbol
    ends = [ranges[i].symbol().color() for i in (0, -1)]
    assert ends[0].red() > 150 > ends[0].green() and ends[-1].green() > 120 > ends[-1].red()
    assert cells.featureCount() > 4

    # One group for the run, above the input raster, holding exactly the four layers.
    root = project.layerTreeRoot()
    groups = [node for node in root.children() if root.isGroup(node)]
    assert len(groups) == 1
    group = groups[0]
    assert group.name().startswith("scene - oil - shap - ")
    assert sorted(child.layerId() for child in group.children()) == \
        sorted(layer.id() for layer in layers.values())
    names = [node.name() for node in root.children()]
    assert names.index(group.name()) < names.index("scene")
    assert root.findLayer(scene.id()).parent() is root  # the input stays where it was


def test_toolbox_dialog_runs_explain_regions(provider, sample_data, qgis_iface,
                                             project_restored, tmp_path, monkeypatch):
    """explain_regions through the toolbox's dialog: every region explained, the summary
    loaded into the project, styled by own_share."""
    from qgis.core import QgsRuleBasedRenderer

    folder = tmp_path / "regions_out"
    values = {"REGIONS": f"{sample_data['regions']}|layername=regions",
              "INPUT": sample_data["scene"], "MODEL": sample_data["model"], "CLASS": "oil",
              "METHOD": 1, "N_MASKS": 16, "WINDOW": 96, "SCHEDULER": "serial",
              "OUTPUT_FOLDER": str(folder)}
    ok, results, html, _ = run_in_dialog("segexplainer:explain_regions", values, qgis_iface,
                                         tmp_path, monkeypatch)
    assert ok, html
    assert_clean_log(html)
    assert results["N_DONE"] == 3 and Path(results["OUTPUT"]) == folder / "regions.gpkg"
    ds = ogr.Open(str(folder / "regions.gpkg"))
    layer = ds.GetLayerByName("regions")
    assert [f.GetField("status") for f in layer] == ["done"] * 3
    loaded = _layers_by_source(project_restored)
    assert str(folder / "regions.gpkg") in loaded
    assert isinstance(loaded[str(folder / "regions.gpkg")].renderer(), QgsRuleBasedRenderer)
