"""A whole explanation or segmentation run on a raster file, without QGIS.

The Processing algorithms are parameter parsing plus one call here; a plain Python script
gets the same run::

    from seg_explainer.core import SegmentationModel
    from seg_explainer.core.job import explain_to_files

    model = SegmentationModel.load("oil_unet.onnx")
    run = explain_to_files(model, "scene.tif", region_wkb, "oil", "shap",
                           outputs={"excitation": "exc.tif", "cells": "cells.gpkg"})
    run.summary          # prediction, base value, sum of contributions, evaluations

Reading (:func:`read_job`): the explanation window around the region on the raster's own
pixel grid, its bands, the region's pixel mask, nodata. Checking: every input that cannot work
is an :class:`~.errors.InputError` naming the Processing parameter to change. Writing
(:func:`write_outputs`): rasters, cells and report under temporary names, renamed together
(:class:`~.outputs.OutputSet`), each recording the run's metadata (:func:`run_metadata`).
"""

import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .batching import check_cancel
from .errors import ExplanationCancelled, InputError
from .outputs import (OutputSet, check_destinations, check_writable, is_disk_full,
                      output_failure)

__all__ = ["EXPLAIN_OUTPUTS", "Faithfulness", "Job", "JobRun", "NODATA", "OpenedRaster",
           "check_job", "crop_message", "explain_to_files", "extent_window", "faithfulness",
           "opened_raster", "plugin_version", "read_job", "resolve_bands", "resolve_class",
           "run_metadata", "segment_to_files", "write_cells", "write_outputs"]

#: Nodata value of the explanation rasters.
NODATA = -9999.0
#: Output names of an explanation, in writing order.
EXPLAIN_OUTPUTS = ("excitation", "inhibition", "signed", "cells", "report")
#: Longest region outline written into the outputs' metadata as WKT; longer ones are
#: recorded by their SHA-256 only.
MAX_REGION_WKT = 32 * 1024
_PLUGIN_DIR = Path(__file__).resolve().parent.parent


def plugin_version():
    """The plugin's version (metadata.txt), recorded in every output."""
    try:
        for line in (_PLUGIN_DIR / "metadata.txt").read_text().splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def resolve_bands(bands, n_bands, n_channels=None):
    """The 1-based raster bands fed to the model: ``bands``, or all of them.

    Raises :class:`~.errors.InputError` (``BANDS: ...``) for a band the raster lacks, or a
    count that is not the model's channel count ``n_channels`` (when it is known).
    """
    bands = [int(b) for b in bands] if bands else list(range(1, n_bands + 1))
    if any(b < 1 or b > n_bands for b in bands):
        raise InputError(f"BANDS: the raster has bands 1 to {n_bands}; {bands} asks for "
                         "others.")
    if n_channels is not None and len(bands) != n_channels:
        raise InputError(
            f"BANDS: the model takes {n_channels} channel(s) but {len(bands)} band(s) "
            f"were given (the raster has {n_bands}). Choose {n_channels} band(s) "
            "in model-channel order with BANDS.")
    return bands


def resolve_class(text, class_names, log=None):
    """Index of the class named (or numbered) ``text``, case-insensitive; InputError if none.

    A name wins over an index: with classes ``["1", "0"]``, ``"1"`` is class 0. When ``text``
    is a class's name and also the index of another class, ``log("warning", ...)`` is told
    which was chosen and how to ask for the other.
    """
    text = str(text if text is not None else "").strip()
    number = int(text) if text.isascii() and text.isdigit() else None     # not "²"
    lowered = [c.lower() for c in class_names]
    if text in class_names:
        index = list(class_names).index(text)
    elif text.lower() in lowered:
        index = lowered.index(text.lower())
    elif number is not None and number < len(class_names):
        return number
    else:
        raise InputError(
            f"CLASS: the model has no class '{text}'. Its classes are: "
            + ", ".join(f"{i} = {c}" for i, c in enumerate(class_names))
            + ". Give one of these names or indices.")
    if number is not None and number < len(class_names) and number != index:
        _say(log, "warning",
             f"CLASS '{text}' is the name of class {index} and also the index of class "
             f"{number} ('{class_names[number]}'); the class named '{text}' (index "
             f"{index}) is explained. For the other, give its name "
             f"'{class_names[number]}'.")
    return index


@dataclass(frozen=True, eq=False)
class Job:
    """What an explanation reads from a raster.

    Attributes
    ----------
    source : str
        The raster file.
    bands : tuple of int
        1-based bands in model-channel order.
    info : RasterInfo
    window : Window
        The explanation window on the raster's pixel grid.
    geotransform : tuple
        The window's geotransform.
    image : ndarray, shape (H, W, C), float32
        The window's pixels (NaN = nodata).
    mask : ndarray of bool, shape (H, W)
        The region's pixels, nodata removed.
    nodata : ndarray of bool, shape (H, W)
        Pixels with no valid band.
    roi_wkb : bytes
        The region (WKB, in the raster's CRS).
    warnings : tuple of str
        What the user should know (region crossing the raster's edge, geographic CRS...).
    recorded : dict
        What the outputs record about how the raster was read (``complex_bands``, ``warp``).
    """

    source: str
    bands: tuple
    info: object
    window: object
    geotransform: tuple
    image: np.ndarray
    mask: np.ndarray
    nodata: np.ndarray
    roi_wkb: bytes
    warnings: tuple = ()
    recorded: dict = field(default_factory=dict)


def read_job(model, source, roi_wkb, *, bands=None, window=None):
    """Read the explanation window around a region and rasterise the region.

    Parameters
    ----------
    model : SegmentationModel
        Its ``n_channels``, ``fixed_size`` and ``tile_size`` decide bands and window.
    source : str
        A raster GDAL can read, north-up, with a CRS; or georeferenced by GCPs or RPCs only
        (then warped on the fly, :func:`~.georef.gridded_source`); or a Sentinel-1 product
        (SAFE folder, manifest.safe, zip, subdataset name), calibrated first, only around the
        window read (:func:`opened_raster`; ``bands`` then chooses its polarisations).
    roi_wkb : bytes
        The region of interest (polygons or points) in the raster's CRS (for a GCP raster,
        the GCPs' CRS, as QGIS shows the layer). A region across the antimeridian of a
        geographic raster is taken modulo 360 degrees; points outside the raster are left
        out with a warning.
    bands : sequence of int, optional
        1-based bands in model-channel order; default all.
    window : int, optional
        Window edge in pixels; default automatic: the region plus the model's context on
        each side, at most its tile size (:func:`~.region.explanation_window_edge`).

    Returns
    -------
    Job

    Raises
    ------
    InputError
        For every input that cannot work, naming the parameter to change.
    """
    def needs(opened):        # a Sentinel-1 product is calibrated around this window only
        win = _place(model, opened, roi_wkb, window).window
        return win.row0, win.col0, win.height, win.width

    with opened_raster(model, source, bands, needs=needs) as opened:
        return _read_grid(model, source, opened, roi_wkb, window)


@dataclass(frozen=True, eq=False)
class OpenedRaster:
    """A raster as the engine reads it (:func:`opened_raster`).

    Attributes
    ----------
    grid : Gridded
        What to read (``grid.path``): the raster itself, a warped VRT of it, or a Sentinel-1
        product's calibrated bands (warped; opened with ``needs``, only the part the run reads
        is calibrated, nodata beyond); ``grid.to_grid`` brings a region to its grid.
    bands : list of int or None
        The bands of ``grid.path`` to read (None: all; a Sentinel-1 product's ``bands`` have
        already chosen its polarisations).
    warnings : tuple of str
        What the user should know about how it is read (calibration, warp).
    record : dict
        What the outputs record about it (``sentinel1``, ``warp``).
    """

    grid: object
    bands: object
    warnings: tuple = ()
    record: dict = field(default_factory=dict)


@contextmanager
def opened_raster(model, source, bands=None, *, needs=None):
    """The raster ``source`` as the engine reads it, for the length of a ``with`` block.

    The one way every run opens its INPUT (:func:`read_job`, :func:`segment_to_files`): a
    Sentinel-1 product (SAFE folder, manifest.safe, zip, subdataset name) is calibrated first
    (:func:`~.sentinel1.read_product`; ``bands`` then choose its polarisations), and a
    raster georeferenced only by GCPs or RPCs is warped on the fly to a projected grid
    (:func:`~.georef.gridded_source`). Yields an :class:`OpenedRaster`; its temporary files and
    warped VRT are removed when the block ends.

    ``needs`` tells which part of the grid the run reads: called with an
    :class:`OpenedRaster` of the product's whole warped grid before any pixel is calibrated
    (computed from the product's size and GCPs alone), it returns the window
    ``(row0, col0, height, width)`` the run reads on that grid, or None for all of it. The
    product is then calibrated only where the warp of that window reads
    (:func:`~.georef.source_window`, with a margin) and warped onto the same grid: the window
    holds the pixels the whole calibrated product would give, the grid beyond the calibrated
    part is nodata. Without ``needs`` the whole product is calibrated. Other rasters are read
    lazily anyway; ``needs`` is not called for them.
    """
    import uuid
    from contextlib import ExitStack

    from .geoio import gdal_module
    from .georef import gridded_source, source_window
    from .sentinel1 import read_product

    product = read_product(model, source, bands)   # a Sentinel-1 product: None otherwise
    with ExitStack() as stack:
        if product is None:
            grid = gridded_source(source)              # GCP/RPC only: warped on the fly
            stack.callback(grid.close)
            yield OpenedRaster(grid=grid, bands=bands, warnings=tuple(grid.warnings),
                               record=dict(grid.record))
            return
        whole = part = None
        if needs is not None:
            shape = product.write_shape(f"/vsimem/segx-s1-shape-{uuid.uuid4().hex}.vrt")
            stack.callback(gdal_module().Unlink, shape)
            whole = gridded_source(shape)              # the whole grid; no pixel read
            stack.callback(whole.close)
            window = needs(OpenedRaster(grid=whole, bands=None, warnings=product.warnings))
            if window is not None:
                part = source_window(shape, whole, window)
        s1 = product.calibrate(part)
        stack.callback(s1.close)
        grid = gridded_source(s1.path, onto=whole if part else None)
        stack.callback(grid.close)
        yield OpenedRaster(grid=grid, bands=None, warnings=s1.warnings + tuple(grid.warnings),
                           record=dict(grid.record, **s1.record))


@dataclass(frozen=True, eq=False)
class _Placed:
    """Where an explanation lies on the grid read (:func:`_place`), before any pixel is read:
    the grid's ``info``, the ``bands`` read, the ``region`` (on the grid), its part inside the
    raster (``clipped``), the explanation ``window`` and the ``warnings`` so far."""

    info: object
    bands: list
    region: object
    clipped: object
    window: object
    warnings: list


def region_geometry(wkb):
    """The shapely geometry of a region's WKB, or an :class:`~.errors.InputError` naming what
    is wrong with it: unreadable bytes, no geometry (empty), vertices that are not finite
    numbers."""
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    try:
        geom = shapely.from_wkb(wkb)
    except Exception as exc:   # shapely.errors.GEOSException (or TypeError): not WKB
        raise InputError(f"ROI: the region's geometry cannot be read ({str(exc)[:200]}). Give "
                         "a polygon or point geometry.") from None
    if geom is None or geom.is_empty:
        raise InputError("ROI: the region's geometry is empty. Draw a polygon or place points.")
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise InputError("ROI: the region has vertices that are not numbers (NaN or infinite "
                         "coordinates). Fix the geometry (Vector > Geometry Tools > Fix "
                         "Geometries) or draw it again.")
    return geom


def _place(model, opened, roi_wkb, window):
    """The region and the explanation window on the grid of ``opened`` (:class:`_Placed`);
    reads no pixel, so :func:`read_job` also asks it which part of a Sentinel-1 product to
    calibrate."""
    from .georef import points_on_raster, unwrap_antimeridian
    from .geoio import raster_info
    from .region import explanation_window_edge, pixel_bounds, place_window
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    grid = opened.grid
    info = raster_info(grid.path)
    if not info.crs_wkt:
        raise InputError("INPUT: the raster has no coordinate reference system. Assign one so "
                         "the results can be georeferenced.")
    bands = resolve_bands(opened.bands, info.n_bands, model.n_channels)
    fixed = model.fixed_size
    if fixed and window and (window, window) != tuple(fixed):
        raise InputError(f"WINDOW: the model only accepts {fixed[0]} x {fixed[1]} inputs; set "
                         f"WINDOW to {fixed[0]} (or 0).")
    gt = info.geotransform
    if gt[2] != 0 or gt[4] != 0:
        raise InputError("INPUT: the raster's geotransform is rotated. Warp it to a north-up "
                         "grid (Raster > Projections > Warp) first.")
    warnings = list(opened.warnings)
    region_geometry(roi_wkb)           # readable, finite, not empty: else the message
    region = shapely.from_wkb(grid.to_grid(roi_wkb))
    x0, dx, _, y0, _, dy = gt
    extent = shapely.box(x0, y0 + dy * info.height, x0 + dx * info.width, y0)
    region, note = unwrap_antimeridian(region, extent, _is_geographic(info.crs_wkt))
    if note:
        warnings.append(note)
    points = region.geom_type in ("Point", "MultiPoint")
    if points:
        region, n_outside = points_on_raster(region, gt, info.width, info.height)
        if n_outside:
            warnings.append(f"{n_outside} of the region's points lie outside the raster and "
                            "are left out.")
    clipped = region if points else region.intersection(extent)
    if clipped.is_empty or not clipped.intersects(extent):
        raise InputError("ROI: the region of interest lies outside the raster. Draw it on the "
                         "raster, or check the layers' coordinate reference systems.")
    if not points and clipped.area < region.area * (1 - 1e-9):
        warnings.append("The region crosses the raster's edge; only its part inside the raster "
                        "is explained.")
    bounds = pixel_bounds(clipped, gt)
    extent_px = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
    size = explanation_window_edge(window, fixed, model.tile_size, extent_px,
                                   getattr(model, "context", None))
    if window and not fixed:
        automatic = explanation_window_edge(None, fixed, model.tile_size, extent_px,
                                            getattr(model, "context", None))
        side = max(info.height, info.width)
        largest = max(2 * side, automatic)
        if size > largest:
            raise InputError(
                f"WINDOW: {size} px is more than twice the raster's larger side ({side} "
                f"px) and more than the automatic window ({automatic} px): most of it would be "
                "nodata, and each model call would cost as much as the whole window. Use at "
                f"most {largest} px, or 0 for the automatic window.")
    win = place_window(bounds, size, info.height, info.width)
    if _is_geographic(info.crs_wkt):
        warnings.append(
            "The raster's CRS is geographic (degrees). The window, the region and the cells are "
            "on the raster's own pixel grid, so cells are regular in pixels, not on the ground "
            "(away from the equator a pixel is narrower east-west than north-south). Reproject "
            "the raster to a projected CRS for cells of equal ground size.")
    if size > info.height or size > info.width:
        warnings.append(
            f"The {size} x {size} px window is larger than the raster ({info.height} x "
            f"{info.width} px); the part outside the raster is nodata, shown to the model as "
            "the image's mean.")
    return _Placed(info=info, bands=bands, region=region, clipped=clipped, window=win,
                   warnings=warnings)


def _read_grid(model, source, opened, roi_wkb, window):
    from .baselines import screening_message
    from .geoio import read_window, window_geotransform
    from .region import region_mask
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    placed = _place(model, opened, roi_wkb, window)
    info, bands, win, warnings = placed.info, placed.bands, placed.window, placed.warnings
    clipped, gt = placed.clipped, info.geotransform
    screened, recorded = {}, dict(opened.record)
    complex_as, notes = _band_conversions(model, info, bands, recorded)
    image = read_window(opened.grid.path, win.row0, win.col0, win.height, win.width, bands,
                        screened=screened, complex_as=complex_as)
    screening = screening_message(screened["non_finite"], screened["absurd"])
    if screening:
        warnings.append(screening)
    warnings.extend(notes)
    warnings.extend(_range_notes(model, image))
    warnings.extend(_resolution_notes(model, info))
    empty = [b for i, b in enumerate(bands) if np.isnan(image[..., i]).all()]
    if empty and len(empty) < len(bands):
        raise InputError(f"INPUT: band(s) {empty} hold only nodata in the explanation window "
                         f"(rows {win.row0} to {win.row0 + win.height}, columns {win.col0} to "
                         f"{win.col0 + win.width}), so the model would see no data there. "
                         "Choose bands with data there (BANDS), or a region where every band "
                         "has data.")
    nodata = np.isnan(image).all(axis=-1)
    partial = np.isnan(image).any(axis=-1) & ~nodata
    mask = region_mask(clipped, gt, win)
    if (mask & partial).any():
        warnings.append(f"{int((mask & partial).sum())} region pixel(s) are nodata in some "
                        "bands only; they are left out of the region score and, as nodata, "
                        "shown to the model as the window's band means.")
        mask &= ~partial
    if (mask & nodata).any():
        warnings.append(f"{int((mask & nodata).sum())} region pixel(s) are nodata and are left "
                        "out of the region score.")
        mask &= ~nodata
    if not mask.any():
        raise InputError("ROI: every pixel of the region is nodata. Draw the region over valid "
                         "image pixels.")
    if nodata.all():
        raise InputError("INPUT: the explanation window holds only nodata.")
    return Job(source=str(source), bands=tuple(bands), info=info, window=win,
               geotransform=window_geotransform(gt, win.row0, win.col0), image=image,
               mask=mask, nodata=nodata, roi_wkb=bytes(shapely.to_wkb(placed.region)),
               warnings=tuple(warnings),
               recorded=recorded)


#: Share of the window's values outside the model's min-max input range that is warned of.
OUTSIDE_SHARE = 0.2


def _range_notes(model, image, what="the window's values"):
    """Warnings when ``what`` (``image``'s values) do not look like what the model takes: many
    values outside its min-max input range, or backscatter in the other unit (linear values,
    all in [0, 2), for a model in dB; mostly negative values for a model in linear units)."""
    from .sentinel1 import UNIT_KEY, input_unit

    finite = image[np.isfinite(image)]
    if not finite.size:
        return []
    notes = []
    scaling = getattr(getattr(model, "metadata", None), "input_scaling", None)
    if getattr(scaling, "type", None) == "minmax" and scaling.min is not None \
            and scaling.max is not None:
        low, high = float(scaling.min), float(scaling.max)
        share = float(np.mean((finite < low) | (finite > high)))
        if share > OUTSIDE_SHARE:
            clips = ", which clips them" if getattr(scaling, "clip", False) else ""
            notes.append(f"{share:.0%} of {what} lie outside the model's input "
                         f"range, {low:g} to {high:g} (its metadata's min-max scaling"
                         f"{clips}); the raster may not "
                         "be in the unit the model was trained on (dB or linear backscatter, "
                         "integers scaled by 100...). Check the raster's unit.")
    unit, _ = input_unit(model)
    raw = getattr(getattr(model, "metadata", None), "raw", None) or {}
    said_linear = UNIT_KEY in raw or (getattr(scaling, "type", None) == "minmax"
                                      and scaling.min is not None and float(scaling.min) >= 0)
    if unit == "dB" and finite.min() >= 0 and finite.max() < 2 and finite.max() > 0:
        notes.append(f"{what[0].upper()}{what[1:]} all lie in [0, 2), like linear "
                     "backscatter, but the model takes dB: convert the raster (10 x log10) if it "
                     "is linear.")
    elif unit == "linear" and said_linear and float(np.mean(finite < 0)) > 0.5:
        notes.append(f"Most of {what} are negative, like backscatter in dB, but the model "
                     "takes linear values: convert the raster (10^(dB / 10)) if it is in dB.")
    return notes


def _resolution_notes(model, info):
    """A warning when the raster's pixels (in a projected CRS) are more than twice as large or
    small as the resolution the model's metadata says it was trained at."""
    from osgeo import osr

    trained_cm = getattr(getattr(model, "metadata", None), "resolution_cm", None)
    if not trained_cm or not info.crs_wkt:
        return []
    srs = osr.SpatialReference()
    try:
        srs.ImportFromWkt(info.crs_wkt)
    except RuntimeError:
        return []
    if not srs.IsProjected():
        return []
    gt = info.geotransform
    pixel_m = math.hypot(gt[1], gt[4]) * srs.GetLinearUnits()
    trained_m = float(trained_cm) / 100.0
    if not pixel_m or 0.5 <= pixel_m / trained_m <= 2.0:
        return []
    return [f"The raster's pixels are {pixel_m:.3g} m wide, but the model's metadata says it "
            f"was trained at {trained_m:.3g} m: features look {pixel_m / trained_m:.2g} times "
            f"{'smaller' if pixel_m > trained_m else 'larger'} to it than in training. "
            "Resample the raster to the model's resolution if its predictions look wrong."]


def _band_conversions(model, info, bands, recorded):
    """``(complex_as, warnings)``: what the model is given for the complex ``bands`` of the
    raster ``info`` (:func:`~.georef.complex_conversion`), and the notes on complex and scaled
    bands (GDAL scale/offset, applied by :func:`~.geoio.read_window`); records
    ``complex_bands`` and ``band_scaling`` in ``recorded`` when there are any."""
    from .geoio import is_complex
    from .georef import COMPLEX_TEXT, complex_conversion

    notes = []
    scaled = {b: info.scaling[b - 1] for b in bands
              if info.scaling and tuple(info.scaling[b - 1]) != (1.0, 0.0)}
    if scaled:
        recorded["band_scaling"] = json.dumps({str(b): {"scale": s, "offset": o}
                                               for b, (s, o) in scaled.items()})
        terms = ", ".join(f"band {b}: raw x {s:g} + {o:g}" for b, (s, o) in scaled.items())
        notes.append(f"The raster stores scaled values ({terms}); the model is given the "
                     "scaled values, as QGIS shows them. The outputs record it (band_scaling).")
    complex_bands = [b for b in bands if is_complex(info.dtypes[b - 1])]
    if not complex_bands:
        return "intensity", notes
    complex_as, why = complex_conversion(model)
    recorded["complex_bands"] = json.dumps({"bands": complex_bands, "as": complex_as})
    notes.append(
        f"Band(s) {complex_bands} are complex ({info.dtypes[complex_bands[0] - 1]}); the "
        f"model is given their {complex_as} ({COMPLEX_TEXT[complex_as]}), {why}. The "
        "outputs record it (complex_bands).")
    return complex_as, notes


def _is_geographic(crs_wkt):
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        srs.ImportFromWkt(crs_wkt)
    except RuntimeError:
        return False
    return bool(srs.IsGeographic())


def check_job(job, method, params):
    """Refuse parameters that cannot work on this job's window (InputError).

    SHAP needs at least two cells in the window; occlusion's finest cells must be at least
    two pixels wide (its offsets move the grid by half a cell).
    """
    window = job.window
    if method == "shap":
        from .cells import auto_cell_size, hexagon_grid

        hex_size = params["hex_size"]
        if hex_size is None:          # automatic (explain_region's rule)
            hex_size = auto_cell_size(np.count_nonzero(job.mask))
        if hexagon_grid(window.height, window.width, hex_size).n_cells < 2:
            raise InputError(
                f"HEX_SIZE: the {window.height} x {window.width} px window holds a single "
                f"hexagon of circumradius {hex_size:g} px, so no part of the image can be "
                f"compared with another. Lower HEX_SIZE (at most {max(2, window.width // 4)}) "
                "or raise WINDOW.")
    if method == "occlusion":
        side = min(window.height, window.width)
        depth = params["max_depth"]
        if side / 2 ** depth < 2:
            deepest = max(1, int(np.floor(np.log2(side / 2))))
            raise InputError(
                f"MAX_DEPTH: {depth} levels cut the {window.height} x {window.width} px window "
                f"into cells of {side / 2 ** depth:.2g} px, and the offsets move the grid by "
                f"half a cell, which must be at least one pixel. Use MAX_DEPTH {deepest} or "
                "less, or raise WINDOW.")


def crop_message(record, window):
    """The log line for the engine's receptive-field crop record (``details["crop"]``).

    ``window`` is the explanation window on the raster grid; the crop's rows and columns are
    given in the window's own pixels and in the raster's.
    """
    crop = record.get("window")
    if crop is None:
        return (f"Receptive-field crop: none, the whole {window.height} x {window.width} px "
                f"window was evaluated ({record.get('reason')}).")
    r0, r1, c0, c1 = (int(v) for v in crop)  # half-open
    return (f"Receptive-field crop: {r1 - r0} x {c1 - c0} px of the {window.height} x "
            f"{window.width} px window, its rows {r0} to {r1 - 1} and columns {c0} to {c1 - 1} "
            f"(raster rows {window.row0 + r0} to {window.row0 + r1 - 1}, columns "
            f"{window.col0 + c0} to {window.col0 + c1 - 1}), margin {record.get('margin')} px "
            f"around the region; largest difference from the whole window's prediction "
            f"{record.get('max_difference'):.2g} (tolerance {record.get('tolerance'):g}); "
            f"{record.get('n_evaluations')} images evaluated to find it.")


def run_metadata(model, class_name, method, params, window=None, source=None, bands=None,
                 roi_wkb=None):
    """What every output records, enough to run it again: model file and hash, input raster,
    bands, region (WKT in the raster's CRS), window, class, method, parameters, seed, version."""
    meta = {"seg_explainer_version": plugin_version(), "model_file": str(model.path),
            "model_sha256": model.sha256, "class": class_name, "method": method,
            "parameters": json.dumps(params, sort_keys=True, default=str),
            "seed": str(params.get("seed"))}
    if window is not None:
        meta["window"] = json.dumps([window.row0, window.col0, window.height, window.width])
    if source is not None:
        meta["input_raster"] = str(source)
    if bands is not None:
        meta["bands"] = json.dumps([int(b) for b in bands])
    if roi_wkb is not None:
        from .shapely_geos import import_shapely

        shapely = import_shapely()
        wkt = shapely.to_wkt(shapely.from_wkb(roi_wkb), rounding_precision=-1)  # exact
        meta["region_sha256"] = hashlib.sha256(roi_wkb).hexdigest()
        if len(wkt) <= MAX_REGION_WKT:
            meta["region_wkt"] = wkt
    return meta


def write_cells(path, cells, geotransform, crs_wkt, metadata):
    """The explanation's cells (:class:`~.explain.Cell`) as polygons in map coordinates, with
    value, standard error (when known), depth (occlusion) and rank (1 = strongest excitation)."""
    from .shapely_geos import import_shapely

    import_shapely()
    from shapely import affinity

    from .geoio import write_polygons

    x0, dx, _, y0, _, dy = geotransform
    cells = list(cells)
    polys = [affinity.affine_transform(c.polygon, [dx, 0, 0, dy, x0, y0]) for c in cells]
    values = np.array([float(np.ravel(c.value)[0]) for c in cells])
    order = np.argsort(-values, kind="stable")
    rank = np.empty(len(cells), dtype=np.int64)
    rank[order] = np.arange(1, len(cells) + 1)
    fields = {"cell_id": [int(c.id) for c in cells], "value": values.tolist(),
              "rank": rank.tolist()}
    errors = [c.standard_error for c in cells]
    if any(e is not None for e in errors):
        fields["std_error"] = [None if e is None else float(np.ravel(e)[0]) for e in errors]
    if any(c.depth is not None for c in cells):
        fields["depth"] = [int(c.depth or 0) for c in cells]
    return write_polygons(path, "cells", polys, fields, crs_wkt, metadata=metadata)


def write_outputs(job, result, outputs, metadata, *, report_title="", summary=(),
                  cancel=None):
    """Write the explanation's outputs together: all of them, or none.

    Parameters
    ----------
    job : Job
    result : Explanation
    outputs : dict
        ``{name: path}`` with names from :data:`EXPLAIN_OUTPUTS`; "cells" is skipped for a
        result without cells (RISE).
    metadata : dict
        Recorded in every file (:func:`run_metadata`); each raster adds ``output``.
    report_title, summary
        Title and lines of the report figure.
    cancel : callable() -> bool, optional
        Checked before each file and before the files are renamed into place.

    Returns
    -------
    dict
        ``{name: path}`` of the files written.

    Raises
    ------
    OutputError
        A file could not be written (disk full, permissions, driver): nothing was written.
    ExplanationCancelled
        Nothing was written.
    """
    from .geoio import write_geotiff

    unknown = set(outputs) - set(EXPLAIN_OUTPUTS)
    if unknown:
        raise TypeError(f"unknown output(s) {sorted(unknown)}; known: {EXPLAIN_OUTPUTS}")
    rasters = {"excitation": result.excitation, "inhibition": result.inhibition,
               "signed": result.signed}
    written = {}
    with OutputSet() as files:
        for name in EXPLAIN_OUTPUTS:
            path = outputs.get(name)
            if not path:
                continue
            check_cancel(cancel)
            try:
                tmp = files.temporary(path)
                if name in rasters:
                    data = np.where(job.nodata, NODATA, rasters[name]).astype(np.float32)
                    write_geotiff(tmp, data, job.geotransform, job.info.crs_wkt, nodata=NODATA,
                                  band_names=[name], metadata=dict(metadata, output=name))
                elif name == "cells":
                    write_cells(tmp, result.cells, job.geotransform, job.info.crs_wkt,
                                metadata)
                else:
                    from .report import write_report

                    write_report(tmp, job.image[..., 0], job.mask,
                                 result.prediction[..., result.classes[0]], result.signed,
                                 title=report_title, lines=list(summary),
                                 cells=[c.polygon for c in result.cells] or None)
            except ExplanationCancelled:
                raise
            except Exception as exc:
                failure = output_failure(exc, name.upper())
                if failure is None:
                    raise                       # a bug, not a writing failure
                raise failure from None
            written[name] = path
        check_cancel(cancel)
        try:
            files.commit()
        except Exception as exc:
            failure = output_failure(exc)
            if failure is None:
                raise
            raise failure from None
    return written


@dataclass(frozen=True, eq=False)
class JobRun:
    """What :func:`explain_to_files` did.

    Attributes
    ----------
    job : Job
    result : Explanation
    class_name : str
    metadata : dict
        What every output records.
    outputs : dict
        ``{name: path}`` of the files written.
    prediction, base_value, sum_contributions : float
        For the first explained class.
    summary : tuple of str
        The same, as the lines the report and the log show.
    faithfulness : Faithfulness or None
        When measured (``faithful=True``).
    """

    job: Job
    result: object
    class_name: str
    metadata: dict
    outputs: dict = field(default_factory=dict)
    prediction: float = float("nan")
    base_value: float = float("nan")
    sum_contributions: float = float("nan")
    summary: tuple = ()
    faithfulness: object = None


def _say(log, kind, text):
    if log is not None:
        log(kind, text)


#: Steps of the deletion and insertion curves the dock asks :func:`faithfulness` for.
FAITHFULNESS_STEPS = 20


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion AUCs of a signed map and of a random ordering (same seed, same
    steps): a faithful map has the lower deletion and the higher insertion AUC."""

    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    n_evaluations: int
    seconds: float = 0.0

    def line(self):
        """One line for the report and the summary."""
        return (f"deletion AUC {self.deletion_auc:.3f} (random {self.random_deletion_auc:.3f}),"
                f" insertion AUC {self.insertion_auc:.3f} (random "
                f"{self.random_insertion_auc:.3f})")


def faithfulness(model, job, result, params, *, n_steps=FAITHFULNESS_STEPS, seed=0,
                 progress=None, cancel=None):
    """Deletion and insertion curves (Petsiuk et al. 2018) of ``result.signed`` over the
    job's window, against a random ordering of the same pixels.

    Removed pixels take the run's baseline (``params["baseline"]``; the static kinds, else the
    image mean); the score is the class probability averaged over the region. Returns a
    :class:`Faithfulness`.
    """
    from .baselines import STATIC_KINDS, baseline_image, composite, fill_nodata
    from .batching import batch_size_for
    from .metrics import deletion_insertion

    started = time.perf_counter()
    image = job.image if job.image.ndim == 3 else job.image[..., None]
    valid = np.all(np.isfinite(image), axis=2)
    filled = fill_nodata(image, valid)
    kind = params.get("baseline", "mean")
    kind = kind if kind in STATIC_KINDS else "mean"
    base = baseline_image(filled, kind, value=params.get("baseline_value"),
                          sigma=params.get("blur_sigma", 8.0), valid_mask=valid)
    idx = np.flatnonzero(np.asarray(result.region_mask).ravel())
    cls = result.classes[0]
    batch = batch_size_for(params.get("batch_size"), *filled.shape[:2])

    def score(masks):
        probs = np.asarray(model.predict(composite(filled, base, masks), batch_size=batch))
        n = probs.shape[0]
        return probs.reshape(n, -1, probs.shape[-1])[:, idx, cls].mean(axis=1)

    signed = np.nan_to_num(np.asarray(result.signed, dtype=np.float64))
    random_map = np.random.default_rng(seed).random(signed.shape)

    def part(offset):
        return None if progress is None else (lambda f: progress(0.5 * (offset + f)))

    ours = deletion_insertion(score, signed, n_steps=n_steps, batch_size=batch,
                              progress=part(0), cancel=cancel)
    chance = deletion_insertion(score, random_map, n_steps=n_steps, batch_size=batch,
                                progress=part(1), cancel=cancel)
    return Faithfulness(float(ours.deletion_auc), float(ours.insertion_auc),
                        float(chance.deletion_auc), float(chance.insertion_auc),
                        ours.n_evaluations + chance.n_evaluations,
                        time.perf_counter() - started)


def explain_to_files(model, source, roi_wkb, class_name, method, *, bands=None, window=None,
                     outputs=None, report_title=None, log=None, progress=None, cancel=None,
                     faithfulness_steps=0, **params):
    """Explain the model's prediction over a region of a raster and write the outputs.

    Parameters
    ----------
    model : SegmentationModel
    source : str
        The raster file.
    roi_wkb : bytes
        The region of interest in the raster's CRS.
    class_name : str
        Name or index of the class to explain.
    method : {"shap", "rise", "occlusion"}
    bands, window
        See :func:`read_job`.
    outputs : dict, optional
        ``{name: path}``, names from :data:`EXPLAIN_OUTPUTS`; nothing is written without it.
    report_title : str or callable(class name) -> str, optional
    log : callable(kind, text), optional
        Told ``("info", ...)`` and ``("warning", ...)`` lines for the user.
    progress, cancel
        See :func:`~.explain.explain_region`.
    faithfulness_steps : int
        Steps of the deletion and insertion curves of :func:`faithfulness`, measured after
        the explanation (0 = not measured; recorded in the metadata, the report and
        ``JobRun.faithfulness``).
    **params
        :func:`~.explain.explain_region`'s parameters (:mod:`.parameters`).

    Returns
    -------
    JobRun

    Raises
    ------
    UserError
        Any input, model or output problem, with the fix.
    ExplanationCancelled
        Nothing was written.
    """
    from .explain import explain_region

    outputs = dict(outputs or {})
    check_destinations({name.upper(): path for name, path in outputs.items()},
                       {"INPUT": source, "MODEL": getattr(model, "path", None)})
    for name, path in outputs.items():
        if path:
            check_writable(path, name.upper())
    class_index = resolve_class(class_name, model.class_names, log)
    class_name = model.class_names[class_index]
    job = read_job(model, source, roi_wkb, bands=bands, window=window)
    auto_cells = method == "shap" and params.get("hex_size") is None
    if auto_cells:
        from .cells import auto_cell_size

        params["hex_size"] = auto_cell_size(np.count_nonzero(job.mask))
    check_job(job, method, dict(_declared_defaults(), **params))
    for warning in job.warnings:
        _say(log, "warning", warning)
    win = job.window
    auto = " (automatic: the region and the model's context)" \
        if not window and not model.fixed_size else ""
    _say(log, "info", f"Window of {win.height} x {win.width} px{auto} at row {win.row0}, "
                      f"column {win.col0}; region of {int(job.mask.sum())} px; class "
                      f"'{class_name}'")
    if auto_cells:
        _say(log, "info", f"Cells of {params['hex_size']:g} px (automatic: a fifth of the "
                          "region's diameter, 6 to 22 px)")
    adjusted_before = dict(getattr(model, "input_adjustments", None) or {})
    faithful = int(faithfulness_steps or 0) > 0
    share = 0.9 if faithful and progress is not None else 1.0
    result = explain_region(model, job.image, job.mask, [class_index], method,
                            progress=None if progress is None
                            else (lambda f: progress(share * f)),
                            cancel=cancel, **params)
    faith = None
    if faithful:
        faith = faithfulness(model, job, result, dict(_declared_defaults(), **params),
                             n_steps=int(faithfulness_steps), seed=params.get("seed") or 0,
                             cancel=cancel,
                             progress=None if progress is None
                             else (lambda f: progress(share + (1 - share) * f)))
        _say(log, "info", f"Faithfulness: {faith.line()}; {faith.n_evaluations} evaluations")
    _say_input_adjustments(model, adjusted_before, log)
    if "crop" in result.details:
        _say(log, "info", crop_message(result.details["crop"], win))
    # Every output records the crop settings, also when cropping is off (crop None).
    recorded = dict(result.params)
    recorded.setdefault("crop", None)
    recorded.setdefault("crop_multiple", params.get("crop_multiple",
                                                    _declared_defaults()["crop_multiple"]))
    full = float(np.ravel(result.full_value)[0])
    base = float(np.ravel(result.base_value)[0])
    total = float(np.ravel(result.contribution_total)[0])
    summary = (f"prediction {full:.4f}", f"base value {base:.4f}",
               f"sum of contributions {total:.4f}", f"{result.n_evaluations} evaluations")
    metadata = run_metadata(model, class_name, method, recorded, window=win, source=job.source,
                            bands=job.bands, roi_wkb=job.roi_wkb)
    metadata.update(job.recorded)
    if faith is not None:
        summary += (faith.line(),)
        metadata["faithfulness"] = json.dumps(
            {"deletion_auc": faith.deletion_auc, "insertion_auc": faith.insertion_auc,
             "random_deletion_auc": faith.random_deletion_auc,
             "random_insertion_auc": faith.random_insertion_auc,
             "n_steps": int(faithfulness_steps), "n_evaluations": faith.n_evaluations,
             "ordering": "signed map, high to low; random: uniform, seeded"}, sort_keys=True)
    if not result.cells:
        outputs.pop("cells", None)
    if callable(report_title):
        report_title = report_title(class_name)
    written = write_outputs(job, result, outputs, metadata, summary=summary, cancel=cancel,
                            report_title=report_title or f"{method}: class '{class_name}'")
    return JobRun(job=job, result=result, class_name=class_name, metadata=metadata,
                  outputs=written, prediction=full, base_value=base, sum_contributions=total,
                  summary=summary, faithfulness=faith)


def _say_input_adjustments(model, before, log):
    """Warn of the values the model's input type made the model change during this run
    (clipped or rounded; :class:`~.model.ModelInputWarning` says so only once per model)."""
    notes = getattr(model, "input_notes", None) or {}
    for kind, count in (getattr(model, "input_adjustments", None) or {}).items():
        added = count - before.get(kind, 0)
        if added:
            _say(log, "warning", f"{added} values given to the model in this run were {kind} "
                                 f"to fit its input type; the first time: {notes.get(kind, '')}")


def _declared_defaults():
    from .explain import DEFAULTS

    return DEFAULTS


def segment_to_files(model, source, probabilities, classes=None, *, bands=None, window=None,
                     extent=None, tile_size=None, overlap=None, batch_size=None, log=None,
                     progress=None, cancel=None):
    """Segment a raster (or a part of it) into probability and class GeoTIFFs, written
    together or not at all, recording the run's metadata.

    ``source`` is opened as every run opens it (:func:`opened_raster`): a raster georeferenced
    only by GCPs or RPCs is segmented on its grid warped on the fly (the outputs are on that
    grid and record the ``warp``), a Sentinel-1 product is calibrated first (``sentinel1``;
    with an ``extent`` or ``window``, only where its tiles read).
    ``probabilities`` and ``classes`` are the output paths (``classes`` optional). The part
    segmented is ``extent``, ``(xmin, ymin, xmax, ymax)`` in the raster's CRS (for a GCP raster
    or a product, the GCPs' CRS, as QGIS shows the layer), or a pixel ``window``
    ``(row0, col0, height, width)`` of the grid read; default the whole raster. ``log`` is
    told ``("warning", text)`` lines for the user (see :func:`explain_to_files`); the other
    parameters are :func:`~.tiling.segment_raster`'s. Returns its summary dict.
    """
    from .baselines import screening_message
    from .geoio import raster_info
    from .parameters import by_name
    from .region import window_edge
    from .tiling import segment_raster

    destinations = {"PROBABILITIES": probabilities, "CLASSES": classes}
    destinations = {k: v for k, v in destinations.items() if v}
    check_destinations(destinations, {"INPUT": source, "MODEL": getattr(model, "path", None)})
    for key, path in destinations.items():
        check_writable(path, key)
    batch_size = by_name("batch_size").check(batch_size)
    if tile_size is not None:
        tile_size = by_name("tile_size").check(tile_size)
    if overlap is not None:
        overlap = by_name("overlap").check(overlap)
    asked = window

    def part(opened):
        """The window of the grid segmented: ``extent``'s, or the window asked for."""
        return extent_window(opened, raster_info(opened.grid.path), extent) \
            if extent is not None else asked

    def needs(opened):        # a Sentinel-1 product is calibrated where the tiles read only
        if extent is None and asked is None:
            return None
        row0, col0, height, width = part(opened)
        # segment_raster's tiles: one tile hangs past the end of a side shorter than a tile
        tile = window_edge(tile_size, getattr(model, "fixed_size", None),
                           getattr(model, "tile_size", None))
        return row0, col0, max(height, tile), max(width, tile)

    with opened_raster(model, source, bands, needs=needs) as opened:
        info = raster_info(opened.grid.path)
        read_bands = resolve_bands(opened.bands, info.n_bands, model.n_channels)
        window = part(opened)
        recorded = dict(opened.record)
        complex_as, notes = _band_conversions(model, info, read_bands, recorded)
        notes += _range_notes(model, _value_sample(opened.grid.path, read_bands, window, info,
                                                   complex_as),
                              "the values of the raster (a sample of the part segmented)")
        notes += _resolution_notes(model, info)
        for warning in opened.warnings + tuple(notes):
            _say(log, "warning", warning)
        metadata = {"seg_explainer_version": plugin_version(), "model_file": str(model.path),
                    "model_sha256": model.sha256, "method": "segment",
                    "input_raster": str(source),
                    "parameters": json.dumps({"bands": list(bands) if bands else None,
                                              "window": list(window) if window else None,
                                              "tile_size": tile_size,
                                              "overlap": -1 if overlap is None else overlap},
                                             sort_keys=True)}
        metadata.update(recorded)
        with OutputSet() as files:
            tmp = {key: files.temporary(path) for key, path in destinations.items()}
            try:
                summary = segment_raster(
                    model, opened.grid.path, tmp["PROBABILITIES"], tmp.get("CLASSES"),
                    bands=read_bands, window=window, tile_size=tile_size, overlap=overlap,
                    batch_size=batch_size, metadata=metadata, complex_as=complex_as,
                    progress=progress, cancel=cancel)
                check_cancel(cancel)
                files.commit()
            except (OSError, RuntimeError) as exc:   # GDAL: RuntimeError
                if isinstance(exc, RuntimeError) and not is_disk_full(exc):
                    raise                          # not a writing failure: a bug
                raise output_failure(exc) from None
    screening = screening_message(
        summary["screened"]["non_finite"], summary["screened"]["absurd"],
        unit="pixel(s)", effect="are filled for the model with their tile's mean, and pixels "
                                "with no other valid band are nodata in the outputs")
    if screening:
        _say(log, "warning", screening)
    return summary


def _value_sample(path, bands, window, info, complex_as, edge=128):
    """Values of ``window`` (the whole raster when None) as the model is given them, for the
    unit checks: five ``edge`` px blocks (centre and the quarters' centres), (N, C)."""
    from .geoio import read_window

    row0, col0, height, width = window or (0, 0, info.height, info.width)
    blocks = []
    for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)):
        r = row0 + max(0, min(height - edge, int(fy * height) - edge // 2))
        c = col0 + max(0, min(width - edge, int(fx * width) - edge // 2))
        block = read_window(path, r, c, min(edge, height), min(edge, width), bands,
                            complex_as=complex_as)
        blocks.append(block.reshape(-1, block.shape[2]))
    return np.concatenate(blocks)


def extent_window(opened, info, extent):
    """The pixel window ``(row0, col0, height, width)`` of the grid read that covers
    ``extent`` (``(xmin, ymin, xmax, ymax)`` in the CRS regions are given in, brought to the
    grid by :meth:`~.georef.Gridded.to_grid`), clipped to the raster.

    ``opened`` is an :class:`OpenedRaster`, ``info`` its grid's
    :class:`~.geoio.RasterInfo`. Raises :class:`~.errors.InputError` (``EXTENT: ...``) when
    the extent does not overlap the raster.
    """
    from .region import pixel_bounds
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    if info.geotransform[2] != 0 or info.geotransform[4] != 0:
        raise InputError("EXTENT: the raster's geotransform is rotated, so no extent can be cut "
                         "from its grid. Leave EXTENT empty to segment the whole raster, or warp "
                         "it to a north-up grid (Raster > Projections > Warp) first.")
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if not (xmax > xmin and ymax > ymin):
        side, length = ("width", xmax - xmin) if not xmax > xmin else ("height", ymax - ymin)
        raise InputError(f"EXTENT: the extent ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has no "
                         f"area (its {side} is {length:g}). Draw an extent with an area, or "
                         "leave it empty for the whole raster.")
    drawn = shapely.box(xmin, ymin, xmax, ymax)
    if opened.grid.warped and drawn.area > 0:     # its edges may curve on the grid
        drawn = shapely.segmentize(drawn, max(xmax - xmin, ymax - ymin) / 32)
    on_grid = shapely.from_wkb(opened.grid.to_grid(bytes(shapely.to_wkb(drawn))))
    x0, dx, _, y0, _, dy = info.geotransform
    raster = shapely.box(x0, y0 + dy * info.height, x0 + dx * info.width, y0)
    inside = on_grid.intersection(raster)
    if inside.is_empty or inside.area <= 0:
        raise InputError("EXTENT: the extent does not overlap the raster. Choose an extent "
                         "inside the layer, or leave it empty.")
    row0, row1, col0, col1 = pixel_bounds(inside, info.geotransform)
    row0, col0 = max(row0, 0), max(col0, 0)
    row1, col1 = min(row1, info.height), min(col1, info.width)
    return row0, col0, max(1, row1 - row0), max(1, col1 - col0)
