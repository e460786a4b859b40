"""Styling and grouping of result layers when QGIS loads them (on the main thread)."""

import math
from pathlib import Path

from qgis.core import (QgsColorRampShader, QgsExpressionContextUtils,
                       QgsProcessingLayerPostProcessorInterface, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)

STYLES_DIR = Path(__file__).resolve().parent.parent / "resources" / "styles"
#: Custom property set on every layer the plugin loads as a result (the dock offers none of
#: them as an input raster).
RESULT_PROPERTY = "seg_explainer/result"
# Post-processors must outlive the algorithm run that created them.
_ALIVE = []


def unit_ramp_scale(layer):
    """Largest absolute value of band 1 of a raster layer (1.0 when it is all zero)."""
    stats = layer.dataProvider().bandStatistics(1)
    return max(abs(stats.minimumValue), abs(stats.maximumValue)) or 1.0


def apply_style(layer, style):
    """Load ``resources/styles/<style>.qml``; raster ramps (unit scale) are rescaled to the data."""
    layer.loadNamedStyle(str(STYLES_DIR / f"{style}.qml"))
    if isinstance(layer, QgsRasterLayer):
        renderer = layer.renderer()
        shader = getattr(renderer, "shader", lambda: None)()
        ramp = shader.rasterShaderFunction() if shader is not None else None
        if isinstance(ramp, QgsColorRampShader):
            scale = unit_ramp_scale(layer)
            items = [QgsColorRampShader.ColorRampItem(i.value * scale, i.color, i.label)
                     for i in ramp.colorRampItemList()]
            ramp.setColorRampItemList(items)
            ramp.setMinimumValue(items[0].value)
            ramp.setMaximumValue(items[-1].value)
            renderer.setClassificationMin(items[0].value)
            renderer.setClassificationMax(items[-1].value)
    elif isinstance(layer, QgsVectorLayer) and layer.fields().indexOf("value") >= 0:
        set_value_scale(layer)
    layer.triggerRepaint()


def set_value_scale(layer):
    """Store the largest ``|value|`` of ``layer`` in its variable ``segx_max_abs_value``.

    The cells style scales its colours by this variable. It is computed here, once, in the
    main thread: an aggregate such as ``maximum(abs("value"))`` in the style itself would be
    evaluated by the map renderer's thread while it reads the layer, which crashes QGIS 3.22.
    """
    largest = 0.0
    for feature in layer.getFeatures():
        try:
            v = abs(float(feature["value"]))
        except (TypeError, ValueError):          # NULL
            continue
        if math.isfinite(v):
            largest = max(largest, v)
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

    def __init__(self, style, group_name, name, above_source=None):
        super().__init__()
        self.style, self.group_name, self.name = style, group_name, name
        self.above_source = above_source

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        layer.setName(self.name)
        apply_style(layer, self.style)   # loading a style resets custom properties
        mark_result(layer)
        place_in_group(layer, self.group_name, self.above_source)


def style_on_load(context, destination, style, group_name, name, above_source=None):
    """Arrange for the output at ``destination`` to be styled and grouped when it is loaded."""
    if not context.willLoadLayerOnCompletion(destination):
        return
    processor = StyleAndGroup(style, group_name, name, above_source)
    _ALIVE.append(processor)
    del _ALIVE[:-256]
    context.layerToLoadOnCompletionDetails(destination).setPostProcessor(processor)
