"""One declaration per parameter (core.parameters): the engine, the Processing algorithms, the
dock and the time estimate all agree with it."""

import inspect
import os

import numpy as np
import pytest

from seg_explainer.core import parameters as P
from seg_explainer.core.explain import DEFAULTS, explain_region

ALGORITHMS = {"shap": "explain_shap", "rise": "explain_rise", "occlusion": "explain_occlusion",
              "segment": "segment"}


def test_every_declaration_is_complete_and_unique():
    names = [p.name for p in P.PARAMETERS]
    keys = [p.key for p in P.PARAMETERS if p.key]
    assert len(set(names)) == len(names) and len(set(keys)) == len(keys)
    for p in P.PARAMETERS:
        assert p.kind in (int, float, str), p.name
        assert p.label and p.help and "\n" not in p.help, p.name
        assert set(p.algorithms) <= set(ALGORITHMS) and set(p.methods) <= set(p.algorithms)
        if p.kind is str:
            assert p.default in p.choices
            assert p.key is None or len(p.choice_labels) == len(p.choices) or p.is_switch
        if p.default is not None and p.kind is not str:
            assert p.check(p.default) == p.default, p.name
        if p.minimum is not None and p.exclusive_minimum:
            with pytest.raises(ValueError, match=p.name):
                p.check(p.minimum)
        if p.maximum is not None and p.exclusive_maximum:
            with pytest.raises(ValueError, match=p.name):
                p.check(p.maximum)
        elif p.maximum is not None:
            assert p.check(p.maximum) == p.maximum
        if p.maximum is not None:
            with pytest.raises(ValueError, match=p.name):
                p.check(p.maximum + 1)


def test_core_defaults_and_signatures_come_from_the_declaration():
    from seg_explainer.core.occlusion import multiscale_occlusion
    from seg_explainer.core.rise import rise
    from seg_explainer.core.tiling import segment_raster

    for name, value in DEFAULTS.items():
        assert P.by_name(name).default == value
    assert set(DEFAULTS) == {p.name for p in P.PARAMETERS
                             if set(p.methods) & set(P.EXPLAIN_METHODS)} - {"window",
                                                                             "n_threads"}
    for function in (rise, multiscale_occlusion, segment_raster):
        for name, arg in inspect.signature(function).parameters.items():
            if arg.default is not inspect.Parameter.empty and name in DEFAULTS:
                assert arg.default == P.by_name(name).default, (function.__name__, name)
    assert P.by_name("batch_size").default is None and P.by_name("batch_size").none_as == 0


@pytest.mark.parametrize("name", [p.name for p in P.PARAMETERS
                                  if p.minimum is not None and p.name in DEFAULTS])
def test_the_engine_refuses_what_the_declaration_refuses(name):
    from test_core_explain import FakeModel, local_dark, scene, slick_region

    p = P.by_name(name)
    below = p.minimum if p.exclusive_minimum else p.minimum - 1
    method = next(m for m in P.EXPLAIN_METHODS if m in p.methods)
    with pytest.raises(ValueError, match=name):
        explain_region(FakeModel(local_dark), scene(), slick_region(), 1, method,
                       **{name: below})


def _algorithm(name):
    from seg_explainer.processing_provider.algorithms import all_algorithms

    alg = next(a for a in all_algorithms() if a.name() == ALGORITHMS[name])
    alg.initAlgorithm({})
    return alg


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_processing_definitions_follow_the_declaration(qgis_processing, algorithm):
    from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                           QgsProcessingParameterNumber)

    alg = _algorithm(algorithm)
    declared = P.for_algorithm(algorithm)
    assert declared
    own = {d.name() for d in alg.parameterDefinitions()}
    for decl in P.PARAMETERS:
        assert (decl.key in own) == (decl in declared) or decl.key is None, decl.key
    for decl in declared:
        param = alg.parameterDefinition(decl.key)
        assert param.description() == decl.label and param.help() == decl.help
        assert decl.key in alg.shortHelpString()
        if decl.is_switch:
            assert isinstance(param, QgsProcessingParameterBoolean)
            assert param.defaultValue() == (decl.default is not None)
        elif decl.kind is str:
            assert isinstance(param, QgsProcessingParameterEnum)
            assert param.options() == list(decl.choice_labels)
            assert param.defaultValue() == decl.choices.index(decl.default)
        else:
            assert isinstance(param, QgsProcessingParameterNumber)
            assert param.defaultValue() == decl.form_default
            if decl.form_minimum is not None:
                assert param.minimum() == decl.form_minimum, decl.key
            if decl.maximum is not None:
                assert param.maximum() == decl.maximum, decl.key


def test_p_keep_accepts_what_core_accepts(qgis_processing):
    alg = _algorithm("rise")
    param = alg.parameterDefinition("P_KEEP")
    assert param.minimum() == 0 and param.maximum() == 1      # core: (0, 1)
    for value, accepted in ((0.99, True), (0.3, True), (0.0, False), (1.0, False)):
        ok, message = _check_one(alg, "P_KEEP", value)
        assert ok == accepted, (value, message)
        if not accepted:      # nothing kept, or everything (every mask the whole image)
            assert message.startswith("P_KEEP:") and "(0, 1)" in message
    for value in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"p_keep must be a number in \(0, 1\)"):
            P.by_name("p_keep").check(value)
    assert P.by_name("p_keep").check(0.99) == 0.99
    with pytest.raises(ValueError, match="grid_size must be an integer >= 2"):
        P.by_name("grid_size").check(1)       # one cell: a flat map
    with pytest.raises(ValueError, match="n_masks must be an integer >= 2"):
        P.by_name("n_masks").check(1)         # one mask: score - mean score = 0, an empty map
    with pytest.raises(ValueError, match="tile_size must be an integer >= 16"):
        P.by_name("tile_size").check(1)       # a model call per pixel
    assert P.by_name("n_masks").check(2) == 2 and P.by_name("tile_size").check(16) == 16


def _check_one(alg, key, value):
    from qgis.core import QgsProcessingContext

    from seg_explainer.processing_provider.parameters import check_values

    return check_values(alg, "rise", {key: value}, QgsProcessingContext())


@pytest.fixture()
def dock(qgis_iface, qgis_new_project, monkeypatch):
    from qgis.core import QgsSettings

    import seg_explainer.ui.dock as dock_module
    import seg_explainer.ui.settings as settings_module

    group = f"seg_explainer_test_params_{os.getpid()}"
    monkeypatch.setattr(settings_module, "SETTINGS", group)
    QgsSettings().remove(group)
    widget = dock_module.SegExplainerDock(qgis_iface)
    yield widget
    widget.shutdown()
    widget.close()
    QgsSettings().remove(group)


def test_dock_widgets_follow_the_declaration(dock):
    from qgis.gui import QgsDoubleSpinBox, QgsSpinBox
    from qgis.PyQt.QtWidgets import QCheckBox, QComboBox

    form = dock.method_form
    seen = set()
    for method in P.EXPLAIN_METHODS:
        widgets = dict(form.common_widgets, **form.param_widgets[method])
        for decl in P.for_algorithm(method):
            if decl.advanced:
                assert decl.key not in widgets
                continue
            widget = widgets[decl.key]
            seen.add(decl.key)
            assert decl.key in widget.toolTip() and decl.help in widget.toolTip()
            if decl.is_switch:
                assert isinstance(widget, QCheckBox)
                assert widget.isChecked() == (decl.default is not None)
            elif decl.kind is str:
                assert isinstance(widget, QComboBox)
                assert [widget.itemText(i) for i in range(widget.count())] == \
                    list(decl.choice_labels)
                assert widget.currentIndex() == decl.choices.index(decl.default)
            else:
                whole = decl.kind is int or decl.decimals == 0
                assert isinstance(widget, QgsSpinBox if whole else QgsDoubleSpinBox)
                assert widget.value() == decl.form_default
                assert widget.clearValue() == decl.form_default
                if decl.form_minimum is not None:
                    assert widget.minimum() == decl.form_minimum, decl.key
                if decl.maximum is not None:
                    assert widget.maximum() == decl.maximum, decl.key
        # the algorithm gets exactly the declared (non-advanced) keys
        assert set(form.values(method)) == {d.key for d in P.for_algorithm(method)
                                            if not d.advanced}
    assert {name.split("/")[-1] for name, _ in form.settings_table()} == seen


def test_the_estimate_uses_the_declared_defaults():
    from seg_explainer.core.cells import auto_cell_size, hexagon_grid
    from seg_explainer.core.estimate import plan_run
    from seg_explainer.core.occlusion import evaluation_bound

    size = dict(region_pixels=900, region_extent=30, tile_size=256)
    shap = plan_run("shap", {}, **size)
    assert P.by_name("hex_size").default is None and shap.cell_size == auto_cell_size(900)
    cells = hexagon_grid(shap.window, shap.window, shap.cell_size).n_cells
    assert (shap.n_cells, shap.evaluations) == (cells, 2 * cells + 2048 + 2)
    assert plan_run("rise", {}, **size).evaluations == P.by_name("n_masks").default + 1
    occlusion = plan_run("occlusion", {}, **size)
    assert occlusion.most == evaluation_bound((occlusion.window,) * 2,
                                              P.by_name("max_depth").default)
    assert occlusion.evaluations < occlusion.most
    assert np.isfinite(plan_run("occlusion", {"max_depth": 2}, **size).evaluations)
