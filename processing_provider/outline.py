"""The region of interest's outline, written with a run's outputs (a GeoPackage, not a memory
layer), so a saved project keeps it and QGIS asks about no temporary layer on exit."""

import os

from qgis.core import (QgsCoordinateTransformContext, QgsFeature, QgsFields, QgsGeometry,
                       QgsVectorFileWriter)

from .compat import GEOMETRY_POINT

#: The layer name inside the outline's GeoPackage.
LAYER_NAME = "region_of_interest"


def region_outline(geometries):
    """The WKB of the union of ``geometries`` (QgsGeometry, one CRS), polygons as a
    MultiPolygon; None when there is none. Plain bytes: safe to hand to a task's thread."""
    geometries = [g for g in geometries if not (g.isNull() or g.isEmpty())]
    if not geometries:
        return None
    union = QgsGeometry.unaryUnion(geometries)
    if union.type() != GEOMETRY_POINT:
        union.convertToMultiType()
    return bytes(union.asWkb())


def write_outline(wkb, crs, path):
    """Write the geometry ``wkb`` (in the QgsCoordinateReferenceSystem ``crs``) as the only
    feature of the GeoPackage ``path``, through a temporary file renamed into place, so no
    half-written file is left. Any thread. Raises OSError."""
    geometry = QgsGeometry()
    geometry.fromWkb(wkb)
    folder, name = os.path.split(str(path))
    part = os.path.join(folder, f".{name}.part.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = LAYER_NAME
    fields = QgsFields()
    writer = QgsVectorFileWriter.create(part, fields, geometry.wkbType(), crs,
                                        QgsCoordinateTransformContext(), options)
    try:
        if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
            raise OSError(writer.errorMessage() or f"error {writer.hasError()}")
        feature = QgsFeature(fields)
        feature.setGeometry(geometry)
        if not writer.addFeature(feature):
            raise OSError(writer.errorMessage() or "the feature could not be written")
    except OSError:
        del writer
        if os.path.exists(part):
            os.remove(part)
        raise
    del writer                       # closes the file
    os.replace(part, str(path))
