"""Baselines: what a switched-off pixel is replaced with.

A perturbation-based explanation removes parts of the image and watches the model's answer
change. "Removed" has to mean some value: the SHAP-for-segmentation paper uses the image's
mean grey level for SAR (black would look like an oil slick); the multi-scale occlusion paper
fills an occluded rectangle with the average of the pixels bordering it.

Images are ``[H, W, C]`` float arrays of raw values (bands last); NaN marks nodata.
"""

import numpy as np

from .errors import InputError

#: Baselines that do not depend on the mask: :func:`baseline_image` makes them.
STATIC_KINDS = ("mean", "zero", "constant", "blur")
#: Baselines computed per mask: ``"inpaint"`` (:func:`inpaint_masked`) and ``"infill"``
#: (:func:`infill_rect`, rectangles only).
MASK_KINDS = ("inpaint", "infill")
KINDS = STATIC_KINDS + MASK_KINDS


def _as_image(image):
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    return image


def _valid(image, valid_mask):
    """bool [H, W, C]: finite and (if given) inside ``valid_mask`` [H, W]."""
    valid = np.isfinite(image)
    if valid_mask is not None:
        vm = np.asarray(valid_mask, dtype=bool)
        if vm.shape != image.shape[:2]:
            raise ValueError(f"valid_mask has shape {vm.shape}, the image {image.shape[:2]}")
        valid &= vm[:, :, None]
    return valid


def band_means(image, valid_mask=None):
    """Per-band mean of the valid pixels.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
    valid_mask : ndarray of bool, shape (H, W), optional
        Pixels to use; NaN pixels are never used.

    Returns
    -------
    ndarray, shape (C,), float32
        0 for a band without any valid pixel.
    """
    image = _as_image(image)
    valid = _valid(image, valid_mask)
    total = np.where(valid, image, 0.0).sum(axis=(0, 1), dtype=np.float64)
    count = valid.sum(axis=(0, 1))
    return (total / np.maximum(count, 1)).astype(np.float32)


#: Values of this magnitude or more are unflagged fill values (1e20, 9.97e36, 1e38,
#: -3.4e38...), not measurements: no backscatter, reflectance or digital number is that large.
ABSURD_MAGNITUDE = 1e20


def screen_values(values, *, keep=None, flags=None):
    """Non-finite and absurd values (:data:`ABSURD_MAGNITUDE`) of ``values`` as NaN.

    Parameters
    ----------
    values : ndarray
        Any real array (float64 values too large for float32 are caught before a cast).
    keep : ndarray of bool, optional
        Positions already known to be nodata (NaN by design): not counted.
    flags : ndarray of uint8, optional
        Same shape as ``values``: ORed with 1 where a non-finite value is counted, 2 where an
        absurd one is (to count pixels rather than values, or once across overlapping reads).

    Returns
    -------
    screened : ndarray, float
        A float copy with those values NaN.
    n_non_finite, n_absurd : int
        How many +-inf or NaN (outside ``keep``) and finite values beyond +-1e20 were found.

    >>> screen_values(np.array([1.0, np.inf, 1e38, np.nan]))[1:]
    (2, 1)
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float64), 0, 0
    finite = np.isfinite(values)
    absurd = finite & (np.abs(values) >= ABSURD_MAGNITUDE)
    bad = ~finite
    if keep is not None:
        bad &= ~keep
    n_bad, n_absurd = int(bad.sum()), int(absurd.sum())
    if flags is not None and (n_bad or n_absurd):
        flags |= bad.astype(np.uint8) | (absurd.astype(np.uint8) << 1)
    if not n_bad and not n_absurd:
        return values, 0, 0
    return np.where(finite & ~absurd, values, np.nan), n_bad, n_absurd


def screening_message(n_non_finite, n_absurd, *, unit="value(s)",
                      effect="take no part in the baseline or the region score"):
    """The warning for :func:`screen_values`' counts, or None when both are 0. ``unit`` is
    what was counted; ``effect`` what being nodata means for the run."""
    if not n_non_finite and not n_absurd:
        return None
    parts = []
    if n_non_finite:
        parts.append(f"{n_non_finite} infinite or NaN {unit}")
    if n_absurd:
        parts.append(f"{n_absurd} {unit} beyond +-{ABSURD_MAGNITUDE:g} (fill values without "
                     "a nodata flag)")
    return (f"The image holds {' and '.join(parts)}; they are treated as nodata, so they "
            f"{effect}. Set the raster's nodata value if they mark missing data.")


def fill_nodata(image, valid_mask=None):
    """Replace NaN (and pixels outside ``valid_mask``) by the per-band mean of the rest.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
    valid_mask : ndarray of bool, shape (H, W), optional

    Returns
    -------
    ndarray, shape (H, W, C), float32
        A copy with no NaN left.
    """
    image = _as_image(image)
    valid = _valid(image, valid_mask)
    return np.where(valid, image, band_means(image, valid_mask)).astype(np.float32)


def baseline_image(image, kind, *, value=None, sigma=8.0, valid_mask=None):
    """The image that replaces switched-off pixels, for the mask-independent kinds.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        Raw values; NaN = nodata (ignored by "mean" and "blur").
    kind : {"mean", "zero", "constant", "blur"}
        "mean": every pixel = the band's mean over the valid pixels (the paper's SAR default).
        "zero": 0. "constant": ``value``. "blur": Gaussian blur of the image (nodata-aware:
        a normalised convolution of the valid pixels), ``sigma`` pixels.
    value : float or sequence of float (one per band)
        For "constant".
    sigma : float
        For "blur": Gaussian standard deviation, pixels.
    valid_mask : ndarray of bool, shape (H, W), optional
        Pixels that count as data for "mean" and "blur".

    Returns
    -------
    ndarray, shape (H, W, C), float32

    Raises
    ------
    ValueError
        Unknown kind, "constant" without ``value``, or a mask-dependent kind ("inpaint",
        "infill"), which :func:`inpaint_masked` and :func:`infill_rect` compute per mask.
    """
    image = _as_image(image)
    h, w, c = image.shape
    if kind == "mean":
        return np.broadcast_to(band_means(image, valid_mask), image.shape).astype(np.float32)
    if kind == "zero":
        return np.zeros(image.shape, dtype=np.float32)
    if kind == "constant":
        if value is None:
            raise InputError("baseline 'constant' needs a value (baseline_value)")
        v = np.asarray(value, dtype=np.float32).reshape(-1)
        if v.size not in (1, c) or not np.all(np.isfinite(v)):
            raise InputError(f"baseline_value must be one finite number or {c} (one per band), "
                             f"got {value!r}")
        return np.broadcast_to(v, image.shape).astype(np.float32)
    if kind == "blur":
        from scipy.ndimage import gaussian_filter

        if not np.isfinite(sigma) or sigma <= 0:
            raise InputError(f"blur sigma must be a positive number of pixels, got {sigma}")
        valid = _valid(image, valid_mask).astype(np.float64)
        data = np.where(valid > 0, image, 0.0).astype(np.float64)
        s = (sigma, sigma, 0)
        num = gaussian_filter(data, s, mode="reflect")
        den = gaussian_filter(valid, s, mode="reflect")
        out = np.where(den > 1e-6, num / np.maximum(den, 1e-6), band_means(image, valid_mask))
        return out.astype(np.float32)
    if kind in MASK_KINDS:
        raise ValueError(f"baseline {kind!r} depends on the mask: use inpaint_masked() or "
                         f"infill_rect()")
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(KINDS)}")


def composite(image, baseline, masks):
    """Blend the image and a baseline through masks: ``x * m + b * (1 - m)``.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
    baseline : ndarray, shape (H, W, C) or (n, H, W, C)
        One baseline for all masks, or one per mask.
    masks : ndarray, shape (n, H, W)
        1 (or True) = keep the pixel, 0 (False) = use the baseline; fractions blend.

    Returns
    -------
    ndarray, shape (n, H, W, C), float32
    """
    x = _as_image(image)
    m = np.asarray(masks)
    if m.ndim != 3 or m.shape[1:] != x.shape[:2]:
        raise ValueError(f"masks must be [n, {x.shape[0]}, {x.shape[1]}], got {m.shape}")
    b = np.asarray(baseline, dtype=np.float32)
    if m.dtype == bool:  # on/off masks: a plain selection, faster than the blend
        return _select(m, x, b)
    m = m.astype(np.float32, copy=False)[..., None]
    # x * m + b * (1 - m): exactly x where m == 1 and exactly b where m == 0
    out = x * m
    out += b * (1.0 - m)
    return out.astype(np.float32, copy=False)


def _select(masks, image, baseline):
    """``image`` where ``masks`` (bool, (n, H, W)) is True, else ``baseline``, both float32
    (broadcast to (n, H, W, C)): ``np.where``'s values bit for bit, chosen by bit masks
    instead of a branch per pixel (5x faster on masks that change from pixel to pixel, as a
    hexagon grid's do)."""
    c = image.shape[-1]
    keep = np.negative(masks.view(np.int8), dtype=np.int32, order="C")   # all bits set: kept
    # one value a sample, (n, H, W, C) contiguous: numpy then loops over whole rows
    # (against a trailing axis of length C, its inner loop would be C values long)
    keep = np.repeat(keep[..., None], c, axis=-1) if c > 1 else keep[..., None]
    out = np.bitwise_and(image.view(np.int32), keep)
    np.invert(keep, out=keep)
    out |= np.bitwise_and(baseline.view(np.int32), keep)
    return out.view(np.float32)


def inpaint_masked(image, keep):
    """Biharmonic inpainting of the switched-off pixels (slow: a sparse solve per mask).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        No NaN (fill nodata first, e.g. with :func:`fill_nodata`).
    keep : ndarray, shape (H, W)
        1 (or True) = pixel kept; pixels with ``keep < 0.5`` are inpainted from the kept ones.

    Returns
    -------
    ndarray, shape (H, W, C), float32
        The inpainted image: kept pixels unchanged. When nothing is kept, the per-band mean.
    """
    from skimage.restoration import inpaint_biharmonic

    image = _as_image(image)
    hole = np.asarray(keep, dtype=np.float32) < 0.5
    if hole.shape != image.shape[:2]:
        raise ValueError(f"keep has shape {hole.shape}, the image {image.shape[:2]}")
    if not hole.any():
        return image.copy()
    if hole.all():
        return baseline_image(image, "mean")
    out = inpaint_biharmonic(image.astype(np.float64), hole, channel_axis=-1)
    return out.astype(np.float32)


def infill_rect(image, rect):
    """Fill a rectangle with the per-band average of the pixels bordering it.

    The border is one pixel deep just outside the rectangle on each of its four sides (not
    the corners), as in the multi-scale occlusion paper; sides outside the image are skipped,
    as are NaN pixels. A rectangle covering the whole image gets the image's per-band mean.

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
    rect : (row0, row1, col0, col1)
        Half-open pixel bounds, clipped to the image.

    Returns
    -------
    ndarray, shape (H, W, C), float32
        A copy of the image with the rectangle filled.
    """
    image = _as_image(image)
    out = image.copy()
    r0, r1, c0, c1 = _clip_rect(image, rect)
    out[r0:r1, c0:c1] = infill_value(image, rect)
    return out


def _clip_rect(image, rect):
    h, w = image.shape[:2]
    r0, r1, c0, c1 = (int(v) for v in rect)
    return max(0, r0), min(h, r1), max(0, c0), min(w, c1)


def infill_value(image, rect):
    """The per-band fill value :func:`infill_rect` uses for ``rect``: shape (C,), float32."""
    image = _as_image(image)
    h, w = image.shape[:2]
    r0, r1, c0, c1 = _clip_rect(image, rect)
    strips = []
    if r0 > 0:
        strips.append(image[r0 - 1, c0:c1])
    if r1 < h:
        strips.append(image[r1, c0:c1])
    if c0 > 0:
        strips.append(image[r0:r1, c0 - 1])
    if c1 < w:
        strips.append(image[r0:r1, c1])
    border = np.concatenate(strips, axis=0) if strips else np.zeros((0, image.shape[2]))
    ok = np.isfinite(border)
    count = ok.sum(axis=0)
    mean = np.where(ok, border, 0.0).sum(axis=0) / np.maximum(count, 1)
    return np.where(count > 0, mean, band_means(image)).astype(np.float32)


def infill_rects(image, rects, window=None):
    """:func:`infill_rect` for many rectangles: ``[n, 4]`` -> ``[n, H, W, C]`` float32.

    ``window`` ``(row0, row1, col0, col1)``, optional: return only that part of every filled
    image, ``[n, row1 - row0, col1 - col0, C]`` (the fill values still come from the whole
    image, so they equal the uncropped ones).
    """
    image = _as_image(image)
    h, w = image.shape[:2]
    f0, f1, g0, g1 = (0, h, 0, w) if window is None else (int(v) for v in window)
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    out = np.repeat(image[None, f0:f1, g0:g1], len(rects), axis=0)
    for i, rect in enumerate(rects):
        r0, r1, c0, c1 = _clip_rect(image, rect)
        r0, r1, c0, c1 = max(r0, f0), min(r1, f1), max(c0, g0), min(c1, g1)
        if r1 > r0 and c1 > c0:
            out[i, r0 - f0:r1 - f0, c0 - g0:c1 - g0] = infill_value(image, rect)
    return out
