"""Segmentation Explainer: why did the segmentation model call this oil, or sea?"""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Called by QGIS to load the plugin; imports the plugin class only now."""
    from .plugin import SegExplainerPlugin

    return SegExplainerPlugin(iface)
