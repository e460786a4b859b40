"""Synthetic Sentinel-1-like VV scene of open sea with oil slicks, look-alikes and ships.

The generator makes a deterministic, physically plausible C-band VV backscatter image
(sigma0 in dB, 10 m pixels, UTM zone 31N) and the class raster it was drawn from, so the
sample model can be trained and the explainer demonstrated without downloading a real
scene. Only numpy, scipy and GDAL/OGR are used: no QGIS, no torch.

Physics (all values are drawn per scene from the stated ranges; see MODEL.md):

* **Sea.** Mean sea sigma0 follows the wind: a base level in [-18.5, -15.5] dB, a linear
  large-scale wind gradient of 2-6 dB across the scene in a random direction, and a
  mesoscale wind field (0.8 dB std, ~1/6 scene correlation), clipped to [-22, -12] dB
  (roughly 3 to 10 m/s for VV at mid-swath incidence).
* **Wind streaks.** Anisotropic Gaussian texture elongated along the wind direction
  (correlation 150-400 px along, 12-30 px across, 0.3-0.7 dB std).
* **Oil slicks.** Smooth curves (integrated random curvature, turning radius >= ~300 px),
  250-1400 px long, with a varying half-width (1.5-35 px). The slick damps the mean
  backscatter by a per-slick peak of 4.5-10 dB, weakened by up to 20 % along the slick and
  by up to 15 % by patchiness, so the damping lies in **3-10 dB**. Edges are feathered:
  full damping inside 0.75 of the local half-width, raised-cosine taper to zero at 1.25;
  the class boundary is the half-damping contour. About half of the slicks trail behind a
  ship (narrow at the ship, spreading downstream, strongest near the ship).
* **Ships.** Small bright ellipses (4-12 px long, 2-4 px wide), +10 to +25 dB above the
  local sea; at the head of ship slicks and also alone.
* **Look-alikes.** Low-wind areas: larger (radius 120-350 px), rounder (axis ratio 1-1.8),
  with a Gaussian damping profile of 4-9 dB peak, i.e. gentle gradients
  (class boundary at the half-damping contour).
* **Speckle.** The damped mean backscatter (linear power) is multiplied by gamma speckle
  with shape L = 4.5 (equivalent number of looks) and scale 1/L (mean 1, variance 1/L);
  ship pixels use L = 16 (a few dominant scatterers).
* **Nodata frame.** Irregular 10-70 px borders as in a GRD product: value ``NODATA``
  (-9999.0) in the sigma0 raster and class 255 in the class raster.

Classes: 0 sea, 1 oil, 2 lookalike, 3 ship, 255 nodata (``CLASS_NAMES``, ``NODATA_CLASS``).

No thermal noise floor (NESZ) is simulated: the darkest slicks on low-wind sea reach
about -32 dB, below Sentinel-1's NESZ (~-22 to -25 dB), where a real sensor would show noise.

Examples
--------
>>> from seg_explainer.resources.sample import scene
>>> s = scene.generate_scene(scene.DEFAULT_SEED)          # doctest: +SKIP
>>> paths = scene.write_sample("/tmp/sample")             # doctest: +SKIP

Command line::

    python resources/sample/scene.py --out /tmp/sample --seed 2024 --size 2048
"""

import argparse
import json
import math
import os
import uuid

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

DEFAULT_SEED = 2024
"""Seed of the demo scene. Never used for training; evaluation seeds differ too."""

CLASS_NAMES = {0: "sea", 1: "oil", 2: "lookalike", 3: "ship"}
NODATA_CLASS = 255
NODATA = -9999.0
ENL = 4.5
SHIP_ENL = 16.0
PIXEL_SIZE = 10.0
EPSG = 32631
ORIGIN = (480000.0, 5890000.0)  # upper-left corner (easting, northing), North Sea
SEA_DB_RANGE = (-22.0, -12.0)
OIL_DAMPING_DB = (3.0, 10.0)
LOOKALIKE_DAMPING_DB = (4.0, 9.0)
SHIP_GAIN_DB = (10.0, 25.0)
BAND_DESCRIPTION = "VV sigma0 (dB)"
CLASS_COLORS = {0: (31, 120, 180, 255), 1: (20, 20, 20, 255), 2: (255, 127, 0, 255),
                3: (255, 255, 51, 255), 255: (0, 0, 0, 0)}


# --------------------------------------------------------------------------- random fields

def _gaussian_field(rng, shape, sigma_along, sigma_across=None, angle=0.0):
    """Zero-mean, unit-std Gaussian random field with an (anisotropic) Gaussian correlation.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        Output shape (rows, cols).
    sigma_along, sigma_across : float
        Kernel standard deviations in output pixels, along and across ``angle``.
    angle : float
        Direction of ``sigma_along`` in radians, counter-clockwise from the column axis.

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    if sigma_across is None:
        sigma_across = sigma_along
    f = max(1, int(min(sigma_along, sigma_across) // 4))  # work on a coarser grid when smooth
    small = (shape[0] // f + 2, shape[1] // f + 2)
    noise = rng.standard_normal(small).astype(np.float32)
    ky = sfft.fftfreq(small[0]).astype(np.float32)[:, None]
    kx = sfft.rfftfreq(small[1]).astype(np.float32)[None, :]
    k_al = kx * math.cos(angle) - ky * math.sin(angle)  # rows grow southwards
    k_ac = kx * math.sin(angle) + ky * math.cos(angle)
    sa, sc = sigma_along / f, sigma_across / f
    h = np.exp(-2.0 * math.pi ** 2 * (sa * sa * k_al * k_al + sc * sc * k_ac * k_ac))
    field = sfft.irfft2(sfft.rfft2(noise, workers=2) * h, s=small, workers=2)
    if f > 1:
        field = ndimage.zoom(field, f, order=1, prefilter=False)
    field = field[: shape[0], : shape[1]]
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def _smooth_1d(rng, n, corr):
    """Zero-mean, unit-std smooth 1-D random sequence of length ``n`` (correlation ``corr``)."""
    x = ndimage.gaussian_filter1d(rng.standard_normal(n + 4 * int(corr) + 2), corr, mode="wrap")
    x = x[2 * int(corr): 2 * int(corr) + n]
    x = x - x.mean()
    s = x.std()
    return x / s if s > 0 else x


# --------------------------------------------------------------------------- components

def _nodata_frame(rng, size):
    """Boolean valid mask with an irregular nodata frame of 10-70 px along the four borders."""
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    invalid = np.zeros((size, size), bool)
    for edge in range(4):
        a, b = rng.uniform(10, 60, 2)
        t = np.linspace(0.0, 1.0, size)
        width = a + (b - a) * t + 4.0 * _smooth_1d(rng, size, 40)
        step = int(rng.integers(8, 33))  # GRD borders are jagged in bursts of lines
        width = np.repeat(width[::step], step)[:size]
        width = np.clip(np.round(width + rng.integers(0, 3, size)), 5, 75)
        if edge == 0:
            invalid |= rows < width[None, :]
        elif edge == 1:
            invalid |= rows >= size - width[None, :]
        elif edge == 2:
            invalid |= cols < width[:, None]
        else:
            invalid |= cols >= size - width[:, None]
    return ~invalid


def _sea_mean_db(rng, size, wind_gradient, wind_streaks, wind_dir):
    """Mean sea sigma0 (dB) without features; the second output is the streak texture (dB)."""
    base = rng.uniform(-18.5, -15.5)
    grad = rng.uniform(2.0, 6.0)
    gdir = rng.uniform(0, 2 * math.pi)
    meso = _gaussian_field(rng, (size, size), size / 6.0)
    s_al, s_ac, amp = rng.uniform(150, 400), rng.uniform(12, 30), rng.uniform(0.3, 0.7)
    streaks = _gaussian_field(rng, (size, size), s_al, s_ac, wind_dir)
    sea = np.full((size, size), base, np.float32)
    if wind_gradient:
        r = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        ramp = r[None, :] * math.cos(gdir) + r[:, None] * math.sin(gdir)
        sea += grad * ramp / max(float(np.abs(ramp).max()) * 2.0, 1e-6)
        sea += 0.8 * meso
    sea = np.clip(sea, *SEA_DB_RANGE)
    texture = (amp * streaks) if wind_streaks else np.zeros_like(sea)
    return sea, texture


def _lookalikes(rng, size, valid):
    """Low-wind areas: damping map (dB, positive), normalised radius map, list of dicts."""
    n = int(rng.poisson(1.5 * (size / 2048.0) ** 2)) + int(rng.random() < 0.8)
    perturb = _gaussian_field(rng, (size, size), 60.0)
    damping = np.zeros((size, size), np.float32)
    rho_min = np.full((size, size), np.inf, np.float32)
    info = []
    for _ in range(n):
        radius = rng.uniform(120, 350)
        ratio = rng.uniform(1.0, 1.8)
        ang = rng.uniform(0, math.pi)
        peak = rng.uniform(*LOOKALIKE_DAMPING_DB)
        r0, c0 = rng.uniform(0, size, 2)
        half = int(2.2 * radius * ratio) + 1
        r_lo, r_hi = max(0, int(r0) - half), min(size, int(r0) + half)
        c_lo, c_hi = max(0, int(c0) - half), min(size, int(c0) + half)
        if r_hi <= r_lo or c_hi <= c_lo:
            continue
        rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi].astype(np.float32)
        dy, dx = rr - r0, cc - c0
        u = dx * math.cos(ang) - dy * math.sin(ang)
        v = dx * math.sin(ang) + dy * math.cos(ang)
        rho = np.sqrt((u / (radius * ratio)) ** 2 + (v / radius) ** 2)
        rho *= np.exp(0.2 * perturb[r_lo:r_hi, c_lo:c_hi])
        d = peak * np.exp(-math.log(2.0) * rho * rho)  # half damping at rho = 1
        sl = (slice(r_lo, r_hi), slice(c_lo, c_hi))
        damping[sl] = np.maximum(damping[sl], d)
        rho_min[sl] = np.minimum(rho_min[sl], rho)
        info.append({"row": float(r0), "col": float(c0), "radius_px": float(radius),
                     "axis_ratio": float(ratio), "peak_damping_db": float(peak)})
    return damping, rho_min, info


def _curve(rng, size, length, margin, valid, rho_la, wind_dir, taken):
    """Random smooth curve (integrated random curvature), 1 px steps, or None if no fit.

    The curve stays inside the valid frame, off look-alikes, and >= 80 px from the
    centerline points in ``taken`` (a cKDTree or None).
    """
    for _ in range(30):
        h0 = wind_dir + rng.normal(0, 0.9)
        kappa = _smooth_1d(rng, length, 120) * rng.uniform(0.5, 1.5) / 600.0
        heading = h0 + np.cumsum(kappa)
        x = np.cumsum(np.cos(heading))
        y = -np.cumsum(np.sin(heading))
        x0 = rng.uniform(margin - x.min(), size - margin - x.max()) \
            if np.ptp(x) < size - 2 * margin else None
        y0 = rng.uniform(margin - y.min(), size - margin - y.max()) \
            if np.ptp(y) < size - 2 * margin else None
        if x0 is None or y0 is None:
            continue
        cols, rows = x + x0, y + y0
        ri, ci = np.round(rows).astype(int), np.round(cols).astype(int)
        if not valid[ri, ci].all() or (rho_la[ri, ci] < 1.6).any():
            continue
        if taken is not None and np.isfinite(
                taken.query(np.c_[rows[::4], cols[::4]], distance_upper_bound=80.0)[0]).any():
            continue
        return rows, cols, heading
    return None


def _slicks(rng, size, valid, rho_la, wind_dir):
    """Oil slick centerlines with half-width and damping profiles, and the ships they trail."""
    n = max(1, int(rng.poisson(4.0 * (size / 2048.0) ** 2)))
    from scipy.spatial import cKDTree

    slicks, ships = [], []
    taken = None
    for k in range(n):
        length = int(min(rng.uniform(250, 1400), 0.8 * size))
        from_ship = bool(rng.random() < 0.5)
        curve = _curve(rng, size, length, 60, valid, rho_la, wind_dir, taken)
        if curve is None:
            continue
        rows, cols, heading = curve
        pts = np.concatenate([np.c_[s["rows"], s["cols"]] for s in slicks] + [np.c_[rows, cols]])
        taken = cKDTree(pts[::2])
        t = np.linspace(0.0, 1.0, length)
        wmax = rng.uniform(8, 30) if from_ship else rng.uniform(6, 35)
        wobble = np.exp(0.3 * _smooth_1d(rng, length, 60))
        peak = rng.uniform(4.5, OIL_DAMPING_DB[1])
        if from_ship:
            width = (1.5 + (wmax - 1.5) * t ** 0.6) * wobble
            along = 1.0 - 0.2 * t  # fresh, thicker oil near the ship
        else:
            width = wmax * wobble * np.sin(math.pi * np.clip(t, 0.02, 0.98)) ** 0.35
            along = 1.0 - 0.2 * (0.5 + 0.5 * np.tanh(_smooth_1d(rng, length, 150)))
        width = np.clip(width, 1.5, 35.0)
        slicks.append({"id": len(slicks) + 1, "from_ship": from_ship, "rows": rows, "cols": cols,
                       "half_width": width.astype(np.float32),
                       "damping": (peak * along).astype(np.float32),
                       "peak_damping_db": float(peak), "length_px": length})
        if from_ship:
            # The ship sails away from the slick: a few pixels ahead of the curve start.
            ahead = -np.array([math.cos(heading[0]), -math.sin(heading[0])])
            ships.append({"row": float(rows[0] + 4 * ahead[1]),
                          "col": float(cols[0] + 4 * ahead[0]),
                          "heading": float(heading[0]), "slick": len(slicks)})
    for _ in range(int(rng.poisson(3.0 * (size / 2048.0) ** 2))):
        r0, c0 = rng.uniform(60, size - 60, 2)
        if valid[int(r0), int(c0)] and rho_la[int(r0), int(c0)] > 1.5:
            ships.append({"row": float(r0), "col": float(c0),
                          "heading": float(rng.uniform(0, 2 * math.pi)), "slick": 0})
    for s in ships:
        s["length_px"] = float(rng.uniform(4, 12))
        s["width_px"] = float(rng.uniform(2, 4))
        s["gain_db"] = float(rng.uniform(*SHIP_GAIN_DB))
    return slicks, ships


def _rasterise_slicks(size, slicks, patch):
    """Oil damping map (dB) and slick id map (class boundary at the half-damping contour)."""
    damping = np.zeros((size, size), np.float32)
    slick_id = np.zeros((size, size), np.int16)
    if not slicks:
        return damping, slick_id
    rows = np.concatenate([s["rows"] for s in slicks])
    cols = np.concatenate([s["cols"] for s in slicks])
    width = np.concatenate([s["half_width"] for s in slicks])
    damp = np.concatenate([s["damping"] for s in slicks])
    sid = np.concatenate([np.full(len(s["rows"]), s["id"], np.int16) for s in slicks])
    ri = np.clip(np.round(rows).astype(int), 0, size - 1)
    ci = np.clip(np.round(cols).astype(int), 0, size - 1)
    # Index of the centerline point at each centerline pixel (the widest one wins).
    order = np.argsort(width, kind="stable")
    index = np.full((size, size), -1, np.int64)
    index[ri[order], ci[order]] = order
    # Only pixels near a slick matter: crop to the bounding box of all slicks plus margin.
    m = 50
    r_lo, r_hi = max(0, ri.min() - m), min(size, ri.max() + m + 1)
    c_lo, c_hi = max(0, ci.min() - m), min(size, ci.max() + m + 1)
    sub = index[r_lo:r_hi, c_lo:c_hi]
    dist, (ir, ic) = ndimage.distance_transform_edt(sub < 0, return_indices=True)
    nearest = sub[ir, ic]
    u = dist / width[nearest]
    frac = np.where(u < 0.75, 1.0, 0.5 * (1.0 + np.cos(math.pi * np.clip((u - 0.75) / 0.5, 0, 1))))
    frac = frac.astype(np.float32) * (1.0 - 0.15 * patch[r_lo:r_hi, c_lo:c_hi])
    damping[r_lo:r_hi, c_lo:c_hi] = frac * damp[nearest]
    slick_id[r_lo:r_hi, c_lo:c_hi] = np.where(u <= 1.0, sid[nearest], 0)
    return damping, slick_id


def _rasterise_ships(size, ships):
    """Ship gain map (dB above the local sea, 0 elsewhere)."""
    gain = np.zeros((size, size), np.float32)
    for s in ships:
        half = int(s["length_px"]) + 2
        r0, c0 = int(round(s["row"])), int(round(s["col"]))
        r_lo, r_hi = max(0, r0 - half), min(size, r0 + half + 1)
        c_lo, c_hi = max(0, c0 - half), min(size, c0 + half + 1)
        if r_hi <= r_lo or c_hi <= c_lo:
            continue
        rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi].astype(np.float32)
        dx, dy = cc - s["col"], -(rr - s["row"])
        a = dx * math.cos(s["heading"]) + dy * math.sin(s["heading"])
        b = -dx * math.sin(s["heading"]) + dy * math.cos(s["heading"])
        e = (a / (0.5 * s["length_px"])) ** 2 + (b / (0.5 * s["width_px"])) ** 2
        g = np.where(e <= 1.0, s["gain_db"] - 4.0 * e, 0.0).astype(np.float32)  # brighter midships
        gain[r_lo:r_hi, c_lo:c_hi] = np.maximum(gain[r_lo:r_hi, c_lo:c_hi], g)
    return gain


# --------------------------------------------------------------------------- public API

def generate_scene(seed, size=2048, *, wind_gradient=True, wind_streaks=True, features=True):
    """Generate a synthetic VV sigma0 scene and its class raster.

    Parameters
    ----------
    seed : int
        Random seed; the same seed (and options) gives identical arrays.
    size : int
        Scene width and height in pixels (10 m each).
    wind_gradient, wind_streaks, features : bool
        Switch off the large-scale wind variation, the wind-streak texture, or all slicks,
        look-alikes and ships (e.g. to test the speckle statistics on homogeneous sea).
        Each component draws from its own random stream, so switching one off does not
        change the others.

    Returns
    -------
    dict
        ``sigma0_db`` float32 (size, size): speckled sigma0 in dB, ``NODATA`` outside the frame;
        ``classes`` uint8 (size, size): 0 sea, 1 oil, 2 lookalike, 3 ship, 255 nodata;
        ``valid`` bool (size, size); ``mean_db`` float32: mean backscatter before speckle (dB);
        ``sea_db`` float32: mean sea backscatter with wind streaks, without features (dB);
        ``oil_damping_db`` float32: damping applied by slicks (dB, >= 0);
        ``slick_id`` int16: slick number inside each slick (class boundary), 0 elsewhere;
        ``slicks``, ``ships``, ``lookalikes``: lists of dicts (pixel coordinates);
        ``seed``, ``size``, ``enl``, ``wind_direction_deg`` (counter-clockwise from east),
        ``epsg``, ``geotransform`` (GDAL order), ``nodata``, ``class_names``.
    """
    seed = int(seed)
    size = int(size)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    wind_dir = float(streams[0].uniform(0, 2 * math.pi))
    valid = _nodata_frame(streams[1], size)
    sea_db, texture_db = _sea_mean_db(streams[2], size, wind_gradient, wind_streaks, wind_dir)
    sea_db = sea_db + texture_db
    if features:
        la_damp, rho_la, lookalikes = _lookalikes(streams[3], size, valid)
        slicks, ships = _slicks(streams[4], size, valid, rho_la, wind_dir)
        patch = np.clip(0.5 + 0.5 * _gaussian_field(streams[5], (size, size), 8.0), 0.0, 1.0)
        oil_damp, slick_id = _rasterise_slicks(size, slicks, patch)
        ship_gain = _rasterise_ships(size, ships)
    else:
        la_damp = oil_damp = ship_gain = np.zeros((size, size), np.float32)
        rho_la = np.full((size, size), np.inf, np.float32)
        slick_id = np.zeros((size, size), np.int16)
        slicks, ships, lookalikes = [], [], []

    mean_db = sea_db - la_damp - oil_damp
    is_ship = ship_gain > 0
    mean_db = np.where(is_ship, np.maximum(mean_db, sea_db + ship_gain), mean_db).astype(np.float32)
    rng = streams[6]
    speckle = rng.gamma(ENL, 1.0 / ENL, (size, size)).astype(np.float32)
    ship_speckle = rng.gamma(SHIP_ENL, 1.0 / SHIP_ENL, (size, size)).astype(np.float32)
    speckle = np.where(is_ship, ship_speckle, speckle)
    intensity = np.power(np.float32(10.0), mean_db / np.float32(10.0)) * speckle
    sigma0_db = (10.0 * np.log10(np.maximum(intensity, 1e-12))).astype(np.float32)
    sigma0_db[~valid] = NODATA

    classes = np.zeros((size, size), np.uint8)
    classes[rho_la <= 1.0] = 2
    classes[slick_id > 0] = 1
    classes[is_ship] = 3
    classes[~valid] = NODATA_CLASS

    for s in slicks:  # plain lists, no large arrays, in the metadata
        s["rows"] = s["rows"].astype(np.float32)
        s["cols"] = s["cols"].astype(np.float32)
    x0, y0 = ORIGIN
    return {
        "sigma0_db": sigma0_db, "classes": classes, "valid": valid, "mean_db": mean_db,
        "sea_db": sea_db.astype(np.float32), "oil_damping_db": oil_damp.astype(np.float32),
        "slick_id": slick_id, "slicks": slicks, "ships": ships, "lookalikes": lookalikes,
        "seed": seed, "size": size, "enl": ENL, "wind_direction_deg": math.degrees(wind_dir),
        "epsg": EPSG, "geotransform": (x0, PIXEL_SIZE, 0.0, y0, 0.0, -PIXEL_SIZE),
        "nodata": NODATA, "class_names": dict(CLASS_NAMES),
    }


def _disk(shape, row, col, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2


def sample_regions(scene):
    """Regions of interest of the seed paper's three cases, and one pixel, in pixel coordinates.

    Parameters
    ----------
    scene : dict
        Output of :func:`generate_scene` (with at least one slick).

    Returns
    -------
    dict
        ``name -> {"row": float, "col": float, "radius_px": float or 0}``: circles for
        ``"oil"`` (inside a slick), ``"sea"`` (open sea near that slick) and ``"boundary"``
        (straddling an oil/sea edge), and a point ``"pixel"`` (radius 0) on oil.
        Row/col are continuous pixel coordinates (pixel centres at ``i + 0.5``).
    """
    classes = scene["classes"]
    size = classes.shape[0]
    margin = min(256, size // 4)
    inner = np.zeros_like(classes, bool)
    inner[margin:size - margin, margin:size - margin] = True
    oil = classes == 1
    if not oil[inner].any():
        raise ValueError("the scene has no oil away from its borders; try another seed")
    oil_dist = ndimage.distance_transform_edt(oil)
    sid = scene["slick_id"]
    # The slick with the most interior area; its widest point is the oil region.
    ids, counts = np.unique(sid[inner & oil], return_counts=True)
    main = ids[np.argmax(counts)]
    cand = np.where(inner & (sid == main), oil_dist, 0)
    r0, c0 = np.unravel_index(np.argmax(cand), cand.shape)
    r_oil = float(np.clip(0.8 * cand[r0, c0], 3.0, 20.0))
    regions = {"oil": {"row": r0 + 0.5, "col": c0 + 0.5, "radius_px": r_oil}}

    # A point on oil: the widest point of the same slick at least 60 px from the oil region.
    far = ~_disk(classes.shape, r0, c0, 60)
    cand_px = np.where(far, cand, 0)
    if cand_px.max() < 2:
        cand_px = cand
    pr, pc = np.unravel_index(np.argmax(cand_px), cand_px.shape)
    regions["pixel"] = {"row": pr + 0.5, "col": pc + 0.5, "radius_px": 0.0}

    # Open sea near the slick: >= 40 px from anything else, about 180 px from the oil region.
    sea_dist = ndimage.distance_transform_edt(classes == 0)
    rr, cc = np.nonzero(inner & (sea_dist >= 40))
    d = np.hypot(rr - r0, cc - c0)
    i = int(np.argmin(np.abs(d - 180.0)))
    regions["sea"] = {"row": rr[i] + 0.5, "col": cc[i] + 0.5, "radius_px": 20.0}

    # Boundary: a circle on the edge of the main slick, 30-70 % oil, the rest sea only.
    edge = (sid == main) & ~ndimage.binary_erosion(sid == main) & inner
    er, ec = np.nonzero(edge)
    local = oil_dist.copy()
    width = ndimage.maximum_filter(local, size=25)[er, ec]
    radius = 12.0
    for j in np.argsort(-width, kind="stable")[:4000]:
        r, c = er[j], ec[j]
        win = classes[r - 13:r + 14, c - 13:c + 14]
        disk = _disk(win.shape, 13, 13, radius)
        vals = win[disk]
        f_oil = np.mean(vals == 1)
        if 0.3 <= f_oil <= 0.7 and np.all((vals == 0) | (vals == 1)) \
                and math.hypot(r - r0, c - c0) > 2 * r_oil + radius:
            regions["boundary"] = {"row": r + 0.5, "col": c + 0.5, "radius_px": radius}
            break
    else:
        raise ValueError("no clean oil/sea boundary found in the scene; try another seed")
    return regions


def _pixel_to_map(geotransform, row, col):
    x0, dx, _, y0, _, dy = geotransform
    return x0 + col * dx, y0 + row * dy


def _tmp_name(path):
    d, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(d, f".{stem}.tmp-{uuid.uuid4().hex[:8]}{ext}")


def _commit(tmp, path):
    """Rename ``tmp`` (and its GDAL .aux.xml side file, if any) to ``path``."""
    if os.path.exists(tmp + ".aux.xml"):
        os.replace(tmp + ".aux.xml", path + ".aux.xml")
    elif os.path.exists(path + ".aux.xml"):
        os.remove(path + ".aux.xml")
    os.replace(tmp, path)


def _write_geotiff(path, array, scene, dtype, nodata, description, categories=None):
    from osgeo import gdal, osr

    gdal.UseExceptions()
    tmp = _tmp_name(path)
    try:
        drv = gdal.GetDriverByName("GTiff")
        ds = drv.Create(tmp, array.shape[1], array.shape[0], 1, dtype,
                        ["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
        ds.SetGeoTransform(scene["geotransform"])
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(scene["epsg"])
        ds.SetProjection(srs.ExportToWkt())
        band = ds.GetRasterBand(1)
        band.SetDescription(description)
        band.SetNoDataValue(nodata)
        if categories is not None:
            ct = gdal.ColorTable()
            for value, rgba in CLASS_COLORS.items():
                ct.SetColorEntry(value, rgba)
            band.SetColorTable(ct)
            band.SetColorInterpretation(gdal.GCI_PaletteIndex)
            names = [""] * 256
            for value, name in CLASS_NAMES.items():
                names[value] = name
            names[NODATA_CLASS] = "nodata"
            band.SetCategoryNames(names)
            band.SetMetadataItem("CLASS_NAMES",
                                 json.dumps({str(k): v for k, v in CLASS_NAMES.items()}))
        else:
            band.SetMetadataItem("ENL", str(ENL))
            band.SetUnitType("dB")
        ds.SetMetadataItem("SEG_EXPLAINER_SAMPLE_SEED", str(scene["seed"]))
        band.WriteArray(array)
        band.FlushCache()
        ds = None
        _commit(tmp, path)
    finally:
        for p in (tmp, tmp + ".aux.xml"):
            if os.path.exists(p):
                os.remove(p)


def _write_regions(path, regions, scene):
    from osgeo import ogr, osr

    ogr.UseExceptions()
    tmp = _tmp_name(path)
    try:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(scene["epsg"])
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(tmp)
        gt = scene["geotransform"]
        for layer_name, geom_type, names in (("regions", ogr.wkbPolygon,
                                              ("oil", "sea", "boundary")),
                                             ("pixel", ogr.wkbPoint, ("pixel",))):
            layer = ds.CreateLayer(layer_name, srs, geom_type)
            layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
            for name in names:
                reg = regions[name]
                if reg["radius_px"] > 0:
                    ring = ogr.Geometry(ogr.wkbLinearRing)
                    for k in range(33):
                        a = 2 * math.pi * (k % 32) / 32
                        x, y = _pixel_to_map(gt, reg["row"] + reg["radius_px"] * math.sin(a),
                                             reg["col"] + reg["radius_px"] * math.cos(a))
                        ring.AddPoint_2D(x, y)
                    geom = ogr.Geometry(ogr.wkbPolygon)
                    geom.AddGeometry(ring)
                else:
                    geom = ogr.Geometry(ogr.wkbPoint)
                    geom.AddPoint_2D(*_pixel_to_map(gt, reg["row"], reg["col"]))
                feat = ogr.Feature(layer.GetLayerDefn())
                feat.SetField("name", name)
                feat.SetGeometry(geom)
                layer.CreateFeature(feat)
                feat = None
        ds = None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_sample(out_dir, seed=DEFAULT_SEED, size=2048):
    """Generate the sample scene and write it, its truth and its regions of interest.

    Files are written under temporary names and renamed, so a reader never sees half a file.

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write into (created if missing).
    seed, size : int
        See :func:`generate_scene`.

    Returns
    -------
    dict
        ``"scene"``: ``scene_vv_db.tif`` (float32 sigma0 dB, nodata -9999),
        ``"truth"``: ``truth_classes.tif`` (uint8 classes, nodata 255, colour table and
        category names), ``"regions"``: ``regions.gpkg`` (layer ``regions``: polygons named
        ``oil``, ``sea``, ``boundary``; layer ``pixel``: one point named ``pixel``).
    """
    from osgeo import gdal

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    scene = generate_scene(seed, size)
    regions = sample_regions(scene)
    paths = {"scene": os.path.join(out_dir, "scene_vv_db.tif"),
             "truth": os.path.join(out_dir, "truth_classes.tif"),
             "regions": os.path.join(out_dir, "regions.gpkg")}
    _write_geotiff(paths["scene"], scene["sigma0_db"], scene, gdal.GDT_Float32, NODATA,
                   BAND_DESCRIPTION)
    _write_geotiff(paths["truth"], scene["classes"], scene, gdal.GDT_Byte, NODATA_CLASS,
                   "classes (0 sea, 1 oil, 2 lookalike, 3 ship)", categories=True)
    _write_regions(paths["regions"], regions, scene)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the synthetic SAR oil-slick sample scene.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--size", type=int, default=2048,
                        help="scene size in pixels (default 2048)")
    args = parser.parse_args(argv)
    for kind, path in write_sample(args.out, args.seed, args.size).items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
