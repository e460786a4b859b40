"""Sentinel-1 GRD products as analysts download them: a ``.SAFE`` folder, its
``manifest.safe``, a ``.zip`` of it, or one of GDAL's subdataset names
(``SENTINEL1_CALIB:SIGMA0:<manifest>:IW_VV``, ``SENTINEL1_CALIB:UNCALIB:...:AMPLITUDE``,
``SENTINEL1_DS:<folder>:IW_VV``).

:func:`calibrated_source` turns any of them into one raster of calibrated backscatter that the
rest of the pipeline reads like any other: a temporary float32 GeoTIFF whose bands are
``sigma0 = DN^2 / A^2`` (``A`` the product's ``sigmaNought`` LUT from
``annotation/calibration/calibration-*.xml``, bilinear between its vectors), in dB when the
model's input is in dB, DN 0 as nodata, georeferenced by the product's geolocation grid (GCPs,
which :func:`~.georef.gridded_source` then warps on the fly).

The calibration is ours on every GDAL: GDAL's SAFE driver calibrates only SLC products (on
GDAL 3.6 ``SENTINEL1_CALIB:SIGMA0:...`` of a GRD product is "Measurement bands not found"),
and a result must not depend on the GDAL QGIS ships. The product is calibrated in blocks of
rows into the temporary file (removed after the run). A run that reads one window (an
explanation, ``segment`` with an extent) calibrates only the lines and pixels of the product
that the warp of that window reads, with a margin (:meth:`Product.calibrate` with a window;
:func:`~.job.opened_raster` finds them on the whole product's warped grid, computed without
reading a pixel, and :func:`~.georef.source_window` maps the window to the product): some
hundred thousand pixels instead of a 25000 x 16700 GRD's one pass over
its measurement and 1.7 GB of temporary disk per polarisation, which only ``segment`` of the
whole product still costs. (A VRT with a GDAL Python pixel function, :func:`calibrate_block` has its
signature, would calibrate only the window read too; it needs GDAL_VRT_PYTHON_TRUSTED_MODULES
set process-wide and is not tested inside QGIS's task threads.)

Which input unit the model takes: its metadata key :data:`UNIT_KEY` (``"dB"`` or
``"linear"``), else dB when its input scaling is min-max from a negative minimum (no linear
backscatter is negative), else linear.
"""

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .errors import InputError
from .geoio import gdal_module

__all__ = ["CALIBRATIONS", "PRODUCT_CRS", "UNIT_KEY", "Calibrated", "Measurement", "Product",
           "calibrate_block", "calibrated_source", "input_unit", "is_sentinel1", "lut_values",
           "measurements", "read_product", "resolve_manifest"]

#: The CRS of a product's geolocation grid (its GCPs): WGS 84. Regions and extents on a
#: product are given in it, as QGIS shows the product.
PRODUCT_CRS = "EPSG:4326"
#: Model metadata key stating the unit of its input backscatter: "dB" or "linear".
UNIT_KEY = "seg_explainer_input_unit"
#: Calibration names of GDAL's subdatasets -> the LUT of the calibration files.
CALIBRATIONS = {"SIGMA0": "sigmaNought", "BETA0": "betaNought", "GAMMA": "gamma"}
#: What each calibration is called in the warnings and the record.
CALIBRATION_NAMES = {"SIGMA0": "sigma0", "BETA0": "beta0", "GAMMA": "gamma0"}
_UNITS = ("AMPLITUDE", "COMPLEX", "INTENSITY")
_PREFIXES = ("SENTINEL1_CALIB:", "SENTINEL1_DS:")


@dataclass(frozen=True)
class Measurement:
    """One measurement of a product: a swath and polarisation, with its three files."""

    swath: str
    polarisation: str
    product_type: str
    measurement: str
    annotation: str
    calibration: str


@dataclass(frozen=True)
class Calibrated:
    """A product's chosen measurements as calibrated bands (a temporary GeoTIFF).

    Attributes
    ----------
    path : str
        The GeoTIFF; band ``i`` is ``measurements[i]``. :meth:`close` removes it.
    measurements : tuple of Measurement
    record : dict
        What the outputs record (``sentinel1``: JSON).
    warnings : tuple of str
    """

    path: str
    measurements: tuple
    record: dict = field(default_factory=dict)
    warnings: tuple = ()

    def close(self):
        _remove(self.path)


def _remove(path):
    for p in (path, path + ".aux.xml"):
        try:
            os.unlink(p)
        except OSError:
            pass


# --------------------------------------------------------------------------- recognising


def _is_dir(path):
    gdal = gdal_module()
    stat = gdal.VSIStatL(str(path))
    return stat is not None and stat.IsDirectory()


def _exists(path):
    return gdal_module().VSIStatL(str(path)) is not None


def _manifest_in_folder(folder):
    for name in ("manifest.safe", "MANIFEST.SAFE"):
        path = f"{str(folder).rstrip('/')}/{name}"
        if _exists(path):
            return path
    return None


def _parse_subdataset(text):
    """``(path, calibration, selection)`` of a ``SENTINEL1_CALIB:`` / ``SENTINEL1_DS:`` name."""
    upper = text.upper()
    if upper.startswith("SENTINEL1_DS:"):
        rest, calibration = text[len("SENTINEL1_DS:"):], None
    else:
        rest = text[len("SENTINEL1_CALIB:"):]
        calibration, _, rest = rest.partition(":")
        calibration = calibration.upper()
        if calibration not in CALIBRATIONS and calibration != "UNCALIB":
            raise InputError(f"INPUT: '{text}' asks for the calibration '{calibration}'; "
                             "use SIGMA0, BETA0, GAMMA or UNCALIB.")
    path, _, selection = rest.rpartition(":")
    if selection.upper() in _UNITS:
        path, _, selection = path.rpartition(":")
    if not path or not selection:
        raise InputError(f"INPUT: '{text}' is not a Sentinel-1 subdataset name; they read "
                         "SENTINEL1_CALIB:SIGMA0:<folder or manifest.safe>:IW_VV.")
    return path, calibration, selection.upper()


def is_sentinel1(source):
    """True when ``source`` names a Sentinel-1 SAFE product in any of its forms."""
    text = str(source)
    if text.upper().startswith(_PREFIXES):
        return True
    if os.path.basename(text).lower() == "manifest.safe":
        return True
    if text.lower().endswith(".zip") and os.path.isfile(text):
        return any(n.lower().endswith("manifest.safe") for n in _zip_names(text))
    return _is_dir(text) and _manifest_in_folder(text) is not None


def _zip_names(path):
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def resolve_manifest(source):
    """``(manifest, calibration, selection)``: the manifest.safe (a ``/vsizip/`` path inside a
    zip) and what a subdataset name asks for (None when not named)."""
    text = str(source)
    calibration = selection = None
    if text.upper().startswith(_PREFIXES):
        text, calibration, selection = _parse_subdataset(text)
    if text.lower().endswith(".zip") and not text.startswith("/vsi"):
        inside = [n for n in _zip_names(text) if n.lower().endswith("manifest.safe")]
        if len(inside) != 1:
            raise InputError(f"INPUT: the zip file {text} holds {len(inside)} manifest.safe "
                             "files; it must hold one Sentinel-1 product. Unzip it and give "
                             "the product's .SAFE folder.")
        return f"/vsizip/{text}/{inside[0]}", calibration, selection
    if _is_dir(text):
        manifest = _manifest_in_folder(text)
        if manifest is None:
            raise InputError(f"INPUT: the folder {text} has no manifest.safe, so it is not a "
                             "Sentinel-1 SAFE product.")
        return manifest, calibration, selection
    if not _exists(text):
        raise InputError(f"INPUT: {text} does not exist.")
    return text, calibration, selection


# --------------------------------------------------------------------------- the product


def _read_xml(path):
    gdal = gdal_module()
    try:
        f = gdal.VSIFOpenL(str(path), "rb")
    except RuntimeError:
        f = None
    if f is None:
        raise InputError(f"INPUT: the Sentinel-1 product lacks {path}; it is incomplete. "
                         "Download or unzip it again.")
    try:
        gdal.VSIFSeekL(f, 0, 2)
        size = gdal.VSIFTellL(f)
        gdal.VSIFSeekL(f, 0, 0)
        data = gdal.VSIFReadL(1, size, f)
    finally:
        gdal.VSIFCloseL(f)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"INPUT: {path} is not valid XML ({exc}); the product is damaged. "
                         "Download it again.") from None


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _find(node, *names):
    """The first descendant along the path of local tag names (namespaces ignored)."""
    for name in names:
        node = next((c for c in node if _local(c.tag) == name), None)
        if node is None:
            return None
    return node


def _text(node, *names, default=""):
    found = _find(node, *names)
    return (found.text or "").strip() if found is not None else default


def _href(data_object):
    stream = _find(data_object, "byteStream", "fileLocation")
    href = stream.get("href", "") if stream is not None else ""
    return href[2:] if href.startswith("./") else href


def measurements(manifest):
    """The product's measurements in the manifest's order (GDAL's band order).

    Follows the manifest as GDAL's SAFE driver does: each ``Measurement Data Unit`` points to
    its measurement file and, through its ``dmdID`` metadata objects, to its annotation
    (``s1Level1ProductSchema``) and calibration (``s1Level1CalibrationSchema``) files.
    """
    root = _read_xml(manifest)
    folder = str(manifest).rsplit("/", 1)[0] if "/" in str(manifest) else "."
    objects = {o.get("ID"): o for o in root.iter() if _local(o.tag) == "dataObject"}
    pointers = {}
    for meta in root.iter():
        if _local(meta.tag) == "metadataObject":
            pointer = _find(meta, "dataObjectPointer")
            if pointer is not None:
                pointers[meta.get("ID")] = pointer.get("dataObjectID")
    out = []
    for unit in root.iter():
        if _local(unit.tag) != "contentUnit" or unit.get("unitType") != "Measurement Data Unit":
            continue
        pointer = _find(unit, "dataObjectPointer")
        data = objects.get(pointer.get("dataObjectID")) if pointer is not None else None
        if data is None or data.get("repID") != "s1Level1MeasurementSchema":
            continue
        files = {}
        for dmd in (unit.get("dmdID") or "").split():
            obj = objects.get(pointers.get(dmd))
            if obj is not None:
                files[obj.get("repID")] = _href(obj)
        annotation = files.get("s1Level1ProductSchema")
        calibration = files.get("s1Level1CalibrationSchema")
        if not annotation or not calibration or not _href(data):
            continue
        header = _find(_read_xml(f"{folder}/{annotation}"), "adsHeader")
        if header is None:
            continue
        out.append(Measurement(
            swath=_text(header, "swath").upper(), polarisation=_text(header, "polarisation")
            .upper(), product_type=_text(header, "productType").upper(),
            measurement=f"{folder}/{_href(data)}", annotation=f"{folder}/{annotation}",
            calibration=f"{folder}/{calibration}"))
    if not out:
        raise InputError(f"INPUT: {manifest} lists no measurement with its annotation and "
                         "calibration files; the product is incomplete or not a Sentinel-1 "
                         "level-1 product.")
    return out


@lru_cache(maxsize=32)
def _lut(calibration, name):
    """``(lines [n], pixels [n, m], values [n, m])`` of the LUT ``name`` of a calibration file."""
    root = _read_xml(calibration)
    lines, pixels, values = [], [], []
    for vector in root.iter():
        if _local(vector.tag) != "calibrationVector":
            continue
        lines.append(float(_text(vector, "line")))
        pixels.append(np.array(_text(vector, "pixel").split(), dtype=float))
        values.append(np.array(_text(vector, name).split(), dtype=float))
    if not lines or any(len(p) != len(v) or len(p) == 0 for p, v in zip(pixels, values)):
        raise InputError(f"INPUT: the calibration file {calibration} has no usable {name} "
                         "vectors; the product is damaged.")
    order = np.argsort(lines, kind="stable")
    return (np.array(lines)[order], [pixels[i] for i in order], [values[i] for i in order])


def lut_values(calibration, name, rows, cols):
    """The LUT ``name`` at every (row, col) of a grid, ``[len(rows), len(cols)]``.

    Bilinear: linear along each vector's pixels, then linear between the two vectors whose
    lines bracket the row; rows and columns beyond the vectors take the nearest one.
    """
    lines, pixels, values = _lut(calibration, name)
    cols = np.asarray(cols, dtype=float)
    rows = np.asarray(rows, dtype=float)
    along = np.stack([np.interp(cols, p, v) for p, v in zip(pixels, values)])   # [n, W]
    if len(lines) == 1:
        return np.broadcast_to(along[0], (len(rows), len(cols))).copy()
    i = np.clip(np.searchsorted(lines, rows, side="right") - 1, 0, len(lines) - 2)
    t = np.clip((rows - lines[i]) / (lines[i + 1] - lines[i]), 0.0, 1.0)[:, None]
    return along[i] * (1.0 - t) + along[i + 1] * t


def calibrate_block(in_ar, out_ar, xoff, yoff, xsize, ysize, raster_xsize, raster_ysize,
                    buf_radius, gt, **kwargs):
    """DN -> ``DN^2 / A^2`` (dB when ``db`` is "1"); DN 0 is NaN, for one block.

    The signature is a GDAL pixel function's (``in_ar[0]`` the DN block, ``out_ar`` filled,
    ``xoff``/``yoff``/``xsize``/``ysize`` the block's window); ``kwargs``: ``calibration``
    (file) and ``lut`` (``sigmaNought``...).
    """
    args = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in kwargs.items()}
    h, w = out_ar.shape
    rows = yoff + (np.arange(h) + 0.5) * (ysize / h) - 0.5
    cols = xoff + (np.arange(w) + 0.5) * (xsize / w) - 0.5
    a = lut_values(args["calibration"], args["lut"], rows, cols)
    dn = in_ar[0].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = dn * dn / (a * a)
        if args.get("db") == "1":
            value = 10.0 * np.log10(value)
    value[dn <= 0] = np.nan
    out_ar[:] = value


# --------------------------------------------------------------------------- the model's unit


def input_unit(model):
    """``(unit, why)``: "dB" or "linear", and what decided it (for the record)."""
    metadata = getattr(model, "metadata", None)
    raw = getattr(metadata, "raw", None) or {}
    if UNIT_KEY in raw:
        value = str(raw[UNIT_KEY]).strip().lower()
        if value not in ("db", "linear"):
            raise InputError(f"MODEL: its metadata key {UNIT_KEY} is {raw[UNIT_KEY]!r}; it must "
                             "be 'dB' or 'linear'. Fix the model's metadata.")
        return ("dB" if value == "db" else "linear"), f"the model's metadata ({UNIT_KEY})"
    scaling = getattr(metadata, "input_scaling", None)
    if getattr(scaling, "type", None) == "minmax" and scaling.min is not None \
            and float(scaling.min) < 0:
        return "dB", (f"the model's input scaling (min-max from {float(scaling.min):g}: "
                      "backscatter below 0 is in dB)")
    return "linear", "the model's input scaling (no negative values: linear backscatter)"


# --------------------------------------------------------------------------- the raster


def _listing(manifest, candidates):
    bands = ", ".join(f"{i} = {m.swath} {m.polarisation}" for i, m in enumerate(candidates, 1))
    names = "; ".join(f"SENTINEL1_CALIB:SIGMA0:{manifest}:{m.swath}_{m.polarisation}"
                      for m in candidates)
    return bands, names


def _choose(model, manifest, all_measurements, selection, bands):
    swaths = list(dict.fromkeys(m.swath for m in all_measurements))
    swath, _, pols = (selection or "").partition("_")
    swath = swath or swaths[0]
    candidates = [m for m in all_measurements if m.swath == swath
                  and (not pols or m.polarisation in pols.split("+"))]
    if not candidates:
        raise InputError(f"INPUT: the product has no measurement {selection}; it has "
                         + ", ".join(f"{m.swath}_{m.polarisation}" for m in all_measurements)
                         + ".")
    listed, names = _listing(manifest, candidates)
    n_channels = getattr(model, "n_channels", None)
    if bands:
        bands = [int(b) for b in bands]
        if any(b < 1 or b > len(candidates) for b in bands):
            raise InputError(f"BANDS: the product's bands are {listed}; {bands} asks for "
                             "others.")
        return [candidates[b - 1] for b in bands]
    if len(candidates) == 1 or n_channels in (None, len(candidates)):
        return candidates
    raise InputError(
        f"INPUT: the Sentinel-1 product has {len(candidates)} polarisations ({listed}) and the "
        f"model takes {n_channels} channel(s). Choose with BANDS (e.g. BANDS 1 for "
        f"{candidates[0].polarisation}), or give one polarisation's subdataset as INPUT: "
        f"{names}.")


def _gcps(measurement):
    gdal = gdal_module()
    grid = _find(_read_xml(measurement.annotation), "geolocationGrid",
                 "geolocationGridPointList")
    gcps = []
    for i, point in enumerate(grid if grid is not None else []):
        try:
            gcps.append(gdal.GCP(float(_text(point, "longitude")), float(_text(point, "latitude")),
                                 float(_text(point, "height", default="0") or 0),
                                 float(_text(point, "pixel")), float(_text(point, "line")),
                                 "", str(i + 1)))
        except ValueError:
            continue
    return gcps


def _write_calibrated(path, chosen, width, height, gcps, lut, db, window=None,
                      rows_per_block=512):
    """Calibrate the ``window`` ``(row0, col0, height, width)`` of the chosen measurements
    (default all of them) into a float32 GeoTIFF at ``path``, block by block; NaN is nodata.

    The file is georeferenced by all of ``gcps`` (WGS 84), shifted by the window's offset, so
    that it lies where the window lies in the product (GDAL accepts GCPs beyond a raster).
    """
    from osgeo import osr

    gdal = gdal_module()
    row0, col0, rows, cols = window or (0, 0, height, width)
    wgs = osr.SpatialReference()
    wgs.SetFromUserInput(PRODUCT_CRS)
    shifted = [gdal.GCP(g.GCPX, g.GCPY, g.GCPZ, g.GCPPixel - col0, g.GCPLine - row0,
                        g.Info, g.Id) for g in gcps]
    out = gdal.GetDriverByName("GTiff").Create(
        path, cols, rows, len(chosen), gdal.GDT_Float32,
        options=["TILED=YES", "BIGTIFF=IF_SAFER", "SPARSE_OK=TRUE"])
    try:
        out.SetGCPs(shifted, wgs.ExportToWkt())
        for i, m in enumerate(chosen, start=1):
            band = out.GetRasterBand(i)
            band.SetNoDataValue(float("nan"))
            band.SetDescription(m.polarisation)
            source = gdal.Open(m.measurement)
            if (source.RasterXSize, source.RasterYSize) != (width, height):
                raise InputError(f"INPUT: the product's measurements differ in size "
                                 f"({m.measurement}); choose one polarisation with BANDS.")
            for r0 in range(0, rows, rows_per_block):
                h = min(rows_per_block, rows - r0)
                dn = source.GetRasterBand(1).ReadAsArray(col0, row0 + r0, cols, h)
                block = np.empty((h, cols), np.float32)
                calibrate_block([dn], block, col0, row0 + r0, cols, h, width, height, 0, None,
                                calibration=m.calibration, lut=lut, db="1" if db else "0")
                band.WriteArray(block, 0, r0)
            source = None
        out.FlushCache()
    finally:
        out = None


@dataclass(frozen=True)
class Product:
    """A Sentinel-1 product's chosen measurements, read from its XML files, before any pixel
    is calibrated (:func:`read_product`).

    Attributes
    ----------
    source : str
        The product as given.
    manifest : str
    measurements : tuple of Measurement
        The chosen ones, in band order.
    width, height : int
        The measurements' size in pixels (samples) and lines.
    gcps : tuple
        The geolocation grid (``gdal.GCP``, WGS 84) of the first measurement.
    calibration : str
        ``"SIGMA0"``, ``"BETA0"`` or ``"GAMMA"``.
    unit, unit_from : str
        ``"dB"`` or ``"linear"``, and what decided it (:func:`input_unit`).
    warnings : tuple of str
    """

    source: str
    manifest: str
    measurements: tuple
    width: int
    height: int
    gcps: tuple
    calibration: str
    unit: str
    unit_from: str
    warnings: tuple = ()

    @property
    def lut(self):
        return CALIBRATIONS[self.calibration]

    def write_shape(self, path):
        """Write at ``path`` (e.g. in ``/vsimem/``) a raster of the product's size and bands,
        georeferenced by its GCPs, without pixels (a VRT without sources): the warp's grid is
        computed from it as from the calibrated product, reading nothing."""
        from osgeo import osr

        gdal = gdal_module()
        wgs = osr.SpatialReference()
        wgs.SetFromUserInput(PRODUCT_CRS)
        ds = gdal.GetDriverByName("VRT").Create(path, self.width, self.height,
                                                len(self.measurements), gdal.GDT_Float32)
        ds.SetGCPs(list(self.gcps), wgs.ExportToWkt())
        for i in range(len(self.measurements)):
            ds.GetRasterBand(i + 1).SetNoDataValue(float("nan"))
        ds.FlushCache()
        ds = None
        return path

    def calibrate(self, window=None):
        """The chosen measurements calibrated into a temporary GeoTIFF (:class:`Calibrated`).

        Parameters
        ----------
        window : (row0, col0, height, width), optional
            The lines and pixels of the product to calibrate (default all): the file holds
            only them, georeferenced so that it lies where they lie in the product.
        """
        import tempfile

        gdal = gdal_module()
        window = tuple(int(v) for v in window) if window else (0, 0, self.height, self.width)
        fd, path = tempfile.mkstemp(prefix="segx-s1-", suffix=".tif")
        os.close(fd)
        try:
            _write_calibrated(path, self.measurements, self.width, self.height, self.gcps,
                              self.lut, self.unit == "dB", window)
        except BaseException:
            _remove(path)
            raise
        name = CALIBRATION_NAMES[self.calibration]
        record = {"sentinel1": json.dumps({
            "product": self.source, "manifest": self.manifest,
            "measurements": [{"swath": m.swath, "polarisation": m.polarisation,
                              "file": m.measurement, "calibration_file": m.calibration}
                             for m in self.measurements],
            "calibration": name, "lut": self.lut, "interpolation": "bilinear",
            "formula": f"DN^2 / {self.lut}^2" + (", 10 log10" if self.unit == "dB" else ""),
            "unit": self.unit, "unit_from": self.unit_from, "nodata": "DN 0",
            "calibrated_by": "seg_explainer", "calibrated_window": list(window),
            "measurement_size": [self.height, self.width], "gdal": gdal.__version__},
            sort_keys=True)}
        return Calibrated(path=path, measurements=self.measurements, record=record,
                          warnings=self.warnings)


def read_product(model, source, bands=None):
    """The Sentinel-1 product ``source`` ready to calibrate, or None when it is not one.

    Reads the manifest, annotation and calibration files and checks them; reads no pixel.
    :meth:`Product.calibrate` then calibrates all of it, or the part a run needs.

    Parameters
    ----------
    model : SegmentationModel
        Its ``n_channels`` and metadata (unit, :func:`input_unit`) decide bands and dB.
    source : str
        A ``.SAFE`` folder, its ``manifest.safe``, a ``.zip`` of it, or a
        ``SENTINEL1_CALIB:`` / ``SENTINEL1_DS:`` subdataset name.
    bands : sequence of int, optional
        1-based measurements of the chosen swath, in the manifest's order (GDAL's bands).

    Returns
    -------
    Product or None

    Raises
    ------
    InputError
        The product is incomplete, not GRD, or holds several polarisations and neither
        ``bands`` nor the model's channel count chooses among them (the message lists them).
    """
    if not is_sentinel1(source):
        return None
    gdal = gdal_module()
    manifest, calibration, selection = resolve_manifest(source)
    chosen = _choose(model, manifest, measurements(manifest), selection, bands)
    slc = [m for m in chosen if m.product_type == "SLC"]
    if slc:
        raise InputError("INPUT: the Sentinel-1 product is SLC (complex, in slant range); the "
                         "plugin reads GRD products. Give a GRD product, or a GeoTIFF made "
                         "from the SLC (e.g. SNAP's Calibration, Deburst and Terrain "
                         "Correction).")
    asked = calibration
    calibration = calibration if calibration in CALIBRATIONS else "SIGMA0"
    lut = CALIBRATIONS[calibration]
    unit, why = input_unit(model)
    try:
        ds = gdal.Open(chosen[0].measurement)
        width, height = ds.RasterXSize, ds.RasterYSize
        ds = None
    except RuntimeError as exc:
        raise InputError(f"INPUT: GDAL cannot open the product's measurement "
                         f"{chosen[0].measurement}: {exc}") from None
    for m in chosen:
        _lut(m.calibration, lut)          # read and checked here, not in GDAL's reading thread
    gcps = _gcps(chosen[0])
    if len(gcps) < 3:
        raise InputError(f"INPUT: the annotation {chosen[0].annotation} has {len(gcps)} "
                         "geolocation grid point(s); at least 3 are needed to place the "
                         "product on the map. The product is damaged; download it again.")
    name = CALIBRATION_NAMES[calibration]
    which = ", ".join(f"{m.swath} {m.polarisation}" for m in chosen)
    warnings = [f"INPUT is a Sentinel-1 product: {which} "
                f"calibrated to {name} ({'dB' if unit == 'dB' else 'linear'}, as {why} says) "
                f"from its {lut} LUT; the outputs record it (sentinel1)."]
    if asked == "UNCALIB":
        warnings.append("INPUT names the UNCALIB subdataset; the model is given calibrated "
                        f"{name} all the same, since it takes calibrated backscatter.")
    return Product(source=str(source), manifest=manifest, measurements=tuple(chosen),
                   width=width, height=height, gcps=tuple(gcps), calibration=calibration,
                   unit=unit, unit_from=why, warnings=tuple(warnings))


def calibrated_source(model, source, bands=None, window=None):
    """The Sentinel-1 product ``source`` as calibrated bands, or None when it is not one.

    :func:`read_product` then :meth:`Product.calibrate`: ``window``
    ``(row0, col0, height, width)`` of the product's lines and pixels, default all of it.

    Returns
    -------
    Calibrated or None
    """
    product = read_product(model, source, bands)
    return None if product is None else product.calibrate(window)
