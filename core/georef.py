"""Rasters as analysts have them: complex SAR bands, GCP- or RPC-only georeferencing, and
regions that must land where they were drawn.

* Complex bands (``CInt16``, ``CFloat32``...: SLC products) are given to the model as their
  intensity ``|z|^2``, or their amplitude ``|z|`` when the model's metadata key
  ``seg_explainer_complex`` says ``"amplitude"``; never as their real part.
* A raster georeferenced only by ground control points or RPCs (a Sentinel-1 GRD product)
  has no pixel grid on the map. :func:`gridded_source` warps it on the fly (a GDAL warped
  VRT in memory, nothing written) to a projected grid: the GCPs' CRS when projected, else
  the UTM zone of the scene's centre; the window, region and outputs are on that grid, and
  the outputs record the warp.
* Regions (:func:`points_on_raster`, :func:`unwrap_antimeridian`): points outside the raster
  are dropped with a count, points on its far edges belong to its last pixel, and a region
  drawn across the antimeridian of a geographic raster is shifted by 360 degrees onto it.
"""

import json
import uuid
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

__all__ = ["COMPLEX_KEY", "COMPLEX_TEXT", "Gridded", "complex_conversion", "gridded_source",
           "points_on_raster", "region_crs_wkt", "source_window", "transform_region",
           "unwrap_antimeridian"]

#: Model metadata key choosing what complex bands become.
COMPLEX_KEY = "seg_explainer_complex"
COMPLEX_TEXT = {"intensity": "|z|^2", "amplitude": "|z|", "dB": "10 log10 |z|^2"}


def complex_conversion(model):
    """``(conversion, why)``: what the model takes for a complex band, and what decided it.

    The model's metadata key :data:`COMPLEX_KEY` (``intensity``, ``amplitude`` or ``dB``)
    decides; without it, a model whose input is backscatter in dB
    (:func:`~.sentinel1.input_unit`) gets the intensity in dB, any other the intensity. A value
    of the key outside those three is an :class:`~.errors.InputError` naming it.
    """
    from .sentinel1 import input_unit

    metadata = getattr(model, "metadata", None)
    raw = getattr(metadata, "raw", None) or {}
    if COMPLEX_KEY in raw:
        value = str(raw[COMPLEX_KEY]).strip().lower()
        chosen = {"intensity": "intensity", "amplitude": "amplitude", "db": "dB"}.get(value)
        if chosen is None:
            raise InputError(f"MODEL: its metadata key {COMPLEX_KEY} is {raw[COMPLEX_KEY]!r}; it "
                             "must be 'intensity', 'amplitude' or 'dB'. Fix the model's "
                             "metadata.")
        return chosen, f"as its metadata says ({COMPLEX_KEY})"
    unit, why = input_unit(model)
    if unit == "dB":
        return "dB", f"as its input is in dB ({why})"
    return "intensity", "by default"


# --------------------------------------------------------------------------- GCP / RPC rasters


@dataclass(frozen=True)
class Gridded:
    """A raster on a pixel grid of the map: the file itself, or a warped VRT of it.

    Attributes
    ----------
    path : str
        What to read: the raster, or a ``/vsimem/`` warped VRT (:meth:`close` removes it).
    warped : bool
    source_crs_wkt : str
        The CRS regions are given in: the raster's, or its GCPs' (as QGIS shows the layer).
    grid_crs_wkt : str
        The CRS of the grid read and written.
    record : dict
        Metadata the outputs record (``warp``), empty when not warped.
    warnings : tuple of str
    """

    path: str
    warped: bool = False
    source_crs_wkt: str = ""
    grid_crs_wkt: str = ""
    record: dict = field(default_factory=dict)
    warnings: tuple = ()
    #: What the warp read when not the raster itself: a ``/vsimem/`` VRT of it whose GCPs'
    #: longitudes are unwrapped across the antimeridian (:func:`gridded_source`).
    warp_source: str = ""

    def to_grid(self, wkb):
        """A region (WKB) from :attr:`source_crs_wkt` to the grid's CRS (checked both ways)."""
        if not self.warped or self.source_crs_wkt == self.grid_crs_wkt:
            return wkb
        return transform_region(wkb, self.source_crs_wkt, self.grid_crs_wkt)

    def close(self):
        if self.warped:
            from osgeo import gdal

            gdal.Unlink(self.path)
            if self.warp_source:
                gdal.Unlink(self.warp_source)


def _srs(wkt):
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _utm_wkt(lon, lat):
    from osgeo import osr

    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    srs = osr.SpatialReference()
    srs.ImportFromEPSG((32600 if lat >= 0 else 32700) + zone)
    return srs.ExportToWkt()


def gridded_source(source, onto=None):
    """The raster ``source`` on a map grid: itself when it has a geotransform, else warped.

    A raster georeferenced only by GCPs (Sentinel-1 GRD) or RPCs is warped on the fly with
    ``gdal.Warp`` into a VRT in memory: to the GCPs' CRS when it is projected, else to the
    UTM zone of the scene's centre, bilinear on the raster's own pixels (however the grid is
    turned against them), float32 (complex bands stay complex), nodata NaN outside the
    scene. Nothing is written to disk.

    ``onto``, a warped :class:`Gridded`, gives the grid instead of GDAL's suggestion for
    ``source``: its CRS, geotransform and size, so that a part of a raster (a Sentinel-1
    product's calibrated window, its GCPs shifted) lies on the whole raster's grid, pixel for
    pixel, nodata beyond the part.

    Raises :class:`~.errors.InputError` with the ``gdalwarp`` command to run when the warp
    is impossible (GCPs without a CRS, too few GCPs).
    """
    from osgeo import gdal

    gdal.UseExceptions()
    try:
        ds = gdal.Open(str(source))
    except RuntimeError as exc:
        raise InputError(f"GDAL cannot open the raster {source!s}: {exc}") from None
    src_wkt = _drawn_crs(ds)
    if ds.GetGeoTransform(can_return_null=True) is not None:
        return Gridded(path=str(source), source_crs_wkt=src_wkt, grid_crs_wkt=src_wkt)
    gcps, rpc = ds.GetGCPs() or (), ds.GetMetadata("RPC") or {}
    warp_source = ""
    if not gcps and not rpc:
        return Gridded(path=str(source))
    how = f"{len(gcps)} ground control points" if gcps else "RPCs"
    fix = ("Warp it to a projected grid first: gdalwarp -t_srs EPSG:<UTM zone> -r bilinear "
           "-dstnodata nan in.tif out.tif (or Raster > Projections > Warp), and use out.tif.")
    if gcps:
        if not src_wkt:
            raise InputError(f"INPUT: the raster is georeferenced by {how} without a CRS, so it "
                             f"cannot be placed on the map. {fix}")
        if len(gcps) < 3:
            raise InputError(f"INPUT: the raster has only {len(gcps)} ground control point(s); "
                             f"at least 3 are needed to place it on the map. {fix}")
        lon, lat = np.mean([[g.GCPX, g.GCPY] for g in gcps], axis=0)
        unwrapped = _unwrapped_gcps(gcps, src_wkt)
        if unwrapped is not None:       # across the antimeridian: warp a copy, lon 179..181
            lon = float(np.mean([g.GCPX for g in unwrapped]))
            warp_source = f"/vsimem/segx-gcps-{uuid.uuid4().hex}.vrt"
            wrapped = _srs(src_wkt)
            wrapped.ImportFromProj4(f"{wrapped.ExportToProj4()} +lon_wrap=180")
            gdal.Translate(warp_source, ds, format="VRT", GCPs=unwrapped,
                           outputSRS=wrapped.ExportToWkt())
            ds = gdal.Open(warp_source)
    else:
        lon = float(rpc.get("LONG_OFF", 0.0))
        lat = float(rpc.get("LAT_OFF", 0.0))
    src = _srs(src_wkt)
    if src.IsProjected():
        dst_wkt = src_wkt
    elif src.IsGeographic():
        dst_wkt = _utm_wkt(float(lon), float(lat))
    else:
        raise InputError(f"INPUT: the GCPs' CRS is neither geographic nor projected. {fix}")
    complex_ = any(gdal.DataTypeIsComplex(ds.GetRasterBand(i + 1).DataType)
                   for i in range(ds.RasterCount))
    grid = {}
    if onto is not None:
        target = gdal.Open(onto.path)
        (x0, dx, _, y0, _, dy), w, h = (target.GetGeoTransform(), target.RasterXSize,
                                        target.RasterYSize)
        dst_wkt, target = onto.grid_crs_wkt, None
        grid = {"outputBounds": (x0, y0 + h * dy, x0 + w * dx, y0), "xRes": dx, "yRes": -dy}
    path = f"/vsimem/segx-warp-{uuid.uuid4().hex}.vrt"
    try:
        # XSCALE/YSCALE 1: the bilinear kernel of the raster's own pixels. GDAL's default
        # widens it by each block's ratio of raster to grid extent, which a grid turned
        # against the raster (a SAR track) inflates: the image was blurred, block by block
        gdal.Warp(path, ds, format="VRT", dstSRS=dst_wkt, resampleAlg="bilinear",
                  outputType=gdal.GDT_CFloat32 if complex_ else gdal.GDT_Float32,
                  dstNodata=float("nan"), rpc=not gcps, warpOptions=["XSCALE=1", "YSCALE=1"],
                  srcNodata=ds.GetRasterBand(1).GetNoDataValue(), **grid)
        warped = gdal.Open(path)
        gt, size = warped.GetGeoTransform(), (warped.RasterYSize, warped.RasterXSize)
    except RuntimeError as exc:
        for made in (path, warp_source):
            if made and gdal.VSIStatL(made) is not None:   # the warp may fail before writing
                gdal.Unlink(made)
        raise InputError(f"INPUT: the raster is georeferenced by {how} only and GDAL cannot "
                         f"warp it ({exc}). {fix}") from None
    name = _srs(dst_wkt).GetName()
    record = {"warp": json.dumps({"from": how, "to_crs": name, "resampling": "bilinear",
                                  "pixel_size": [gt[1], -gt[5]], "size": list(size)})}
    warning = (f"The raster is georeferenced by {how} only; it is read on a grid warped on "
               f"the fly to {name} ({gt[1]:.3g} x {-gt[5]:.3g} map units per pixel, bilinear). "
               "The outputs are on that grid and record the warp.")
    return Gridded(path=path, warped=True, source_crs_wkt=src_wkt, grid_crs_wkt=dst_wkt,
                   record=record, warnings=(warning,), warp_source=warp_source)


def _unwrapped_gcps(gcps, crs_wkt):
    """The GCPs with longitudes below 0 moved by +360 when they are geographic and span more
    than 180 degrees (a scene across the antimeridian: 179.9 and -179.9); else None.

    GDAL fits the GCPs' polynomial in the coordinates as given, so a scene whose longitudes
    jump by 360 at the antimeridian gets a warp across the whole globe (and the mean of its
    longitudes, near 0, the UTM zone of the wrong side of the Earth). The unwrapped GCPs are
    given a CRS with ``+lon_wrap=180`` so that the warp's way back from the grid gives
    longitudes from 0 to 360 too.
    """
    from osgeo import gdal

    if not _srs(crs_wkt).IsGeographic():
        return None
    lons = np.array([g.GCPX for g in gcps], dtype=float)
    if not len(lons) or lons.max() - lons.min() <= 180.0:
        return None
    return [gdal.GCP(g.GCPX + 360.0 if g.GCPX < 0 else g.GCPX, g.GCPY, g.GCPZ, g.GCPPixel,
                     g.GCPLine, g.Info, g.Id) for g in gcps]


def source_window(source, grid, window, *, margin=16):
    """``(row0, col0, height, width)``: the pixels of the GCP raster ``source`` that the warp
    reads to give the pixels ``window`` of ``grid`` (the :class:`Gridded` warped from it), with
    a margin, clipped to the raster (at least one pixel).

    ``window`` is ``(row0, col0, height, width)`` on the grid (it may hang past the grid's
    edges, where nothing is read). The warp's bilinear kernel is the raster's own (scale 1,
    see :func:`gridded_source`), so a grid pixel depends only on the 2 x 2 raster pixels
    around the point it maps to. A grid of points over the window (every 8 grid pixels,
    65 x 65 points at most) goes through the warp's own transformer (the GCPs' polynomial
    and the CRS change, grid to raster); their bounding box grows by ``margin`` pixels plus
    2 % of its size, which covers the kernel, the warper's approximation (1/8 pixel) and
    the curvature between the points.
    """
    from osgeo import gdal

    gdal.UseExceptions()
    src, dst = gdal.Open(grid.warp_source or str(source)), gdal.Open(grid.path)
    row0, col0, height, width = (int(v) for v in window)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, dst.RasterYSize), min(col0 + width, dst.RasterXSize)
    if r1 <= r0 or c1 <= c0:
        r0, r1, c0, c1 = 0, dst.RasterYSize, 0, dst.RasterXSize
    n = int(min(65, max(2, np.ceil(max(r1 - r0, c1 - c0) / 8) + 1)))
    ys, xs = np.meshgrid(np.linspace(r0, r1, n), np.linspace(c0, c1, n), indexing="ij")
    transformer = gdal.Transformer(src, dst, [])
    points, ok = transformer.TransformPoints(1, np.c_[xs.ravel(), ys.ravel()].tolist())
    xy = np.array(points, dtype=float)[np.asarray(ok, dtype=bool), :2]
    xy = xy[np.isfinite(xy).all(axis=1)]
    n_rows, n_cols = src.RasterYSize, src.RasterXSize
    if not len(xy):
        return 0, 0, n_rows, n_cols
    (x_min, y_min), (x_max, y_max) = xy.min(axis=0), xy.max(axis=0)
    grow_x = margin + 0.02 * (x_max - x_min)
    grow_y = margin + 0.02 * (y_max - y_min)
    top = int(np.clip(np.floor(y_min - grow_y), 0, n_rows - 1))
    left = int(np.clip(np.floor(x_min - grow_x), 0, n_cols - 1))
    bottom = int(np.clip(np.ceil(y_max + grow_y), top + 1, n_rows))
    right = int(np.clip(np.ceil(x_max + grow_x), left + 1, n_cols))
    return top, left, bottom - top, right - left


def _drawn_crs(ds):
    """WKT of the CRS regions on the open raster ``ds`` are drawn in, as QGIS shows the layer:
    its own CRS; else its GCPs'; else WGS 84 for RPCs; "" when it has none."""
    if ds.GetGeoTransform(can_return_null=True) is not None:
        return ds.GetProjection() or ""
    if ds.GetGCPCount():
        return ds.GetGCPProjection() or ""
    return _srs_wkt_4326() if ds.GetMetadata("RPC") else ""


def region_crs_wkt(source):
    """WKT of the CRS regions on the raster ``source`` are given in ("" when it has none), as
    :func:`gridded_source` takes them: the raster's own CRS; a GCP-only raster's GCPs' (an RPC
    raster's WGS 84); a Sentinel-1 product's geolocation grid's
    (:data:`~.sentinel1.PRODUCT_CRS`), without calibrating it.

    Raises :class:`~.errors.InputError` when GDAL cannot open the raster.
    """
    from osgeo import gdal, osr

    from .sentinel1 import PRODUCT_CRS, is_sentinel1

    if is_sentinel1(source):
        srs = osr.SpatialReference()
        srs.SetFromUserInput(PRODUCT_CRS)
        return srs.ExportToWkt()
    gdal.UseExceptions()
    try:
        ds = gdal.Open(str(source))
    except RuntimeError as exc:
        raise InputError(f"GDAL cannot open the raster {source!s}: {exc}") from None
    return _drawn_crs(ds)


def _srs_wkt_4326():
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    return srs.ExportToWkt()


# --------------------------------------------------------------------------- regions


def transform_region(wkb, from_wkt, to_wkt, *, tolerance=None):
    """A region (WKB) from one CRS to another, refused when the transformation cannot be
    trusted: it fails, gives non-finite coordinates, or does not come back to the drawn
    vertices (a point near the antipode of a UTM zone), so a different place is never
    explained.

    ``tolerance`` is in ``from_wkt`` units (default 1e-6 degrees, or 0.1 map units).
    """
    from osgeo import ogr, osr

    src, dst = _srs(from_wkt), _srs(to_wkt)
    if src.IsSame(dst):
        return wkb
    if tolerance is None:
        tolerance = 1e-6 if src.IsGeographic() else 0.1
    try:
        forward = osr.CoordinateTransformation(src, dst)
        backward = osr.CoordinateTransformation(dst, src)
        problem = None if forward.this is not None and backward.this is not None else \
            "no coordinate operation is known between them"
    except (RuntimeError, TypeError, AttributeError) as exc:
        problem = str(exc)
    if problem:
        raise InputError(
            f"ROI: the region's CRS ({src.GetName()}) cannot be transformed to the raster's "
            f"({dst.GetName()}): {problem}. Draw the region in the raster's CRS, or give the "
            "region layer the CRS it really has.") from None
    geom = ogr.CreateGeometryFromWkb(bytes(wkb))
    points = np.array(_vertices(geom), dtype=float)
    try:
        there = np.array(forward.TransformPoints(points[:, :2].tolist()), dtype=float)[:, :2]
        back = np.array(backward.TransformPoints(there.tolist()), dtype=float)[:, :2]
    except RuntimeError:
        there = np.full((len(points), 2), np.nan)
        back = there
    error = np.abs(back - points[:, :2])
    if src.IsGeographic():
        error[:, 0] = np.minimum(error[:, 0], np.abs(360 - error[:, 0]))
    if not np.all(np.isfinite(there)) or not np.all(error <= tolerance):
        bad = int(np.sum(~np.isfinite(there).all(axis=1) | ~(error <= tolerance).all(axis=1)))
        raise InputError(
            f"ROI: {bad} of the region's {len(points)} vertices cannot be placed in the "
            f"raster's CRS ({dst.GetName()}): the transformation from {src.GetName()} fails or "
            "does not come back to them (a region far outside the CRS's zone, e.g. near the "
            "antipode of a UTM zone). Draw the region on the raster, or use a raster in a CRS "
            "that covers the region.")
    geom.Transform(forward)
    return bytes(geom.ExportToIsoWkb())


def _vertices(geom):
    out = []
    if geom.GetGeometryCount():
        for i in range(geom.GetGeometryCount()):
            out.extend(_vertices(geom.GetGeometryRef(i)))
    else:
        out.extend(geom.GetPoints() or [])
    return out


def unwrap_antimeridian(region, extent, geographic):
    """``(region, note)``: a region drawn across the antimeridian put onto a geographic raster.

    ``extent`` is the raster's shapely box. A region more than 180 degrees wide (vertices at
    179.9 and -179.9) is unwrapped (negative longitudes + 360); parts outside the raster are
    shifted by +-360 degrees when that puts them on it. ``note`` says what was done (None if
    nothing). Raises :class:`~.errors.InputError` when the region crosses the antimeridian at
    the edge of a raster that spans the whole globe (no window can hold both sides).
    """
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    if not geographic:
        return region, None
    note = None
    minx, _, maxx, _ = region.bounds
    if maxx - minx > 180:
        region = shapely.transform(region, lambda xy: np.where(
            np.stack([xy[:, 0] < 0, np.zeros(len(xy), bool)], axis=1), xy + [360, 0], xy))
        note = "unwrapped"
    if not region.intersects(extent):
        for shift in (360, -360):
            moved = shapely.transform(region, lambda xy, s=shift: xy + [s, 0])
            if moved.intersects(extent):
                region, note = moved, "shifted"
                break
    if note:
        ex0, _, ex1, _ = extent.bounds
        rx0, _, rx1, _ = region.bounds
        if ex1 - ex0 >= 359.0 and (rx0 < ex0 or rx1 > ex1):
            raise InputError(
                "ROI: the region crosses the antimeridian, which is this global raster's "
                "edge, so no window can hold both of its sides. Reproject the raster to a CRS "
                "centred on the region (e.g. its UTM zone, or longitudes 0 to 360) and draw "
                "the region again.")
        return region, ("The region crosses the antimeridian; it is explained where it was "
                        "drawn, its longitudes taken modulo 360 degrees.")
    return region, None


def points_on_raster(points, geotransform, width, height):
    """``(points, n_outside)``: the points of a (Multi)Point on the raster, each moved to the
    centre of its pixel.

    A point takes the pixel it lies in (pixel edges belong to the pixel to the right and
    below, the raster's far edges to its last pixels), so a point on a pixel edge is one
    pixel, not two or four. Points outside the raster are dropped and counted; none left is
    an :class:`~.errors.InputError`.
    """
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    x0, dx, _, y0, _, dy = geotransform
    parts = list(getattr(points, "geoms", [points]))
    xy = np.array([[p.x, p.y] for p in parts], dtype=float)
    cols, rows = (xy[:, 0] - x0) / dx, (xy[:, 1] - y0) / dy
    inside = (cols >= 0) & (cols <= width) & (rows >= 0) & (rows <= height)
    if not inside.any():
        raise InputError("ROI: every point of the region lies outside the raster. Place the "
                         "points on the raster, or check the layers' coordinate reference "
                         "systems.")
    c = np.minimum(np.floor(cols[inside]), width - 1)
    r = np.minimum(np.floor(rows[inside]), height - 1)
    centres = [shapely.Point(x0 + (ci + 0.5) * dx, y0 + (ri + 0.5) * dy) for ci, ri in zip(c, r)]
    out = centres[0] if len(centres) == 1 else shapely.MultiPoint(centres)
    return out, int((~inside).sum())
