"""The plan of a run from QGIS objects: the region's size on the raster, then
:func:`~seg_explainer.core.estimate.plan_run` (what the dock shows before a run)."""

from qgis.core import QgsCoordinateTransform, QgsCsException, QgsGeometry, QgsProject

from ..core.estimate import plan_run, region_size
from .parameters import by_key

__all__ = ["plan_for_region", "region_size_on_raster"]


def region_size_on_raster(geometry, crs, raster):
    """``(pixels, extent)`` of ``geometry`` (a QgsGeometry in ``crs``) on the raster layer's
    grid: its area in pixels and the larger side of its bounding box in pixels; None when the
    region cannot be brought to the raster's CRS (the run then says why)."""
    geom = QgsGeometry(geometry)
    if crs.isValid() and raster.crs().isValid() and crs != raster.crs():
        transform = QgsCoordinateTransform(crs, raster.crs(), QgsProject.instance())
        try:
            geom.transform(transform)
        except QgsCsException:
            return None
    dx, dy = abs(raster.rasterUnitsPerPixelX()), abs(raster.rasterUnitsPerPixelY())
    if geom.isNull() or not dx or not dy:
        return None
    extent = raster.extent()      # the run measures the region on this grid (core)
    return region_size(bytes(geom.asWkb()),
                       (extent.xMinimum(), dx, 0.0, extent.yMaximum(), 0.0, -dy))


def plan_for_region(method, values, geometry, crs, raster, model_info):
    """The :class:`~seg_explainer.core.estimate.Plan` of a run of ``method`` with the form's
    ``values`` (``{Processing key: form value}``) on a region of ``raster``; None when the
    region's size on the raster is unknown."""
    size = region_size_on_raster(geometry, crs, raster) if geometry is not None else None
    if size is None:
        return None
    params = {by_key(key).name: by_key(key).from_form(value) for key, value in values.items()
              if key in ("WINDOW", "HEX_SIZE", "N_SAMPLES", "N_MASKS", "MAX_DEPTH")}
    info = model_info or {}
    return plan_run(method, params, region_pixels=size[0], region_extent=size[1],
                    fixed_size=info.get("fixed_size"), tile_size=info.get("tile_size"),
                    context=info.get("context"))
