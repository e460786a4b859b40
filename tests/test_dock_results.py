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
    # (a run ending in the same second as the first gets "<name> (2)")
    stamp = re.search(r" (\d\d:\d\d:\d\d)( \(2\))?$", second.name()).group(1)
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


def test_two_runs_with_the_same_name_get_their_own_groups(project_restored):  # noqa: F811
    """Two runs of the same raster, class and method ending within one second (as on a fast
    machine) keep apart: the later one's group is "<name> (2)"; a run's layers stay together."""
    from qgis.core import QgsVectorLayer

    from seg_explainer.processing_provider.styling import place_in_group

    project = project_restored
    layers = [QgsVectorLayer("Point?crs=EPSG:4326", f"l{i}", "memory") for i in range(4)]
    for layer in layers:
        project.addMapLayer(layer)
    name = "scene - oil - shap - 2026-12-02 10:00:00"
    got = [place_in_group(layers[0], name, project=project, output="signed", run="a"),
           place_in_group(layers[1], name, project=project, output="signed", run="b"),
           place_in_group(layers[2], name, project=project, output="cells", run="a"),
           place_in_group(layers[3], name, project=project, output="cells", run="b")]
    assert got == [name, f"{name} (2)", name, f"{name} (2)"]
    root = project.layerTreeRoot()
    for group_name, members in ((name, (0, 2)), (f"{name} (2)", (1, 3))):
        ids = {child.layerId() for child in root.findGroup(group_name).children()}
        assert ids == {layers[i].id() for i in members}
