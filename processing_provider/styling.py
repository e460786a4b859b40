"""Loading, styling and grouping of result layers (on the main thread).

One path for the toolbox and the dock: an algorithm registers each output it wants loaded with a
:class:`StyleAndGroup` post-processor (:func:`style_on_load`); QGIS's toolbox loads the outputs
and calls the post-processors, and the dock does the same through :func:`load_results`.
"""

import math
from pathlib import Path

from qgis.core import (QgsColorRampLegendNodeSettings, QgsColorRampShader,
                       QgsExpressionContextUtils,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingUtils, QgsProject,
                       QgsRasterLayer, QgsVectorLayer)

STYLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "styles"
#: Custom property set on every layer the plugin loads as a result (the dock offers none of
#: them as an input raster).
RESULT_PROPERTY = "seg_explainer/result"
# Post-processors must outlive the algorithm run that created them.
_ALIVE = []
#: The outputs of a run in their group, top first, and whether each is switched on: the region
#: outline over the cells over the signed map; excitation and inhibition are there to compare.
RESULT_ORDER = ("region", "cells", "signed", "excitation", "inhibition")
VISIBLE = frozenset({"region", "cells", "signed"})
#: The name of the region outline's layer (see :func:`result_layer_name`).
REGION_NAME = "region of interest"


#: A run whose largest |contribution| is below this (in units of the class probability) has
#: negligible contributions: it is drawn on this scale (nearly transparent) and says so.
NEGLIGIBLE = 1e-3
#: The colour scales (probability units): a run is drawn on the smallest one at or above its
#: largest |contribution|, the same for all its layers, so equal colours mean equal values
#: across layers and runs on the same step.
SCALE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def unit_ramp_scale(layer):
    """Largest absolute value of band 1 of a raster layer (1.0 when it is all zero)."""
    stats = layer.dataProvider().bandStatistics(1)
    return max(abs(stats.minimumValue), abs(stats.maximumValue)) or 1.0


def colour_scale(largest):
    """``(scale, warning)``: the :data:`SCALE_STEPS` step a run whose largest |contribution|
    is ``largest`` is drawn on, and a sentence when its contributions are negligible (else
    None).

    >>> colour_scale(0.043)
    (0.05, None)
    >>> colour_scale(6e-6)[0]
    0.001
    """
    largest = abs(float(largest)) if largest is not None and math.isfinite(largest) else 0.0
    scale = next((step for step in SCALE_STEPS if largest <= step), math.ceil(largest))
    warning = None
    if largest < NEGLIGIBLE:
        warning = (f"The contributions are negligible (largest |value| {largest:.2g}, below "
                   f"{NEGLIGIBLE:g} of the class probability): the region's score hardly "
                   "depends on the image here; the maps are drawn on the smallest scale, "
                   f"+-{scale:g}, so they stay pale.")
    return scale, warning


def _legend_label(value, scale, style):
    if value == 0:
        return "0"
    if abs(abs(value) - scale) > 1e-12 * scale:
        return ""
    word = "excitation" if (value > 0) == (style != "inhibition") else "inhibition"
    sign = "+" if style == "signed" and value > 0 else "-" if style == "signed" else ""
    return f"{sign}{scale:g} {word}"


def apply_style(layer, style, largest=None):
    """Load ``resources/styles/<style>.qml``; raster ramps (unit scale) are drawn on the run's
    :func:`colour_scale` for ``largest`` (the run's largest |contribution|; the layer's own
    largest value when not given), symmetric about 0, labelled with the scale and the words
    excitation and inhibition. The cells' colours use the same scale. The style ``"region"``
    is the region outline's (:func:`outline_style`)."""
    if style == "region":
        outline_style(layer)
        layer.triggerRepaint()
        return
    layer.loadNamedStyle(str(STYLES_DIR / f"{style}.qml"))
    if isinstance(layer, QgsRasterLayer):
        renderer = layer.renderer()
        shader = getattr(renderer, "shader", lambda: None)()
        ramp = shader.rasterShaderFunction() if shader is not None else None
        if isinstance(ramp, QgsColorRampShader):
            scale, _ = colour_scale(unit_ramp_scale(layer) if largest is None else largest)
            items = [QgsColorRampShader.ColorRampItem(
                i.value * scale, i.color, _legend_label(i.value * scale, scale, style))
                for i in ramp.colorRampItemList()]
            ramp.setColorRampItemList(items)
            ramp.setMinimumValue(items[0].value)
            ramp.setMaximumValue(items[-1].value)
            # QGIS draws an interpolated ramp's legend as a bar between two labels
            legend = QgsColorRampLegendNodeSettings(ramp.legendSettings() or
                                                    QgsColorRampLegendNodeSettings())
            legend.setMinimumLabel(items[0].label or "0")
            legend.setMaximumLabel(items[-1].label)
            ramp.setLegendSettings(legend)
            renderer.setClassificationMin(items[0].value)
            renderer.setClassificationMax(items[-1].value)
    elif isinstance(layer, QgsVectorLayer) and layer.fields().indexOf("value") >= 0:
        set_value_scale(layer, None if largest is None else colour_scale(largest)[0])
    layer.triggerRepaint()


def outline_style(layer):
    """Magenta outline (polygons) or cross (points), no fill."""
    from qgis.core import QgsFillSymbol, QgsMarkerSymbol, QgsSingleSymbolRenderer

    from .compat import GEOMETRY_POINT

    if layer.geometryType() == GEOMETRY_POINT:
        symbol = QgsMarkerSymbol.createSimple({"name": "cross2", "color": "255,0,255",
                                               "size": "4", "outline_color": "255,0,255",
                                               "outline_width": "0.6"})
    else:
        symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": "255,0,255",
                                             "outline_width": "0.6"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))


#: The cells' classes, as fractions of the run's colour scale: |value| below the first is
#: "about 0" (unfilled); each class is filled with the signed raster ramp's colour at its middle.
CELL_BOUNDS = (0.1, 0.4, 0.7)
#: The signed raster's ramp (resources/styles/signed.qml): value on the unit scale -> colour.
SIGNED_RAMP = ((-1.0, "#b2182b"), (-0.5, "#ef8a62"), (0.0, "#f7f7f7"), (0.5, "#91cf60"),
               (1.0, "#1a9850"))


def ramp_colour(fraction):
    """The signed ramp's colour at ``fraction`` (-1 to 1) of the scale, a ``QColor``."""
    from qgis.PyQt.QtGui import QColor

    f = min(1.0, max(-1.0, float(fraction)))
    for (v0, c0), (v1, c1) in zip(SIGNED_RAMP[:-1], SIGNED_RAMP[1:]):
        if f <= v1:
            t = (f - v0) / (v1 - v0)
            a, b = QColor(c0), QColor(c1)
            return QColor(*(round(x + t * (y - x)) for x, y in
                            zip(a.getRgb()[:3], b.getRgb()[:3])))
    return QColor(SIGNED_RAMP[-1][1])


def cell_classes(scale):
    """``[(lower, upper, label, fraction or None)]``: the cells' classes on a colour scale,
    inhibition first; ``fraction`` is where the class's colour sits on the signed ramp (None:
    unfilled). The outer classes reach any value beyond the scale."""
    edges = [s * scale for s in CELL_BOUNDS]
    big = 1e30

    def fmt(v):
        return f"{v:+.3g}"

    out = []
    lows = [-big, -edges[2], -edges[1]]
    highs = [-edges[2], -edges[1], -edges[0]]
    for lo, hi in zip(lows, highs):
        text = f"below {fmt(hi)}" if lo == -big else f"{fmt(lo)} to {fmt(hi)}"
        out.append((lo, hi, f"{text} inhibition",
                    -(abs(hi) + (abs(lo) if lo != -big else scale)) / 2 / scale))
    out.append((-edges[0], edges[0], f"about 0 ({fmt(-edges[0])} to {fmt(edges[0])})", None))
    for lo, hi in zip([edges[0], edges[1], edges[2]], [edges[1], edges[2], big]):
        text = f"above {fmt(lo)}" if hi == big else f"{fmt(lo)} to {fmt(hi)}"
        out.append((lo, hi, f"{text} excitation", (lo + (hi if hi != big else scale)) / 2 / scale))
    return out


def set_value_scale(layer, scale=None):
    """Colour the cells ``layer`` by its ``value`` on a colour scale: ``scale``, or the largest
    ``|value|`` of its features when None. A graduated renderer of :func:`cell_classes`, so the
    legend lists each class with its range and the words excitation and inhibition; the scale
    is also stored in the layer variable ``segx_max_abs_value``.

    Computed here, once, in the main thread: an aggregate such as ``maximum(abs("value"))`` in
    the style itself would be evaluated by the map renderer's thread while it reads the layer,
    which crashes QGIS 3.22.
    """
    from qgis.core import QgsFillSymbol, QgsGraduatedSymbolRenderer, QgsRendererRange

    largest = 0.0
    if scale is None:
        for feature in layer.getFeatures():
            try:
                v = abs(float(feature["value"]))
            except (TypeError, ValueError):          # NULL
                continue
            if math.isfinite(v):
                largest = max(largest, v)
    else:
        largest = float(scale)
    largest = largest or 1e-12
    QgsExpressionContextUtils.setLayerVariable(layer, "segx_max_abs_value", largest)
    ranges = []
    for lo, hi, label, fraction in cell_classes(largest):
        fill = ramp_colour(fraction) if fraction is not None else None
        rgba = "0,0,0,0" if fill is None else f"{fill.red()},{fill.green()},{fill.blue()},230"
        symbol = QgsFillSymbol.createSimple({
            "color": rgba, "style": "no" if fill is None else "solid",
            "outline_color": "40,40,40,120", "outline_width": "0.1"})
        ranges.append(QgsRendererRange(lo, hi, symbol, label))
    layer.setRenderer(QgsGraduatedSymbolRenderer("value", ranges))


def result_group_name(raster_name, class_name, method, when):
    """The layer-tree group of one run: raster, class, method and time.

    >>> result_group_name("scene", "oil", "shap", "2026-12-02 06:39:05")
    'scene - oil - shap - 2026-12-02 06:39:05'
    """
    return f"{raster_name} - {class_name} - {method} - {when}"


def result_layer_name(output, class_name, method, when):
    """The name of one result layer: output, class, method and time of day.

    >>> result_layer_name("signed", "oil", "shap", "2026-12-02 06:39:05")
    'signed - oil - shap - 06:39:05'
    """
    return f"{output} - {class_name} - {method} - {str(when).rsplit(' ', 1)[-1]}"


def mark_result(layer):
    """Mark ``layer`` as one of the plugin's results (:data:`RESULT_PROPERTY`)."""
    layer.setCustomProperty(RESULT_PROPERTY, True)


def is_result(layer):
    """True if ``layer`` was loaded as one of the plugin's results."""
    return bool(layer.customProperty(RESULT_PROPERTY, False))


def place_in_group(layer, group_name, above_source=None, project=None, output=None, run=None):
    """Move ``layer``'s tree node into the group ``group_name``, created on first use, and
    return the group's name.

    ``run`` (an id shared by one run's layers) keeps two runs apart whose names are the same
    (the same raster, class and method ending within one second): the later run's group is
    named ``"<name> (2)"``, and so on.

    A new group goes on top of the earlier result groups that sit directly above the input
    raster's layer (``above_source`` is its data source), or at the top of the tree when the
    raster is not in the project; every earlier result group is switched off, so the newest
    run is the one on the map. In the group, layers follow :data:`RESULT_ORDER` by their
    ``output`` name (e.g. ``"signed"``), whatever order they are loaded in, and only those of
    :data:`VISIBLE` are switched on.
    """
    root = (project or QgsProject.instance()).layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return group_name
    group, group_name = _run_group(root, group_name, run)
    if group is None:
        children = root.children()
        index = 0
        if above_source:
            for i, child in enumerate(children):
                lyr = getattr(child, "layer", lambda: None)()
                if lyr is not None and lyr.source().split("|")[0] == above_source:
                    index = i
                    break
            while index > 0 and children[index - 1].customProperty(RESULT_PROPERTY, False):
                index -= 1
        for child in children:
            if child.customProperty(RESULT_PROPERTY, False):
                child.setItemVisibilityChecked(False)
        group = root.insertGroup(index, group_name)
        group.setCustomProperty(RESULT_PROPERTY, True)
        if run is not None:
            group.setCustomProperty(RUN_PROPERTY, run)
    rank = _rank(output)
    clone = node.clone()
    clone.setCustomProperty(RANK_PROPERTY, rank)
    position = sum(1 for child in group.children()
                   if int(child.customProperty(RANK_PROPERTY, len(RESULT_ORDER))) <= rank)
    group.insertChildNode(position, clone)
    node.parent().removeChildNode(node)
    if output is not None:
        clone.setItemVisibilityChecked(output in VISIBLE)
        clone.setExpanded(False)
    return group_name


def _run_group(root, name, run):
    """``(group or None, its name)``: the group named ``name`` of this ``run``, or the first
    free ``"name (n)"`` when another run's group already has the name."""
    candidate, n = name, 1
    while True:
        group = root.findGroup(candidate)
        if group is None or run is None or group.customProperty(RUN_PROPERTY, None) == run:
            return group, candidate
        n += 1
        candidate = f"{name} ({n})"


#: Custom property of a result group: the id of the run whose layers it holds.
RUN_PROPERTY = "seg_explainer/run"


#: Custom property of a result layer's tree node: its place in :data:`RESULT_ORDER`.
RANK_PROPERTY = "seg_explainer/rank"


def _rank(output):
    return RESULT_ORDER.index(output) if output in RESULT_ORDER else len(RESULT_ORDER)


class StyleAndGroup(QgsProcessingLayerPostProcessorInterface):
    """Names a result layer, applies its style (:func:`apply_style`, ``style`` is the output's
    name) and files it under the run's group (:func:`place_in_group`)."""

    def __init__(self, style, group_name, name, above_source=None, largest=None, run=None):
        super().__init__()
        self.style, self.group_name, self.name = style, group_name, name
        self.above_source, self.largest, self.run = above_source, largest, run

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        layer.setName(self.name)
        apply_style(layer, self.style, self.largest)   # loading a style resets custom properties
        mark_result(layer)
        self.group_name = place_in_group(
            layer, self.group_name, self.above_source,
            context.project() if context is not None else None, self.style, self.run)


def style_on_load(context, destination, style, group_name, name, above_source=None,
                  largest=None, run=None):
    """Arrange for the output at ``destination`` to be styled and grouped when it is loaded
    (``largest``: the run's largest |contribution|, see :func:`apply_style`; ``run``: an id
    shared by the run's outputs, see :func:`place_in_group`)."""
    if not context.willLoadLayerOnCompletion(destination):
        return
    processor = StyleAndGroup(style, group_name, name, above_source, largest, run)
    _ALIVE.append(processor)
    del _ALIVE[:-256]
    context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)


def result_groups(context):
    """The names of the groups :func:`load_results` would put ``context``'s outputs in."""
    names = []
    for details in context.layersToLoadOnCompletion().values():
        name = getattr(details.postProcessor(), "group_name", None)
        if name and name not in names:
            names.append(name)
    return names


def load_results(context, feedback=None):
    """Load the outputs a finished run registered in ``context`` into their project, then call
    their post-processors, as QGIS's toolbox does when a run ends (``processing.gui.
    Postprocessing.handleAlgorithmResults``). Main thread. Returns ``(layers, problems)``:
    the layers added, and a sentence for each output that could not be loaded."""
    loaded, problems = [], []
    for path, details in context.layersToLoadOnCompletion().items():
        hint = getattr(details, "layerTypeHint", None)
        try:
            layer = QgsProcessingUtils.mapLayerFromString(path, context, True, hint) \
                if hint is not None else QgsProcessingUtils.mapLayerFromString(path, context)
        except Exception as exc:  # noqa: BLE001 (a file QGIS cannot read: said, not raised)
            layer, reason = None, str(exc)
        else:
            reason = "QGIS cannot read it"
        if layer is None or not layer.isValid():
            problems.append(f"The result {path} could not be loaded ({reason}).")
            continue
        owned = context.temporaryLayerStore().takeMapLayer(layer) or layer
        if isinstance(details.postProcessor(), StyleAndGroup):
            mark_result(owned)   # already when added: no one offers it as an input meanwhile
        (details.project or context.project() or QgsProject.instance()).addMapLayer(owned)
        loaded.append((owned, details))
    for layer, details in loaded:     # once every layer is in the tree, as the toolbox does
        if details.postProcessor():
            details.postProcessor().postProcessLayer(layer, context, feedback)
    return [layer for layer, _ in loaded], problems
