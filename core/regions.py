"""Explain many regions (an archive's detections) in one run, locally or on a Dask cluster.

Every region is explained by the single-region pipeline (:func:`~.job.explain_to_files`),
so its rasters, cells and metadata are those of the ``explain_*`` algorithms for the same
parameters and seed. Around it this module adds what a run over thousands of regions needs::

    from seg_explainer.core.regions import explain_regions

    run = explain_regions("detections.gpkg", "oil_unet.onnx", "oil", "shap", "out/",
                          raster_field="scene", seed=0)
    run.summary_path      # out/regions.gpkg: one feature per region, status and numbers
    run.n_done, run.n_failed, run.n_skipped

* **Execution** (:class:`Executor`): ``scheduler=None`` starts a ``distributed.LocalCluster``
  (one worker process per core, ``cores // workers`` onnxruntime threads each);
  ``scheduler="tcp://host:8786"`` (or a ``distributed.Client``) submits to an existing
  cluster; ``scheduler="serial"`` runs in this process without Dask. Workers import only this
  package's ``core`` (shipped to them as a zip); they read their rasters window by window
  (``/vsis3/``, ``/vsicurl/`` and shared file systems work) and get the model's bytes once
  (scattered to every worker, written to the worker's own folder, loaded once per process).
* **Atomic per region**: a region's files are written into a hidden folder renamed into
  place whole, ``result.json`` included, so a region is either complete or absent. A task
  run twice (its worker died and Dask ran it again) finds the folder complete and keeps it.
* **Resumable**: the folder is named by a hash of the parameters, region, raster and model
  (:func:`region_key`); a re-run skips regions whose folder is complete.
* **Failures**: a region that cannot work (outside its raster, nodata only, bad geometry) is
  recorded with its message (status ``failed``) and the others go on; an unexpected
  exception is recorded as status ``error`` with its traceback (a bug to report).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import DependencyError, ExplanationCancelled, InputError, UserError

__all__ = ["DASK_INSTALL", "Region", "RegionsRun", "SUMMARY_FIELDS", "dask_available",
           "explain_regions", "method_parameters", "read_regions", "region_key",
           "run_region", "write_summary"]

#: What to run when dask is missing.
DASK_INSTALL = ("pip install \"dask>=2024.8,<2027\" \"distributed>=2024.8,<2027\" (or the "
                "plugin dock's dependency installer, or your QGIS installer: conda install "
                "dask distributed, apt install python3-distributed)")
#: Columns of the summary layer, in order: name -> OGR kind ("int", "real", "str").
SUMMARY_FIELDS = {
    "region_id": "int", "scene": "str", "status": "str", "message": "str",
    "prediction": "real", "base_value": "real", "sum_contributions": "real",
    "own_share": "real", "excitation_cell": "int", "excitation_value": "real",
    "inhibition_cell": "int", "inhibition_value": "real", "deletion_auc": "real",
    "insertion_auc": "real", "random_deletion_auc": "real", "random_insertion_auc": "real",
    "n_evaluations": "int", "seconds": "real",
    "model_seconds": "real", "raster": "str", "excitation_path": "str",
    "inhibition_path": "str", "signed_path": "str", "cells_path": "str", "folder": "str",
    "key": "str",
}
RESULT_FILE = "result.json"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_MODELS = {}          # (sha256, n_threads) -> SegmentationModel, per worker process


def dask_available():
    """True when ``dask.distributed`` can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("distributed") is not None and \
            importlib.util.find_spec("dask") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Region:
    """One region to explain.

    Attributes
    ----------
    id : int
        Its identifier (the feature id), recorded in the summary.
    wkb : bytes
        Polygon(s) or point(s), in ``crs_wkt``.
    raster : str, optional
        Its raster file; default the run's ``raster``.
    crs_wkt : str, optional
        The geometry's CRS; default the run's ``crs_wkt``, else the raster's.
    attributes : tuple of (str, value) pairs, optional
        The input feature's own fields (int, float, str or None), carried into the summary
        (after its own columns; a name the summary already has gets the prefix ``input_``).
    """

    id: int
    wkb: bytes
    raster: str = None
    crs_wkt: str = None
    attributes: tuple = ()


@dataclass
class RegionsRun:
    """What :func:`explain_regions` did.

    Attributes
    ----------
    summary_path : str or None
        The summary GeoPackage (layer ``regions``); None when nothing was written.
    records : list of dict
        One per region that finished (done, failed, error or skipped), in input order, with
        the :data:`SUMMARY_FIELDS`.
    n_done, n_failed, n_skipped : int
        Regions explained now, failed (status failed or error), found complete.
    cancelled : bool
        The run was cancelled; the regions not in ``records`` were not explained.
    seconds : float
    n_workers : int
    """

    summary_path: str
    records: list = field(default_factory=list)
    n_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    n_workers: int = 1


# --------------------------------------------------------------------------- regions


def raster_beside(raster, folder):
    """A region's raster path: a relative one is taken relative to ``folder`` (the regions
    layer's own folder, wherever the run is started from); absolute and ``/vsi...`` paths are
    kept."""
    if raster and not os.path.isabs(raster) and not str(raster).startswith("/vsi"):
        return os.path.normpath(os.path.join(folder, raster))
    return raster


def read_regions(path, *, layer=None, raster_field=None):
    """The features of a vector file as :class:`Region` objects, and the layer's CRS (WKT).

    ``raster_field`` names a field holding each feature's raster path (relative paths are
    relative to the vector file's folder). Features without a geometry are left out. Each
    region carries the feature's fields (:attr:`Region.attributes`).
    """
    from osgeo import gdal, ogr

    gdal.UseExceptions()
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"REGIONS: cannot open the vector file '{path}' ({exc}).") from None
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise InputError(f"REGIONS: '{path}' has no layer '{layer}'.")
    defn = lyr.GetLayerDefn()
    if raster_field and defn.GetFieldIndex(raster_field) < 0:
        names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        raise InputError(f"RASTER_FIELD: the layer has no field '{raster_field}'; its fields "
                         f"are {', '.join(names)}.")
    srs = lyr.GetSpatialRef()
    crs = srs.ExportToWkt() if srs is not None else ""
    folder = os.path.dirname(os.path.abspath(str(path)))
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    out = []
    for feat in lyr:
        geom = feat.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            continue
        raster = None
        if raster_field:
            raster = raster_beside(feat.GetField(raster_field), folder)
        attributes = tuple((name, _ogr_value(feat, i)) for i, name in enumerate(fields))
        out.append(Region(id=int(feat.GetFID()), wkb=bytes(geom.ExportToIsoWkb()),
                          raster=raster, crs_wkt=crs, attributes=attributes))
    return out, crs


def _ogr_value(feature, i):
    """Field ``i`` of an OGR feature as :func:`plain_value` gives it; dates and times in
    ISO 8601 (2026-11-30, 2026-11-30T06:12:05, as QGIS writes them)."""
    from osgeo import ogr

    if not feature.IsFieldSetAndNotNull(i):
        return None
    kind = feature.GetFieldType(i)
    if kind in (ogr.OFTDate, ogr.OFTDateTime, ogr.OFTTime):
        y, mo, d, h, mi, sec, _ = feature.GetFieldAsDateTime(i)
        day, clock = f"{y:04d}-{mo:02d}-{d:02d}", f"{h:02d}:{mi:02d}:{int(sec):02d}"
        return {ogr.OFTDate: day, ogr.OFTTime: clock}.get(kind, f"{day}T{clock}")
    return plain_value(feature.GetField(i))


def plain_value(value):
    """A field value as the summary stores it: None, int, float or str (lists as JSON)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return json.dumps([plain_value(v) for v in value], default=str)
    if isinstance(value, (bytes, bytearray)):
        return None
    return str(value)


def method_parameters(method):
    """Engine names of the parameters ``method`` takes (:mod:`.parameters`), without the
    window and onnxruntime threads (arguments of their own here)."""
    from .parameters import EXPLAIN_METHODS, for_algorithm

    if method not in EXPLAIN_METHODS:
        raise InputError(f"METHOD: unknown method {method!r}; choose one of "
                         f"{', '.join(EXPLAIN_METHODS)}.")
    return tuple(p.name for p in for_algorithm(method, engine_only=True)
                 if p.name not in ("window", "n_threads"))


def _raster_identity(raster):
    """The raster's path, and its size and modification time when it is a local file."""
    try:
        st = os.stat(raster)
        return [os.path.abspath(raster), st.st_size, int(st.st_mtime)]
    except (OSError, TypeError, ValueError):
        return [str(raster)]


def region_key(model_sha256, class_name, method, params, region_wkb, region_crs, raster,
               bands=None, window=None, faithfulness=0):
    """The SHA-256 (hex) naming a region's result: the same inputs give the same key."""
    text = json.dumps({
        "model": model_sha256, "class": class_name, "method": method,
        "params": json.dumps(params, sort_keys=True, default=str),
        "region": hashlib.sha256(region_wkb).hexdigest(),
        "region_crs": hashlib.sha256((region_crs or "").encode()).hexdigest(),
        "raster": _raster_identity(raster), "bands": list(bands or []),
        "window": window, "faithfulness": faithfulness}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _complete(folder, key):
    """The stored record of a complete region folder with this key, else None."""
    try:
        with open(os.path.join(folder, RESULT_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("status") != "done":
        return None
    for name in ("excitation_path", "inhibition_path", "signed_path", "cells_path"):
        path = record.get(name)
        if path and not os.path.exists(os.path.join(folder, path)):
            return None
    return record


# --------------------------------------------------------------------------- one region


def _to_raster_crs(wkb, crs_wkt, raster):
    """``wkb`` reprojected from ``crs_wkt`` into the raster's CRS (unchanged when the same),
    refused as the single-region algorithms refuse it (:func:`~.georef.transform_region`: no
    known transformation, e.g. a local engineering CRS, or vertices that do not come back)."""
    from .georef import region_crs_wkt, transform_region

    if not crs_wkt:
        return wkb
    target = region_crs_wkt(raster)      # a GCP raster's or a product's: its GCPs'
    if not target:
        return wkb   # read_job refuses a raster without CRS with the fix
    return transform_region(wkb, crs_wkt, target)


def _valid_region(wkb):
    from .job import region_geometry
    from .shapely_geos import import_shapely

    shapely = import_shapely()
    geom = region_geometry(wkb)
    if geom.geom_type not in ("Point", "MultiPoint", "Polygon", "MultiPolygon"):
        raise InputError(f"ROI: the region is a {geom.geom_type}; give polygons or points.")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
        if geom.geom_type == "GeometryCollection":
            geom = shapely.union_all([g for g in geom.geoms
                                      if g.geom_type in ("Polygon", "MultiPolygon")])
        if geom.is_empty:
            raise InputError("ROI: the region's polygon is invalid and has no area once "
                             "repaired. Fix the geometry (Vector > Geometry Tools > Fix "
                             "Geometries).")
        return bytes(shapely.to_wkb(geom))
    return wkb


def _strongest(result):
    """``(excitation cell, value, inhibition cell, value)``: cells of the largest and most
    negative contribution (RISE: no cell, the map's extreme pixels)."""
    if result.cells:
        values = np.array([float(np.ravel(c.value)[0]) for c in result.cells])
        hi, lo = int(np.argmax(values)), int(np.argmin(values))
        return (int(result.cells[hi].id), max(values[hi], 0.0),
                int(result.cells[lo].id), max(-values[lo], 0.0))
    return None, float(result.excitation.max()), None, float(result.inhibition.max())


def _worker_model(model_bytes, sha256, n_threads, original_path):
    """The model of ``model_bytes``, written once to this process's folder and loaded once."""
    from .model import SegmentationModel

    cached = _MODELS.get((sha256, n_threads))
    if cached is None:
        folder = None
        try:
            from distributed import get_worker

            folder = get_worker().local_directory
        except (ImportError, ValueError):
            pass
        folder = os.path.join(folder or tempfile.gettempdir(), "segx-models")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{sha256}.onnx")
        if not os.path.exists(path):
            tmp = f"{path}.{uuid.uuid4().hex}.part"
            with open(tmp, "wb") as f:
                f.write(model_bytes)
            os.replace(tmp, path)
        cached = SegmentationModel.load(path, n_threads=n_threads)
        _MODELS[(sha256, n_threads)] = cached
    cached.path = original_path      # recorded in the outputs' metadata
    return cached


def run_region(task, model, cancel=None):
    """Explain one region of :func:`explain_regions`'s plan and write its folder atomically.

    ``task`` is a dict made by :func:`explain_regions`; ``model`` a loaded model, or the
    model's bytes (then loaded once per process). Returns the region's record (a dict of
    :data:`SUMMARY_FIELDS` without the geometry). Failures are recorded, not raised, except
    cancellation.
    """
    from .job import explain_to_files, region_geometry

    started = time.perf_counter()
    folder = task["folder"]
    done = _complete(folder, task["key"])
    if done is not None:                         # a second run of the same task
        return dict(done, status="done")
    record = {name: None for name in SUMMARY_FIELDS}
    record.update(region_id=task["region_id"], raster=task["raster"], key=task["key"],
                  scene=os.path.basename(str(task["raster"] or "")), folder=folder)
    tmp = os.path.join(os.path.dirname(folder),
                       f".{os.path.basename(folder)}.part-{uuid.uuid4().hex[:12]}")
    try:
        if not task["raster"]:
            raise InputError("RASTER: the region has no raster (empty raster field). Give a "
                             "raster, or fill the field.")
        if isinstance(model, (bytes, bytearray)):
            model = _worker_model(model, task["model_sha256"], task["n_threads"],
                                  task["model_path"])
        params = dict(task["params"])
        region_geometry(task["wkb"])      # as drawn: readable, finite, not empty
        wkb = _valid_region(_to_raster_crs(task["wkb"], task["crs_wkt"], task["raster"]))
        outputs = {"excitation": "excitation.tif", "inhibition": "inhibition.tif",
                   "signed": "signed.tif", "cells": "cells.gpkg"}
        if task.get("report"):
            outputs["report"] = "report.png"
        os.makedirs(tmp)
        run = explain_to_files(model, task["raster"], wkb, task["class_name"], task["method"],
                               bands=task["bands"], window=task["window"],
                               outputs={k: os.path.join(tmp, v) for k, v in outputs.items()},
                               cancel=cancel, faithfulness_steps=task["faithfulness"],
                               **params)
        model_seconds = run.result.seconds
        result = run.result
        exc_cell, exc_val, inh_cell, inh_val = _strongest(result)
        total_exc = float(result.excitation.sum())
        own = float(result.excitation[run.job.mask].sum()) / total_exc if total_exc > 0 \
            else None
        record.update(
            status="done", message="; ".join(run.job.warnings) or None,
            prediction=run.prediction, base_value=run.base_value,
            sum_contributions=run.sum_contributions if task["method"] == "shap" else None,
            own_share=own, excitation_cell=exc_cell, excitation_value=exc_val,
            inhibition_cell=inh_cell, inhibition_value=inh_val,
            n_evaluations=int(result.n_evaluations))
        faith = run.faithfulness            # the single-region algorithm's (core.job)
        if faith is not None:
            record.update(deletion_auc=faith.deletion_auc, insertion_auc=faith.insertion_auc,
                          random_deletion_auc=faith.random_deletion_auc,
                          random_insertion_auc=faith.random_insertion_auc,
                          n_evaluations=record["n_evaluations"] + faith.n_evaluations)
            model_seconds += faith.seconds
        for name in ("excitation", "inhibition", "signed", "cells"):
            if name in run.outputs:
                record[f"{name}_path"] = outputs[name]
        record["seconds"] = time.perf_counter() - started
        record["model_seconds"] = model_seconds
        with open(os.path.join(tmp, RESULT_FILE), "w") as f:
            json.dump(dict(record, metadata=run.metadata), f, indent=1, default=str)
        try:
            os.rename(tmp, folder)
        except OSError:                          # the folder exists
            if _complete(folder, task["key"]) is not None:
                shutil.rmtree(tmp, ignore_errors=True)   # a duplicate run finished first
            else:
                shutil.rmtree(folder, ignore_errors=True)  # a stale, incomplete folder
                os.rename(tmp, folder)
        return record
    except ExplanationCancelled:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except UserError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        record.update(status="failed", message=str(exc))
    except MemoryError:
        shutil.rmtree(tmp, ignore_errors=True)
        record.update(status="failed", message="not enough memory for this region; lower "
                                               "WINDOW or BATCH_SIZE, or use fewer workers")
    except Exception:                            # a bug: recorded with its traceback
        shutil.rmtree(tmp, ignore_errors=True)
        record.update(status="error", message="unexpected error (please report it): "
                                              + traceback.format_exc()[-4000:])
    record["seconds"] = time.perf_counter() - started
    return record


# --------------------------------------------------------------------------- execution


def _code_zip():
    """A zip of this package's engine (``seg_explainer/core`` and metadata.txt), for workers.

    Its ``__init__.py`` extracts the zip beside itself on first import, so the engine runs
    from real files (``metadata.txt`` gives the version recorded in the outputs).
    """
    files = sorted(p for p in (_PACKAGE_DIR / "core").glob("*.py"))
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + p.read_bytes())
    meta = _PACKAGE_DIR / "metadata.txt"
    if meta.exists():
        digest.update(meta.read_bytes())
    path = Path(tempfile.gettempdir()) / f"segx_core_{digest.hexdigest()[:16]}.zip"
    if path.exists():
        return str(path)
    stub = (
        '"""Segmentation Explainer\'s engine, as shipped to Dask workers."""\n'
        "import os as _os\n"
        "import zipfile as _zipfile\n"
        "_here = _os.path.dirname(__file__)\n"
        "if not _os.path.isdir(_here):\n"
        "    _zip = _os.path.dirname(_here)\n"
        "    _dest = _zip + '.d'\n"
        "    if not _os.path.isdir(_os.path.join(_dest, 'seg_explainer')):\n"
        "        _tmp = _dest + '.' + str(_os.getpid())\n"
        "        with _zipfile.ZipFile(_zip) as _z:\n"
        "            _z.extractall(_tmp)\n"
        "        try:\n"
        "            _os.rename(_tmp, _dest)\n"
        "        except OSError:\n"
        "            pass\n"
        "    __path__ = [_os.path.join(_dest, 'seg_explainer')]\n")
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("seg_explainer/__init__.py", stub)
        if meta.exists():
            z.write(meta, "seg_explainer/metadata.txt")
        for p in files:
            z.write(p, f"seg_explainer/core/{p.name}")
    os.replace(tmp, path)
    return str(path)


def _same_interpreter(path):
    """True when ``path`` runs this very Python (same version and build, same base prefix).

    Inside QGIS ``sys.executable`` is not reliable: it is the QGIS binary on Windows, and on
    Linux whatever ``python3`` comes first on PATH (a pyenv or conda Python with another standard
    library, whose workers die importing ``_csv`` from this Python's paths)."""
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    probe = "import sys; print(sys.hexversion, sys.implementation.cache_tag, sys.base_prefix)"
    try:
        out = subprocess.run([path, "-c", probe], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in os.environ.items()
                                  if k not in ("PYTHONHOME", "PYTHONPATH")})
    except (OSError, subprocess.SubprocessError):
        return False
    mine = f"{sys.hexversion} {sys.implementation.cache_tag} {sys.base_prefix}"
    return out.returncode == 0 and out.stdout.strip() == mine


def _python_for_workers():
    """The interpreter local worker processes start with: this Python's own executable, found
    by asking each candidate what it is (``sys.executable`` first, then the interpreters under
    this Python's prefixes)."""
    major, minor = sys.version_info[:2]
    names = [f"python{major}.{minor}", f"python{major}", "python", "python.exe"]
    candidates = [sys.executable]
    for folder in (Path(sys.prefix) / "bin", Path(sys.prefix), Path(sys.base_prefix) / "bin",
                   Path(sys.base_prefix)):
        candidates += [str(folder / name) for name in names]
    for candidate in dict.fromkeys(candidates):      # in order, each once
        if _same_interpreter(candidate):
            return candidate
    raise DependencyError(
        "no Python interpreter matching the one QGIS runs was found to start local Dask "
        "workers with; start a Dask cluster yourself (dask scheduler; dask worker "
        "tcp://host:8786) and give its address as SCHEDULER.")


#: The address schemes of Dask's communication layers.
_SCHEMES = ("tcp", "tls", "ucx", "inproc", "ws", "wss")


def _normal_scheduler(scheduler):
    """SCHEDULER as the run takes it: None for empty, "serial" in any case and spacing."""
    if isinstance(scheduler, str):
        scheduler = scheduler.strip() or None
        if scheduler is not None and scheduler.lower() == "serial":
            return "serial"
    return scheduler


def _check_address(address):
    """An :class:`~.errors.InputError` naming SCHEDULER unless ``address`` is a Dask scheduler
    address (``tcp://host:8786``)."""
    scheme, sep, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if not sep or scheme.lower() not in _SCHEMES or not host or not port.isdecimal():
        raise InputError(f"SCHEDULER: '{address}' is not a Dask scheduler address. Give one "
                         "like tcp://host:8786, 'serial' to run in this process, or leave it "
                         "empty for a local cluster.")


class Executor:
    """Runs :func:`run_region` tasks: in this process (``"serial"``), on a LocalCluster
    started here (None), or on an existing cluster (an address or a ``distributed.Client``)."""

    def __init__(self, scheduler=None, n_workers=None):
        self.serial = scheduler == "serial"        # normalised by the caller (_normal_scheduler)
        self.client = self.cluster = None
        self._old_executable = None
        self.n_threads = None
        if self.serial:
            self.n_workers = 1
            return
        if not dask_available():
            raise DependencyError("explain_regions runs on Dask, which is not installed in "
                                  f"this Python. Install it: {DASK_INSTALL}.")
        import logging

        from distributed import Client, LocalCluster

        if scheduler is None:
            from .model import usable_cores

            cores = usable_cores()
            self.n_workers = max(1, int(n_workers or cores))
            self.n_threads = max(1, cores // self.n_workers)
            python = _python_for_workers()
            import multiprocessing.spawn

            if python != multiprocessing.spawn.get_executable():
                self._old_executable = multiprocessing.spawn.get_executable()
                multiprocessing.spawn.set_executable(python)
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1,
                                        processes=True, dashboard_address=None,
                                        silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self._own_client = True
        elif isinstance(scheduler, str):
            _check_address(scheduler)
            try:
                self.client = Client(scheduler, timeout=30)
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(f"SCHEDULER: cannot reach the Dask scheduler at {scheduler} "
                                 f"({exc}). Check the address (tcp://host:8786) and that the "
                                 "scheduler runs.") from None
            self._own_client = True
        else:
            self.client = scheduler
            self._own_client = False
        if scheduler is not None:
            self.n_workers = max(1, len(self.client.scheduler_info()["workers"]))
        # a worker plugin, not client.upload_file: that also loads the zip in the scheduler,
        # which for a LocalCluster is this process, replacing this process's package
        from distributed.diagnostics.plugin import UploadFile

        code = _code_zip()
        self.client.register_plugin(UploadFile(code), name=os.path.basename(code))

    def close(self):
        if self.client is not None and self._own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self._old_executable is not None:
            import multiprocessing.spawn

            multiprocessing.spawn.set_executable(self._old_executable)

    def run(self, tasks, model_path, model, on_record, cancel=None):
        """Run every task; ``on_record(index, record)`` as each finishes. Returns False when
        cancelled (pending tasks dropped)."""
        if self.serial:
            for i, task in enumerate(tasks):
                if cancel is not None and cancel():
                    return False
                try:
                    on_record(i, run_region(task, model, cancel=cancel))
                except ExplanationCancelled:
                    return False
            return True
        from distributed import wait

        from .interrupt import request_stop, requested

        def stopped():      # the user's cancel, or SIGINT/SIGTERM to this process
            return requested() is not None or (cancel is not None and bool(cancel()))

        with open(model_path, "rb") as f:
            shipped = self.client.scatter(f.read(), broadcast=True, hash=False)
        futures = {self.client.submit(run_region, task, shipped, key=f"segx-{task['key']}",
                                      retries=0, pure=False): i
                   for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            if stopped():
                self.client.cancel(list(pending))
                if self.cluster is not None:
                    # our own workers: end the model calls in progress, or each worker's
                    # process waits for its call to end before it exits (a shared cluster's
                    # workers are left alone: the stop would outlive this run there)
                    self.client.run(request_stop, requested() or "cancel", on_error="ignore")
                return False
            try:
                finished, pending = wait(pending, timeout=0.25, return_when="FIRST_COMPLETED")
            except TimeoutError:                 # none finished yet: look at cancel again
                continue
            for future in finished:
                i = futures[future]
                try:
                    record = future.result()
                except Exception as exc:     # KilledWorker: the region killed its workers
                    record = _failure(tasks[i], "the worker explaining this region died "
                                      f"repeatedly ({type(exc).__name__}: {exc}); it may need "
                                      "more memory than a worker has")
                on_record(i, record)
        return True


def _failure(task, message, status="failed"):
    record = {name: None for name in SUMMARY_FIELDS}
    record.update(region_id=task["region_id"], raster=task["raster"], key=task["key"],
                  scene=os.path.basename(str(task["raster"] or "")), status=status,
                  message=message, folder=task["folder"])
    return record


# --------------------------------------------------------------------------- the run


def explain_regions(regions, model_path, class_name, method, output_folder, *, raster=None,
                    raster_field=None, layer=None, crs_wkt=None, bands=None, window=None,
                    faithfulness=0, report=False, n_threads=None, scheduler=None,
                    n_workers=None, progress=None, cancel=None, log=None, regions_path=None,
                    summary_path=None, **params):
    """Explain every region and write the summary layer and each region's outputs.

    Parameters
    ----------
    regions : str or sequence of Region
        A vector file (its first layer, or ``layer``) or :class:`Region` objects.
    model_path : str
        The ONNX model file.
    class_name : str
        Name or index of the class to explain.
    method : {"shap", "rise", "occlusion"}
    output_folder : str
        Receives ``regions.gpkg`` (the summary) and ``regions/<id>-<key>/`` per region.
    raster : str, optional
        The raster of every region without one of its own.
    raster_field : str, optional
        With a vector file: the field naming each feature's raster.
    crs_wkt : str, optional
        CRS of the regions' geometries (a vector file's own CRS by default; else the raster's).
    bands, window
        As in :func:`~.job.read_job`.
    faithfulness : int
        0 = off; else deletion/insertion AUC with this many steps (2 x (steps + 1) more
        evaluations per region).
    report : bool
        Also write each region's report figure (matplotlib; slow).
    n_threads : int, optional
        onnxruntime threads per worker; default cores // workers on a local cluster.
    scheduler : None, "serial", str or distributed.Client
        None: a LocalCluster here; "serial": this process, no Dask; "tcp://host:8786": an
        existing Dask scheduler; a Client: that client's cluster.
    n_workers : int, optional
        Workers of the LocalCluster (default one per core).
    progress : callable(float), optional
        Fraction of the regions finished.
    cancel : callable() -> bool, optional
        Stops submitting; the regions finished so far stay complete, the others are absent.
    log : callable(kind, text), optional
    regions_path : str, optional
        The file the ``Region`` objects come from (a vector file given as ``regions`` is its
        own): the output folder may not overwrite it, and relative raster paths are taken
        relative to its folder.
    summary_path : str, optional
        The summary GeoPackage; default ``output_folder/regions.gpkg``.
    **params
        The method's parameters (:mod:`.parameters`; :func:`method_parameters`).

    Returns
    -------
    RegionsRun

    Raises
    ------
    UserError
        An input that cannot work for any region (model, class, method, parameter, folder).
    """
    from .job import resolve_class
    from .model import SegmentationModel
    from .outputs import check_destinations, check_writable
    from .parameters import check_parameters

    started = time.perf_counter()
    say = log or (lambda kind, text: None)
    names = method_parameters(method)
    try:
        params = check_parameters(names, params)
    except TypeError as exc:
        raise TypeError(f"explain_regions() got {exc}") from None
    if params.get("baseline") != "constant":
        params.pop("baseline_value", None)
    if isinstance(regions, (str, os.PathLike)):
        regions_path = str(regions)
        regions, layer_crs = read_regions(regions, layer=layer, raster_field=raster_field)
        crs_wkt = crs_wkt or layer_crs
    regions = list(regions)
    if regions_path:
        folder_of = os.path.dirname(os.path.abspath(str(regions_path)))
        regions = [replace(r, raster=raster_beside(r.raster, folder_of))
                   if r.raster else r for r in regions]
    if not regions:
        raise InputError("REGIONS: there are no regions with a geometry to explain.")
    if not os.path.isfile(str(model_path)):
        raise InputError(f"MODEL: the model file '{model_path}' does not exist. Choose an "
                         ".onnx segmentation model file.")
    key = "OUTPUT" if summary_path else "OUTPUT_FOLDER"
    summary_path = str(summary_path or os.path.join(str(output_folder), "regions.gpkg"))
    check_destinations({key: summary_path},
                       {"REGIONS": regions_path, "INPUT": raster, "MODEL": model_path},
                       kinds={key: "gpkg"})
    check_writable(summary_path, key)
    model = SegmentationModel.load(str(model_path), n_threads=n_threads)
    class_name = model.class_names[resolve_class(class_name, model.class_names, say)]
    folder = os.path.join(str(output_folder), "regions")
    scheduler = _normal_scheduler(scheduler)
    n_workers = _local_workers(scheduler, n_workers, say)
    executor = Executor(scheduler, n_workers)
    try:
        os.makedirs(folder, exist_ok=True)
        threads = n_threads or executor.n_threads
        tasks, records, skipped = [], [None] * len(regions), 0
        same = {}        # key -> indices of the later regions with the same inputs
        for i, region in enumerate(regions):
            source = region.raster or raster
            region_crs = region.crs_wkt or crs_wkt
            key = region_key(model.sha256, class_name, method, params, region.wkb, region_crs,
                             source, bands, window, faithfulness)
            task = {"index": i, "region_id": region.id, "wkb": region.wkb,
                    "crs_wkt": region_crs, "raster": source, "key": key,
                    "folder": os.path.join(folder, f"{region.id}-{key[:16]}"),
                    "class_name": class_name, "method": method, "params": params,
                    "bands": list(bands) if bands else None, "window": window,
                    "faithfulness": int(faithfulness or 0), "report": bool(report),
                    "model_path": str(model_path), "model_sha256": model.sha256,
                    "n_threads": threads}
            if key in same:          # the same geometry, raster and parameters: one result
                same[key].append(i)
                continue
            same[key] = []
            stored = _complete(task["folder"], key)
            if stored is not None:
                records[i] = dict(stored, message="complete from an earlier run")
                skipped += 1
            else:
                tasks.append(task)
        def share(record):
            """``record`` also for the later regions with its inputs; how many they are."""
            copies = same[record["key"]]
            for i in copies:
                records[i] = dict(record, region_id=regions[i].id)
            return len(copies)

        for rec in [r for r in records if r is not None]:   # the complete ones
            skipped += share(rec)
        _say_duplicates(regions, same, say)
        say("info", f"{len(regions)} regions: {skipped} already complete, {len(tasks)} to "
                    f"explain on {executor.n_workers} worker(s)"
                    + (f", {threads} onnxruntime thread(s) each" if threads else ""))
        state = {"finished": skipped}
        if progress is not None:
            progress(state["finished"] / len(regions))

        def on_record(j, record):
            index = tasks[j]["index"]
            records[index] = record
            state["finished"] += 1 + share(record)
            if record["status"] in ("failed", "error"):
                say("warning", f"Region {record['region_id']}: {record['message']}")
            if progress is not None:
                progress(state["finished"] / len(regions))

        completed = executor.run(tasks, model_path, model if executor.serial else None,
                                 on_record, cancel=cancel)
    finally:
        executor.close()
    if completed or executor.cluster is not None or executor.serial:
        _remove_partial(folder)     # no worker of ours can still be writing
    kept = [(region, rec) for region, rec in zip(regions, records) if rec is not None]
    for _, rec in kept:
        for name in ("excitation_path", "inhibition_path", "signed_path", "cells_path"):
            if rec.get(name):
                rec[name] = os.path.join(rec["folder"], os.path.basename(rec[name]))
        rec.pop("metadata", None)
    from .job import run_metadata

    meta = run_metadata(model, class_name, method, params)
    meta.update(regions=str(len(regions)), bands=json.dumps(bands), window=str(window))
    write_summary(summary_path, [r for r, _ in kept], [rec for _, rec in kept],
                  crs_wkt or _first_raster_crs(regions, raster), meta)
    run = RegionsRun(summary_path=summary_path, records=[rec for _, rec in kept],
                     n_done=sum(r["status"] == "done" for _, r in kept) - skipped,
                     n_failed=sum(r["status"] in ("failed", "error") for _, r in kept),
                     n_skipped=skipped, cancelled=not completed,
                     seconds=time.perf_counter() - started, n_workers=executor.n_workers)
    return run


def _say_duplicates(regions, same, say):
    """Warn of feature ids used more than once, and of regions explained once for several
    features (same geometry, raster and parameters)."""
    from collections import Counter

    shared = sorted(i for i, n in Counter(r.id for r in regions).items() if n > 1)
    if shared:
        ids = ", ".join(str(i) for i in shared[:10]) + (", ..." if len(shared) > 10 else "")
        say("warning", f"REGIONS: {len(shared)} feature id(s) are used by more than one feature "
                       f"({ids}); their rows in the summary share a region_id. The input's own "
                       "fields, carried into the summary, tell them apart.")
    copies = sum(len(v) for v in same.values())
    if copies:
        say("info", f"{copies} region(s) have the same geometry, raster and parameters as an "
                    "earlier one: each is explained once and its result shared.")


def _local_workers(scheduler, n_workers, say):
    """``n_workers`` for the local cluster, at most the usable cores (with a warning: more
    worker processes than cores only slow the machine and each holds the model); None when
    the run is not on a local cluster (a warning if workers were asked for there)."""
    from .model import usable_cores

    if not n_workers:
        return None
    if scheduler is not None:
        where = "in this process" if scheduler == "serial" else "on the given Dask cluster"
        say("warning", f"WORKERS ({n_workers}) sets the workers of the local cluster only; "
                       f"this run is {where}, so it is not used.")
        return None
    cores = usable_cores()
    if int(n_workers) > cores:
        say("warning", f"WORKERS: {n_workers} local workers were asked for, but this process "
                       f"may use {cores} core(s); {cores} are started. More worker processes "
                       "than cores only slow the machine down, and each holds the model in "
                       "memory.")
        return cores
    return int(n_workers)


def _remove_partial(folder):
    """Remove hidden ``.<name>.part-*`` folders left by a worker that died mid-region."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and ".part-" in name:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _first_raster_crs(regions, raster):
    from .georef import region_crs_wkt

    for source in [raster] + [r.raster for r in regions]:
        if source:
            try:
                return region_crs_wkt(source)
            except UserError:
                continue
    return ""


def write_summary(path, regions, records, crs_wkt, metadata):
    """The summary layer ``regions`` of ``path`` (a GeoPackage), written atomically: one
    feature per record, with the region's geometry (in ``crs_wkt``), :data:`SUMMARY_FIELDS`,
    then the regions' own fields (:func:`input_columns`)."""
    from osgeo import ogr

    from .geoio import write_layer

    geoms = [ogr.CreateGeometryFromWkb(r.wkb) for r in regions]
    flat = {ogr.GT_Flatten(g.GetGeometryType()) for g in geoms}
    if flat and flat <= {ogr.wkbPoint, ogr.wkbMultiPoint}:
        kind, force = ogr.wkbMultiPoint, ogr.ForceToMultiPoint
    else:
        kind, force = ogr.wkbMultiPolygon, ogr.ForceToMultiPolygon
    extra = input_columns(regions)
    columns = dict(SUMMARY_FIELDS, **{out: k for _, out, k in extra})
    rows = [dict(record, **{out: dict(region.attributes).get(name) for name, out, _ in extra})
            for record, region in zip(records, regions)]
    return write_layer(path, "GPKG", "regions", kind,
                       [force(geom).ExportToWkb() for geom in geoms], columns, rows, crs_wkt,
                       metadata=metadata)


def input_columns(regions):
    """``(input name, summary name, kind)`` of the regions' own fields, in their order: kind
    "int", "real" or "str" from the values; a name the summary has already (its own columns,
    a GeoPackage's ``fid`` and ``geom``, in any case) gets the prefix ``input_``."""
    kinds = {}
    for region in regions:
        for name, value in region.attributes:
            seen = kinds.setdefault(name, set())
            if value is not None:
                seen.add("int" if isinstance(value, int) else
                         "real" if isinstance(value, float) else "str")
    taken = {n.lower() for n in SUMMARY_FIELDS} | {"fid", "geom", "geometry"}
    out = []
    for name, seen in kinds.items():
        kind = "str" if "str" in seen or not seen else "real" if "real" in seen else "int"
        column = name
        while column.lower() in taken:
            column = f"input_{column}"
        taken.add(column.lower())
        out.append((name, column, kind))
    return out
