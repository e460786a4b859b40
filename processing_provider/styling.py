"""Styling and grouping of result layers when QGIS loads them (on the main thread)."""

import math
from pathlib import Path

from qgis.core import (QgsColorRampLegendNodeSettings, QgsColorRampShader,
                       QgsExpressionContextUtils,
                       QgsProcessingLayerPostProcessorInterface, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)

STYLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "styles"
#: Custom property set on every layer the plugin loads as a result (the dock offers none of
#: them as an input raster).
RESULT_PROPERTY = "seg_explainer/result"
# Post-processors must outlive the algorithm run that created them.
_ALIVE = []


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
    excitation and inhibition. The cells' colours use the same scale."""
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


def set_value_scale(layer, scale=None):
    """Store the colour scale of the cells ``layer`` in its variable ``segx_max_abs_value``:
    ``scale``, or the largest ``|value|`` of its features when None.

    The cells style scales its colours by this variable. It is computed here, once, in the
    main thread: an aggregate such as ``maximum(abs("value"))`` in the style itself would be
    evaluated by the map renderer's thread while it reads the layer, which crashes QGIS 3.22.
    """
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
    QgsExpressionContextUtils.setLayerVariable(layer, "segx_max_abs_value", largest or 1e-12)


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


def place_in_group(layer, group_name, above_source=None, project=None):
    """Move ``layer``'s tree node into the group ``group_name``, created on first use.

    A new group goes on top of the earlier result groups that sit directly above the input
    raster's layer (``above_source`` is its data source), or at the top of the tree when the
    raster is not in the project; every earlier result group is switched off, so the newest
    run is the one on the map.
    """
    root = (project or QgsProject.instance()).layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return
    group = root.findGroup(group_name)
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
    clone = node.clone()
    group.addChildNode(clone)
    node.parent().removeChildNode(node)


class StyleAndGroup(QgsProcessingLayerPostProcessorInterface):
    """Applies one of our QML styles and files the layer under the run's group."""

    def __init__(self, style, group_name, name, above_source=None, largest=None):
        super().__init__()
        self.style, self.group_name, self.name = style, group_name, name
        self.above_source, self.largest = above_source, largest

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        layer.setName(self.name)
        apply_style(layer, self.style, self.largest)   # loading a style resets custom properties
        mark_result(layer)
        place_in_group(layer, self.group_name, self.above_source)


def style_on_load(context, destination, style, group_name, name, above_source=None,
                  largest=None):
    """Arrange for the output at ``destination`` to be styled and grouped when it is loaded
    (``largest``: the run's largest |contribution|, see :func:`apply_style`)."""
    if not context.willLoadLayerOnCompletion(destination):
        return
    processor = StyleAndGroup(style, group_name, name, above_source, largest)
    _ALIVE.append(processor)
    del _ALIVE[:-256]
    context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
