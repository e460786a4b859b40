"""One result path (issue 13 point 3): a toolbox run loads, names, styles and groups its results
with the same post-processors as the dock's, so issue 14 point 5 holds there too: the newest
group on top, earlier groups switched off, the run's layers in one order with excitation and
inhibition off, the region outline written with the outputs and loaded from its file."""

import re

from helpers_qgis import ROI_OIL, provider, project_restored  # noqa: F401


def _toolbox_run(sample_data, project, out, stem):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    context = QgsProcessingContext()
    context.setProject(project)
    outputs = {key: str(out / f"{stem}_{key.lower()}.{ext}") for key, ext in (
        ("EXCITATION", "tif"), ("INHIBITION", "tif"), ("SIGNED", "tif"), ("CELLS", "gpkg"),
        ("REGION", "gpkg"))}
    results = processing.runAndLoadResults(
        "segexplainer:explain_shap",
        {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
         "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "WINDOW": 96, "HEX_SIZE": 24,
         "N_SAMPLES": 40, "BATCH_SIZE": 8, **outputs},
        feedback=QgsProcessingFeedback(), context=context)
    assert results is not None and results["REGION"] == outputs["REGION"]
    signed = [layer for layer in project.mapLayers().values()
              if layer.source().split("|")[0] == outputs["SIGNED"]]
    assert len(signed) == 1
    return outputs, project.layerTreeRoot().findLayer(signed[0].id()).parent()


def test_toolbox_results_are_grouped_as_the_docks(provider, sample_data,  # noqa: F811
                                                  project_restored, tmp_path):  # noqa: F811
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    project = project_restored
    scene = QgsRasterLayer(sample_data["scene"], "scene")
    project.addMapLayer(scene)
    root = project.layerTreeRoot()
    _, first = _toolbox_run(sample_data, project, tmp_path, "first")
    first_name = first.name()
    outputs, second = _toolbox_run(sample_data, project, tmp_path, "second")
    groups = [node.name() for node in root.children() if root.isGroup(node)]
    assert len(groups) == 2 and second.name() != first_name
    # newest on top, above the input; the earlier group switched off, the input still on
    names = [node.name() for node in root.children()]
    assert names.index(second.name()) < names.index(first_name) < names.index("scene")
    assert second.itemVisibilityChecked()
    assert not root.findGroup(first_name).itemVisibilityChecked()
    assert root.findLayer(scene.id()).itemVisibilityChecked()
    # the run's layers in the dock's order, named output - class - method - time
    children = second.children()
    stamp = second.name().rsplit(" ", 1)[1]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", stamp)
    assert [child.name() for child in children] == [f"{name} - oil - shap - {stamp}" for name in (
        "region of interest", "cells", "signed", "excitation", "inhibition")]
    assert [child.itemVisibilityChecked() for child in children] == [True, True, True, False,
                                                                     False]
    # the outline is the file written with the outputs, in the region layer's CRS
    region = children[0].layer()
    assert region.providerType() == "ogr" and region.featureCount() == 1
    assert region.source().split("|")[0] == outputs["REGION"]
    roi = QgsVectorLayer(ROI_OIL.format(**sample_data), "roi", "ogr")
    assert region.crs().isValid() and region.crs() == roi.crs()
    drawn, given = next(region.getFeatures()).geometry(), next(roi.getFeatures()).geometry()
    assert drawn.area() > 0 and abs(drawn.area() - given.area()) < 1e-6 * given.area()


def test_the_region_outline_is_only_written_when_asked_for(provider, sample_data,  # noqa: F811
                                                           tmp_path):
    import processing

    results = processing.run(
        "segexplainer:explain_rise",
        {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
         "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", "WINDOW": 64, "N_MASKS": 16,
         "BATCH_SIZE": 8, "EXCITATION": str(tmp_path / "e.tif"),
         "INHIBITION": str(tmp_path / "i.tif")})
    assert "REGION" not in results or not results["REGION"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.tif", "i.tif"]
