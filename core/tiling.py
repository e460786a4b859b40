"""Whole-raster segmentation, tile by tile, with overlap and smooth blending.

Memory is bounded by one strip of tiles (tile height x raster width x classes), never by the
raster's size; the output is written strip by strip to a temporary file and renamed at the end.
"""

import contextlib

import numpy as np

from .batching import batch_size_for, check_cancel
from .geoio import geotiff_writer, raster_info, read_window, window_geotransform
from .checked_model import checked
from .parameters import by_name
from .region import window_edge

# Colours of the class raster's palette, cycled for models with more classes.
PALETTE = [(31, 78, 121, 255), (20, 20, 20, 255), (230, 159, 0, 255), (255, 255, 255, 255),
           (0, 158, 115, 255), (204, 121, 167, 255), (86, 180, 233, 255), (213, 94, 0, 255)]
CLASS_NODATA = 255


def tile_starts(length, tile, stride):
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with step <= ``stride``.

    The last tile is aligned to the end, so no tile hangs past the end unless ``length < tile``.
    """
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def blend_weights(tile, overlap):
    """Separable raised-cosine weights ``[tile, tile]``: 1 in the middle, ramps over ``overlap``.

    The ramps never reach zero, so a pixel covered by one tile only keeps that tile's value.
    """
    ramp = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        x = (np.arange(overlap) + 0.5) / overlap
        edge = 0.5 - 0.5 * np.cos(np.pi * x)
        ramp[:overlap] = edge
        ramp[tile - overlap:] = edge[::-1]
    ramp = np.maximum(ramp, 1e-3)
    return np.outer(ramp, ramp).astype(np.float32)


def fill_tile_nodata(tile):
    """Replace NaN by the per-band mean of the tile's valid pixels (0 where a band has none).

    Not :func:`~.baselines.fill_nodata`: that one averages in float64, this one in float32,
    and segmentation outputs are kept bit for bit what they were (``make demo``); the two
    differ by float rounding of the fill value only.
    """
    nan = np.isnan(tile)
    if not nan.any():
        return tile
    means = np.nan_to_num(np.nanmean(np.where(nan.all(axis=(0, 1)), 0, tile), axis=(0, 1)))
    return np.where(nan, means[None, None, :], tile).astype(np.float32)


def segment_raster(model, path, prob_path, class_path, *, bands=None, window=None, tile_size=None,
                   overlap=None, batch_size=by_name("batch_size").default, metadata=None,
                   complex_as="intensity", progress=None, cancel=None):
    """Segment a raster (or a window of it) and write probability and class GeoTIFFs.

    Parameters
    ----------
    model : SegmentationModel
        Anything with ``predict([N, H, W, C]) -> [N, H, W, K]`` and ``class_names``.
    path : str
        Input raster (any GDAL raster).
    prob_path, class_path : str or None
        Outputs: float32, one band per class named after it; uint8 paletted argmax
        (nodata 255). Either may be None to skip it.
    bands : sequence of int, optional
        1-based raster bands in model-channel order.
    window : (row0, col0, height, width), optional
        Part of the raster to segment, in pixels; default the whole raster.
    tile_size, overlap : int, optional
        Defaults: the model's fixed or preferred tile size (else 512) and its overlap
        (else 15 % of the tile).
    batch_size : int, optional
        Tiles per model call; None (the default): :func:`~.batching.batch_size_for` the tile.
    metadata : dict, optional
        Written into both GeoTIFFs.
    complex_as : {"intensity", "amplitude"}
        What complex bands become (:func:`~.geoio.read_window`).

    Returns
    -------
    dict with ``n_tiles``, ``tile_size``, ``overlap``, ``class_counts`` (pixels per class) and
    ``screened``: pixels with a value made nodata as ``{"non_finite": n, "absurd": n}``
    (:func:`~.baselines.screen_values`), each pixel counted once.
    """
    info = raster_info(path)
    row0, col0, height, width = window or (0, 0, info.height, info.width)
    model = checked(model)      # NaN or non-probabilities stop the run with the fix
    tile = window_edge(tile_size, getattr(model, "fixed_size", None),
                       getattr(model, "tile_size", None))
    if overlap is None:
        pct = getattr(getattr(model, "metadata", None), "tiles_overlap", None)
        overlap = int(round(tile * (pct if pct is not None else 15) / 100))
    overlap = int(min(max(overlap, 0), tile // 2))
    stride = tile - overlap
    weights = blend_weights(tile, overlap)
    rows, cols = tile_starts(height, tile, stride), tile_starts(width, tile, stride)
    n_tiles, done = len(rows) * len(cols), 0
    names = list(model.class_names)
    k = len(names)
    gt = window_geotransform(info.geotransform, row0, col0)
    counts = np.zeros(k, dtype=np.int64)
    screened = {"non_finite": 0, "absurd": 0}
    _check_strip_memory(tile, width, k)
    with contextlib.ExitStack() as stack:
        prob_ds = class_ds = None
        if prob_path:
            prob_ds = stack.enter_context(geotiff_writer(
                prob_path, width, height, k, gt, info.crs_wkt, nodata=-1.0, band_names=names,
                metadata=metadata))
        if class_path:
            class_ds = stack.enter_context(geotiff_writer(
                class_path, width, height, 1, gt, info.crs_wkt, nodata=CLASS_NODATA,
                dtype="Byte", metadata=metadata, category_names=names,
                color_table={i: PALETTE[i % len(PALETTE)] for i in range(k)}))
        acc_top = 0
        acc = np.zeros((tile, width, k), dtype=np.float32)
        wsum = np.zeros((tile, width), dtype=np.float32)
        valid = np.zeros((tile, width), dtype=bool)
        bad = np.zeros((tile, width), dtype=np.uint8)     # screen_values' flags

        def flush(upto):
            """Write finished rows [acc_top, upto) and shift the strip buffers."""
            nonlocal acc_top
            n = upto - acc_top
            if n <= 0:
                return
            probs = acc[:n] / np.maximum(wsum[:n], 1e-12)[..., None]
            ok = valid[:n]
            classes = np.where(ok, probs.argmax(axis=-1), CLASS_NODATA).astype(np.uint8)
            counts[:] += np.bincount(classes[ok].ravel(), minlength=k)[:k]
            screened["non_finite"] += int(np.count_nonzero(bad[:n] & 1))
            screened["absurd"] += int(np.count_nonzero(bad[:n] & 2))
            probs[~ok] = -1.0
            if prob_ds is not None:
                for b in range(k):
                    prob_ds.write(b + 1, probs[..., b], 0, acc_top)
            if class_ds is not None:
                class_ds.write(1, classes, 0, acc_top)
            for buf in (acc, wsum, valid, bad):
                buf[:-n] = buf[n:].copy()
                buf[-n:] = 0
            acc_top = upto

        step = batch_size_for(batch_size, tile, tile)
        for r in rows:
            flush(min(r, height))
            for start in range(0, len(cols), step):
                check_cancel(cancel)
                batch_cols = cols[start:start + step]
                flags = np.zeros((len(batch_cols), tile, tile), dtype=np.uint8)
                tiles = [read_window(path, row0 + r, col0 + c, tile, tile, bands, flags=f,
                                     complex_as=complex_as) for c, f in zip(batch_cols, flags)]
                pred = model.predict(np.stack([fill_tile_nodata(t) for t in tiles]),
                                     batch_size=step)
                for c, p, t, f in zip(batch_cols, pred, tiles, flags):
                    h, w = min(tile, height - r), min(tile, width - c)
                    sl = (slice(r - acc_top, r - acc_top + h), slice(c, c + w))
                    acc[sl] += p[:h, :w] * weights[:h, :w, None]
                    wsum[sl] += weights[:h, :w]
                    valid[sl] |= ~np.isnan(t[:h, :w]).all(axis=-1)
                    bad[sl] |= f[:h, :w]
                done += len(batch_cols)
                if progress is not None:
                    progress(done / n_tiles)
        flush(height)
    return {"n_tiles": n_tiles, "tile_size": tile, "overlap": overlap,
            "class_counts": dict(zip(names, counts.tolist())), "screened": screened}


def _check_strip_memory(tile, width, k):
    """An :class:`~.errors.InputError` before any pixel is read when one row of tiles (the
    strip the tiles are blended in: ``tile x width`` pixels, ``k`` classes) needs more than
    half the memory available now."""
    from .errors import InputError
    from .model import available_memory

    need = float(tile) * float(width) * (4.0 * k + 6.0)
    available = available_memory()
    if available and need > 0.5 * available:
        raise InputError(
            f"INPUT: the part segmented is {width} px wide; blending one row of {tile} px "
            f"tiles over it needs {need / 2**30:.1f} GiB, more than half the "
            f"{available / 2**30:.1f} GiB of memory available. Segment a narrower part "
            "(EXTENT), or use smaller tiles (TILE_SIZE).")
