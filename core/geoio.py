"""Raster input and output with GDAL: windowed reads, atomic GeoTIFF writes.

Nothing here reads a whole raster: every read is a window, so a 20000 x 20000 scene costs what
a 2000 x 2000 one does. Every write goes to a temporary name in the target folder and is
renamed into place when complete, so a failed or cancelled run never leaves a half-written file.
"""

import contextlib
import os
import uuid
from dataclasses import dataclass

import numpy as np

from .errors import InputError, OutputError


def gdal_module():
    """GDAL's Python module with exceptions on (imported on first use, not at start-up)."""
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


@dataclass(frozen=True)
class RasterInfo:
    """What is known of a raster without reading its pixels."""

    path: str
    width: int
    height: int
    n_bands: int
    geotransform: tuple
    crs_wkt: str
    nodata: tuple  # per band, None where unset
    dtypes: tuple  # per band GDAL type names
    scaling: tuple = ()  # per band (scale, offset) GDAL applies to raw values; (1, 0) if none


def raster_info(path):
    """Open ``path`` with GDAL and describe it.

    Raises :class:`~.errors.InputError` (a ValueError) naming the file when GDAL cannot open it.
    """
    gdal = gdal_module()
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise InputError(f"GDAL cannot open the raster {path!s}: {exc}") from exc
    if ds is None:
        raise InputError(f"GDAL cannot open the raster {path!s}")
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    return RasterInfo(
        path=str(path), width=ds.RasterXSize, height=ds.RasterYSize, n_bands=ds.RasterCount,
        geotransform=tuple(ds.GetGeoTransform()), crs_wkt=ds.GetProjection() or "",
        nodata=tuple(b.GetNoDataValue() for b in bands),
        dtypes=tuple(gdal.GetDataTypeName(b.DataType) for b in bands),
        scaling=tuple(band_scaling(b) for b in bands))


def band_scaling(band):
    """``(scale, offset)`` of a GDAL band (the value is ``raw * scale + offset``); (1, 0) when
    the band has none."""
    scale, offset = band.GetScale(), band.GetOffset()
    return (1.0 if scale is None else float(scale)), (0.0 if offset is None else float(offset))


#: What a complex band (CInt16, CFloat32...: SLC products) becomes: ``|z|^2``, ``|z|`` or
#: ``10 log10 |z|^2`` (a zero becomes -inf, so nodata).
COMPLEX_AS = ("intensity", "amplitude", "dB")


def is_complex(dtype_name):
    """True for GDAL's complex types (``CInt16``, ``CInt32``, ``CFloat32``, ``CFloat64``)."""
    return str(dtype_name).startswith("C")


def read_window(path, row0, col0, height, width, bands=None, *, screened=None, flags=None,
                complex_as="intensity"):
    """Read a window as float32 ``[height, width, C]``; nodata and out-of-raster pixels are NaN.

    Infinite, NaN and absurd values (beyond +-1e20, :func:`~.baselines.screen_values`) are
    NaN too: a fill value without a nodata flag must not reach the model or the baseline.
    Pixels a GDAL mask or alpha band marks as invalid (0) are nodata, as QGIS shows them. A
    band's scale and offset (GDAL metadata: ``raw * scale + offset``) are applied, as QGIS
    shows the values. Complex bands become their intensity ``|z|^2`` (or amplitude ``|z|``, or
    intensity in dB), never their real part.

    Parameters
    ----------
    path : str
        Any raster GDAL opens.
    row0, col0 : int
        Top-left pixel of the window; may be negative or extend past the raster (those pixels
        are NaN), so a window centred on a region near the edge keeps its size.
    height, width : int
    bands : sequence of int, optional
        1-based band numbers in model-channel order; default all bands.
    screened : dict, optional
        Incremented with the counts ``"non_finite"`` and ``"absurd"`` of values made NaN.
    flags : ndarray of uint8, shape (height, width), optional
        ORed with 1 where a band's value was made NaN as non-finite, 2 where as absurd
        (:func:`~.baselines.screen_values`).
    complex_as : {"intensity", "amplitude", "dB"}
        What a complex band becomes.
    """
    from .baselines import screen_values

    if complex_as not in COMPLEX_AS:
        raise ValueError(f"complex_as must be one of {COMPLEX_AS}, got {complex_as!r}")
    gdal = gdal_module()
    ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    bands = list(bands) if bands else list(range(1, ds.RasterCount + 1))
    out = np.full((height, width, len(bands)), np.nan, dtype=np.float32)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, ds.RasterYSize), min(col0 + width, ds.RasterXSize)
    if r1 <= r0 or c1 <= c0:
        return out
    for i, b in enumerate(bands):
        band = ds.GetRasterBand(int(b))
        try:
            data = band.ReadAsArray(c0, r0, c1 - c0, r1 - r0)
        except RuntimeError as exc:  # a VRT's missing source, a truncated or unreadable file
            said = " ".join(str(exc).split())[:300]       # GDAL 3.10 adds "\nMay be caused by"
            raise InputError(f"INPUT: GDAL cannot read band {b} of the raster {path} ({said}). "
                             "Check that the file, and any file it refers to (a VRT's sources), "
                             "exists and is readable.") from None
        nodata = band.GetNoDataValue()
        flagged = None
        if nodata is not None:
            if np.isnan(nodata):
                flagged = np.isnan(data)
            elif data.dtype.kind == "f":
                with np.errstate(over="ignore"):
                    flagged = data == data.dtype.type(nodata)
            else:
                flagged = data == nodata
        mask_flags = band.GetMaskFlags()
        if not mask_flags & (gdal.GMF_ALL_VALID | gdal.GMF_NODATA):    # a mask or alpha band
            masked = band.GetMaskBand().ReadAsArray(c0, r0, c1 - c0, r1 - r0) == 0
            flagged = masked if flagged is None else (flagged | masked)
        scale, offset = band_scaling(band)
        if (scale, offset) != (1.0, 0.0):
            data = data * scale + offset     # float64 (complex128 for complex bands)
        if np.iscomplexobj(data):
            data = np.abs(data.astype(np.complex128))
            if complex_as != "amplitude":
                data = data * data
            if complex_as == "dB":
                with np.errstate(divide="ignore"):
                    data = 10.0 * np.log10(data)
        data = data.astype(np.float64)
        if flagged is not None:
            data[flagged] = np.nan
        found = None if flags is None else np.zeros(data.shape, dtype=np.uint8)
        data, n_bad, n_absurd = screen_values(data, keep=flagged, flags=found)
        if found is not None:
            flags[r0 - row0:r1 - row0, c0 - col0:c1 - col0] |= found
        if screened is not None:
            screened["non_finite"] = screened.get("non_finite", 0) + n_bad
            screened["absurd"] = screened.get("absurd", 0) + n_absurd
        out[r0 - row0:r1 - row0, c0 - col0:c1 - col0, i] = data.astype(np.float32)
    return out


def temporary_name(path):
    """A fresh hidden name beside ``path`` with the same extension: ``.<name>.<random>.part<ext>``.

    The file itself is not created. Drivers that write side-car files (GDAL's ``.aux.xml``, a
    shapefile's ``.shx``/``.dbf``/``.prj``, a GeoPackage's ``-wal``) name them after it, so
    :func:`file_family` finds them.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    # At most 40 characters of the name, so a long file name still leaves room for the
    # random part and the side-cars' suffixes.
    return os.path.join(folder, f".{base[:40]}.{uuid.uuid4().hex[:12]}.part{ext}")


def file_family(tmp, final=None):
    """``[(file, renamed)]``: ``tmp`` and its side-cars, with their names beside ``final``.

    A side-car shares ``tmp``'s stem (``tmp`` without its extension): ``<stem>.shx`` becomes
    ``<final stem>.shx`` and ``<tmp>.aux.xml`` becomes ``<final>.aux.xml``. The main file comes
    last, so a reader that sees it also sees its side-cars.
    """
    tmp = os.fspath(tmp)
    folder, name = os.path.split(os.path.abspath(tmp))
    stem = os.path.splitext(name)[0]
    final_stem = os.path.splitext(os.path.abspath(os.fspath(final)))[0] if final else None
    try:
        names = sorted(n for n in os.listdir(folder)
                       if n != name and (n.startswith(stem + ".") or n.startswith(name)))
    except OSError:
        names = []
    family = [(os.path.join(folder, n), final_stem and final_stem + n[len(stem):])
              for n in names]
    if os.path.lexists(tmp):
        family.append((tmp, final_stem and final_stem + name[len(stem):]))
    return family


def remove_family(tmp):
    """Remove ``tmp`` and every side-car named after it; never raises."""
    for leftover, _ in file_family(tmp):
        with contextlib.suppress(OSError):
            os.unlink(leftover)


def commit_family(tmp, final):
    """Rename ``tmp`` and its side-cars to ``final``'s names; returns the new paths.

    The file replaced and its stale side files (``.aux.xml``, ``.ovr``, a shapefile's
    ``.qix``...) are moved aside first and removed only once the new files are in place; a
    failure puts them back (:func:`~.outputs.replace_families`).
    """
    from .outputs import replace_families

    return replace_families([(tmp, final)])


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Side-car files the writer makes beside the temporary file (``.aux.xml``, a shapefile's
    ``.shx``, ``.dbf``, ``.prj``...) are renamed with it. On any exception (cancellation
    included) the temporary file and its side-cars are removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        commit_family(tmp, path)
    finally:
        remove_family(tmp)


def window_geotransform(geotransform, row0, col0):
    """Geotransform of the window whose top-left pixel is (row0, col0) of ``geotransform``."""
    x0, dx, rx, y0, ry, dy = geotransform
    return (x0 + col0 * dx + row0 * rx, dx, rx, y0 + col0 * ry + row0 * dy, ry, dy)


class _BlockWriter:
    """Holds the only reference to a GDAL dataset being written, so closing it really closes it."""

    def __init__(self, ds):
        self._ds = ds

    def write(self, band, block, xoff=0, yoff=0):
        """Write ``block`` ``[h, w]`` into 1-based ``band`` at pixel offset (xoff, yoff)."""
        self._ds.GetRasterBand(int(band)).WriteArray(np.asarray(block), int(xoff), int(yoff))

    def close(self):
        if self._ds is not None:
            self._ds.FlushCache()
            self._ds = None


@contextlib.contextmanager
def geotiff_writer(path, width, height, n_bands, geotransform, crs_wkt, *, nodata=None,
                   band_names=None, metadata=None, dtype="Float32", color_table=None,
                   category_names=None):
    """Create a tiled, compressed GeoTIFF under a temporary name and yield a block writer.

    The caller writes blocks with ``writer.write(band, block, xoff, yoff)`` (band 1-based); the
    dataset is closed, then the file renamed to ``path``, only when the block ends without an
    exception; otherwise the temporary file is removed.
    ``metadata`` is a dict of str written to the dataset's default metadata domain.
    """
    gdal = gdal_module()
    gdt = gdal.GetDataTypeByName(dtype)
    with atomic_path(path) as tmp:
        writer = _BlockWriter(gdal.GetDriverByName("GTiff").Create(
            tmp, int(width), int(height), int(n_bands), gdt,
            options=["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"]))
        try:
            _describe(writer._ds, geotransform, crs_wkt, nodata, band_names, metadata,
                      color_table, category_names)
            yield writer
        finally:
            writer.close()


def _describe(ds, geotransform, crs_wkt, nodata, band_names, metadata, color_table,
              category_names):
    """Set georeferencing, metadata and per-band descriptions of a new dataset."""
    gdal = gdal_module()
    ds.SetGeoTransform(tuple(geotransform))
    if crs_wkt:
        ds.SetProjection(crs_wkt)
    if metadata:
        ds.SetMetadata({str(k): str(v) for k, v in metadata.items()})
    for i in range(ds.RasterCount):
        band = ds.GetRasterBand(i + 1)
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
        if band_names is not None:
            band.SetDescription(str(band_names[i]))
        if color_table is not None:
            table = gdal.ColorTable()
            for value, rgba in color_table.items():
                table.SetColorEntry(int(value), tuple(int(c) for c in rgba))
            band.SetRasterColorTable(table)
            band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
        if category_names is not None:
            band.SetRasterCategoryNames(list(category_names))


def write_geotiff(path, bands, geotransform, crs_wkt, **options):
    """Write ``bands`` ``[B, H, W]`` (or ``[H, W]``) as a GeoTIFF, atomically.

    ``options`` are those of :func:`geotiff_writer`.
    """
    bands = np.asarray(bands)
    if bands.ndim == 2:
        bands = bands[None]
    n, height, width = bands.shape
    with geotiff_writer(path, width, height, n, geotransform, crs_wkt, **options) as writer:
        for i in range(n):
            writer.write(i + 1, bands[i])
    return str(path)


VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON",
                  ".shp": "ESRI Shapefile", ".fgb": "FlatGeobuf"}


def write_polygons(path, layer_name, polygons, fields, crs_wkt, *, metadata=None):
    """Write shapely polygons (map coordinates) with attribute columns, atomically.

    Parameters
    ----------
    path : str
        Output file; the driver follows the extension (.gpkg, .geojson, .shp, .fgb).
    layer_name : str
    polygons : sequence of shapely geometries
    fields : dict of str -> sequence
        Column name -> one value per polygon (int, float or str; None is NULL).
    crs_wkt : str
    metadata : dict, optional
        Layer metadata (GeoPackage keeps it in gpkg_metadata).
    """
    from osgeo import ogr

    ext = os.path.splitext(str(path))[1].lower()
    if ext not in VECTOR_DRIVERS:
        raise OutputError(f"cannot write cells to '{path}': use a .gpkg (or .geojson, .shp, .fgb) "
                         "file name")
    columns = {name: column_kind(values) for name, values in fields.items()}
    rows = [{name: values[i] for name, values in fields.items()} for i in range(len(polygons))]
    return write_layer(path, VECTOR_DRIVERS[ext], layer_name, ogr.wkbPolygon,
                       [poly.wkb for poly in polygons], columns, rows, crs_wkt,
                       metadata=metadata)


def column_kind(values):
    """The column kind of ``values`` for :func:`write_layer`: ``"int"``, ``"str"`` or
    ``"real"``, after the first value that is not None (``"real"`` when all are None)."""
    sample = next((v for v in values if v is not None), 0.0)
    if isinstance(sample, (int, np.integer)):
        return "int"
    return "str" if isinstance(sample, str) else "real"


def write_layer(path, driver, layer_name, geometry_type, wkbs, columns, rows, crs_wkt, *,
                metadata=None):
    """Write one vector layer, atomically (:func:`atomic_path`): a feature per geometry.

    Parameters
    ----------
    path : str
    driver : str
        OGR driver name (``"GPKG"``, ``"GeoJSON"``...).
    layer_name : str
    geometry_type : int
        OGR geometry type of the layer (``ogr.wkbPolygon``...).
    wkbs : sequence of bytes
        The features' geometries as WKB, in map coordinates of ``crs_wkt``.
    columns : dict of str -> {"int", "real", "str"}
        The attribute columns, in order.
    rows : sequence of dict
        One per geometry: column -> value. A missing column, None, and a non-finite number
        are NULL.
    crs_wkt : str
        The layer's CRS; empty for none.
    metadata : dict, optional
        Layer metadata (GeoPackage keeps it in gpkg_metadata).
    """
    gdal = gdal_module()
    from osgeo import ogr, osr

    ogr.UseExceptions()
    ogr_kinds = {"int": ogr.OFTInteger64, "real": ogr.OFTReal, "str": ogr.OFTString}
    convert = {"int": int, "real": float, "str": str}
    srs = None
    if crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    with atomic_path(path) as tmp:
        ds = gdal.GetDriverByName(driver).Create(tmp, 0, 0, 0, gdal.GDT_Unknown)
        try:
            layer = ds.CreateLayer(layer_name, srs, geometry_type)
            for name, kind in columns.items():
                layer.CreateField(ogr.FieldDefn(name, ogr_kinds[kind]))
            if metadata:
                layer.SetMetadata({str(k): str(v) for k, v in metadata.items()})
            defn = layer.GetLayerDefn()
            layer.StartTransaction()
            for wkb, row in zip(wkbs, rows):
                feat = ogr.Feature(defn)
                feat.SetGeometry(ogr.CreateGeometryFromWkb(bytes(wkb)))
                for name, kind in columns.items():
                    value = row.get(name)
                    if value is None or (isinstance(value, (float, np.floating))
                                         and not np.isfinite(value)):
                        feat.SetFieldNull(name)
                    else:
                        feat.SetField(name, convert[kind](value))
                layer.CreateFeature(feat)
            layer.CommitTransaction()
        finally:
            ds = None
    return str(path)
