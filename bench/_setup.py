"""Shared set-up of the benchmark scripts (bench/ is a folder of scripts, not a package).

Importing this module makes the checkout importable as ``seg_explainer`` whatever its folder
is called (as tests/conftest.py does) and offers the few helpers every benchmark needs:
the repository paths, the on-disk cache, the sample model and scene, and Markdown tables.
"""

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
SAMPLE_MODEL = ROOT / "resources" / "sample" / "oil_unet.onnx"
SAMPLE_SCENE = ROOT / "resources" / "sample" / "scene.py"


sys.path.insert(0, str(ROOT / "scripts"))
from dev_import import register_package  # noqa: E402

register_package(ROOT)
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


# --------------------------------------------------------------------------- environment

def has_module(name):
    """True when ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def sample_available():
    """True when the sample model and the scene generator both exist."""
    return SAMPLE_MODEL.is_file() and SAMPLE_SCENE.is_file()


def cache_key(**inputs):
    """A short hash of JSON-serialisable inputs, for cache file names."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_load(name):
    """The arrays saved under ``name`` (a dict), or None."""
    path = CACHE / f"{name}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def cache_save(name, **arrays):
    """Save arrays under ``name`` atomically (write, then rename)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npz"
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- sample data

_SCENE = {}


def sample_scene():
    """The demo scene (``scene.DEFAULT_SEED``) and its regions of interest, generated once."""
    if "scene" not in _SCENE:
        from seg_explainer.resources.sample import scene as scene_mod

        s = scene_mod.generate_scene(scene_mod.DEFAULT_SEED)
        _SCENE["scene"] = (s, scene_mod.sample_regions(s))
    return _SCENE["scene"]


def oil_window(size, name="oil", min_radius=1.0):
    """A ``size`` x ``size`` (or ``(rows, cols)``) window of the demo scene centred on one of
    its regions (default the oil region).

    Returns
    -------
    image : ndarray, shape (rows, cols, 1), float32
        Raw sigma0 (dB), nodata as NaN.
    region : ndarray of bool, shape (rows, cols)
        The region of interest: a disc of the region's radius (at least ``min_radius``
        pixels), at least its centre pixel.
    origin : tuple of int
        (row, col) of the window in the scene.
    """
    h, w = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    s, regions = sample_scene()
    db = s["sigma0_db"]
    n = db.shape[0]
    r = regions[name]
    r0 = int(np.clip(round(r["row"] - h / 2), 0, n - h))
    c0 = int(np.clip(round(r["col"] - w / 2), 0, n - w))
    image = db[r0:r0 + h, c0:c0 + w].astype(np.float32).copy()
    image[~s["valid"][r0:r0 + h, c0:c0 + w]] = np.nan
    rr, cc = np.indices((h, w)) + 0.5
    region = np.hypot(rr + r0 - r["row"], cc + c0 - r["col"]) <= max(r["radius_px"], min_radius)
    if not region.any():
        region[int(r["row"]) - r0, int(r["col"]) - c0] = True
    return image[:, :, None], region, (r0, c0)


def load_sample_model(n_threads=None):
    from seg_explainer.core.model import SegmentationModel

    kwargs = {} if n_threads is None else {"n_threads": n_threads}
    return SegmentationModel.load(str(SAMPLE_MODEL), **kwargs)


# --------------------------------------------------------------------------- formatting

def md_table(headers, rows):
    """A Markdown table; cells are formatted with ``str``."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_err(x):
    """A relative error as a percentage with sensible precision."""
    if x is None or not np.isfinite(x):
        return "n/a"
    if x < 1e-9:
        return "0 (exact)"
    p = 100 * x
    return f"{p:.3g} %" if p >= 0.01 else f"{p:.1e} %"


def summary_row(benchmark, measure, result, goal, met):
    """One row of the table run_all prints; ``met`` is True, False or None (no goal)."""
    return {"benchmark": benchmark, "measure": measure, "result": result, "goal": goal,
            "met": met}
