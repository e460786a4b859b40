"""Writing a run's outputs transactionally: all of them appear together, or none.

Every output (with its side-car files) is written under a hidden temporary name beside its
destination; :meth:`OutputSet.commit` renames them all at the end and
:meth:`OutputSet.rollback` removes them. Failures a user can fix (an unwritable folder, a full
disk) become :class:`~.errors.OutputError` with the fix.

Before any work, :func:`check_destinations` refuses destinations that cannot be right: two
outputs on one file, an output on a file of an input (the raster, the model, the region
layer), a folder, a file name whose extension is not the format written (rasters are
GeoTIFF, the report PNG, cells one of :data:`~.geoio.VECTOR_DRIVERS`; the format is never
guessed from a misleading name), a read-only existing file, a name too long for the folder.

Replacing (:func:`replace_families`): the existing outputs and their stale side files
(``.ovr``, ``.aux.xml``, ``.msk``, a shapefile's ``.qix``/``.sbn``, a GeoPackage's ``-wal``
...; :func:`stale_side_files`) are first moved aside under hidden names, then the new files
are renamed into place; if any step fails, the new files are removed and the old ones moved
back, so the old outputs stay whole.
"""

import contextlib
import errno
import os
import re
import stat
import tempfile
import uuid

from .errors import OutputError

__all__ = ["NO_SPACE", "OUTPUT_KINDS", "OutputSet", "check_destinations", "check_writable",
           "output_failure", "replace_families", "stale_side_files"]

#: The format each output key is written in: "raster" (GeoTIFF), "vector", "png".
OUTPUT_KINDS = {"EXCITATION": "raster", "INHIBITION": "raster", "SIGNED": "raster",
                "PROBABILITIES": "raster", "CLASSES": "raster", "CELLS": "vector",
                "REPORT": "png", "REGION": "gpkg"}
#: QGIS's destination forms that name a layer inside a data source, not a file.
_LAYER_SCHEMES = ("ogr", "postgres", "postgis", "spatialite", "memory", "mssql", "oracle",
                  "hana", "mysql")
#: Extensions accepted per kind (vector: those of :data:`~.geoio.VECTOR_DRIVERS`).
RASTER_EXTENSIONS = (".tif", ".tiff")
PNG_EXTENSIONS = (".png",)
#: A file without any of these is read-only, for root too.
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
#: The longest suffix a writer adds to an output's name (GDAL's ``.aux.xml``).
_LONGEST_SIDE_SUFFIX = len(".ovr.aux.xml")
#: Side files named after the whole file name (``out.tif.ovr``), any format.
_FILE_SIDES = (".aux.xml", ".ovr", ".ovr.aux.xml", ".msk", ".aux", ".xml", "-wal", "-shm",
               "-journal")
#: Side files named after the stem (``out.tfw``), for the extensions they belong to.
_STEM_SIDES = {".tif": (".tfw", ".tifw", ".wld", ".aux", ".rrd"),
               ".tiff": (".tfw", ".tiffw", ".wld", ".aux", ".rrd"),
               ".png": (".pgw", ".pngw", ".wld"),
               ".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".fix",
                        ".qpj", ".atx", ".ain", ".aih", ".ixs", ".mxs", ".shp.xml")}

NO_SPACE = "no space left on the output disk; free space or choose another folder"
#: GDAL reports a full disk as a RuntimeError with one of these in its text.
_NO_SPACE_TEXT = re.compile(r"no space left|disk full|free disk space", re.IGNORECASE)


def check_writable(path, key):
    """Raise :class:`~.errors.OutputError` (starting with ``key``) unless ``path`` can be
    created.

    Nothing is left behind: a missing folder is not created here (the writer creates it), the
    test file is removed at once.
    """
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, f"'{existing}' is a file, not a folder")
        fd, probe = tempfile.mkstemp(prefix=".segx-write-test.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"{key}: {NO_SPACE} ({folder}).") from None
        raise OutputError(
            f"{key}: cannot write to the folder '{folder}' ({exc.strerror or exc}). Choose a "
            "folder you can write to.") from None


def _name_max(folder):
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _existing_folder(path):
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return folder


def _input_files(source):
    """The files an input is made of: itself if it is a file, and what GDAL lists for it
    (a VRT's sources, a SAFE product's measurement files, a subdataset's file)."""
    source = os.fspath(source)
    files = [source] if os.path.isfile(source) else []
    try:
        from osgeo import gdal

        gdal.UseExceptions()
        ds = gdal.OpenEx(source)
        files += [f for f in (ds.GetFileList() or []) if os.path.isfile(f)]
    except Exception:  # noqa: BLE001 (not a dataset: only the file itself is the input)
        pass
    return files


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_destinations(outputs, inputs=None, kinds=None):
    """Refuse, before any work, output paths that cannot be right (:class:`~.errors.OutputError`).

    Parameters
    ----------
    outputs : dict
        ``{KEY: path}`` of the outputs asked for (empty paths are skipped).
    inputs : dict, optional
        ``{KEY: path or GDAL dataset name}`` of the inputs (``INPUT``, ``MODEL``, ``ROI``);
        no output may be one of their files.
    kinds : dict, optional
        ``{KEY: "raster" | "vector" | "png"}``; default :data:`OUTPUT_KINDS`. A key of
        neither is not checked for its extension.

    Each message names the output key, the problem and the fix. Nothing is created.
    """
    from .geoio import VECTOR_DRIVERS

    kinds = dict(OUTPUT_KINDS, **(kinds or {}))
    allowed = {"raster": RASTER_EXTENSIONS, "png": PNG_EXTENSIONS,
               "vector": tuple(VECTOR_DRIVERS), "gpkg": (".gpkg",)}
    given = {k: os.fspath(v) for k, v in outputs.items() if v}
    for key, path in given.items():
        scheme = path.split(":", 1)[0].lower() if ":" in path else ""
        if scheme in _LAYER_SCHEMES:
            raise OutputError(
                f"{key}: '{path[:80]}' names a layer inside a data source ({scheme}:); the "
                "outputs are written as files only. Give a file name (e.g. "
                f"{key.lower()}{allowed.get(kinds.get(key), ('',))[0]}).")
    for in_key, source in (inputs or {}).items():
        if not source:
            continue
        files = _input_files(source)
        for key, path in given.items():
            if any(_same_file(path, f) for f in files):
                raise OutputError(
                    f"{key}: '{path}' is a file of the input {in_key}; writing it would "
                    "destroy the input. Choose another file name.")
    seen = {}
    for key, path in given.items():
        name = os.path.basename(path)
        kind = kinds.get(key)
        if os.path.isdir(path) or not name:
            example = key.lower() + (allowed[kind][0] if kind in allowed else "")
            raise OutputError(
                f"{key}: '{path}' is a folder, not a file name. Give a file name inside it "
                f"(e.g. {os.path.join(path, example)}).")
        ext = os.path.splitext(name)[1].lower()
        if kind in allowed and ext not in allowed[kind]:
            written = {"raster": "a GeoTIFF", "png": "a PNG image",
                       "vector": "a vector file", "gpkg": "a GeoPackage"}[kind]
            raise OutputError(
                f"{key}: '{name}' would receive {written}, which its extension "
                f"'{ext or '(none)'}' does not say. Name it with "
                f"{' or '.join(allowed[kind])}.")
        limit = _name_max(_existing_folder(path))
        if len(name.encode("utf-8", "surrogateescape")) + _LONGEST_SIDE_SUFFIX > limit:
            raise OutputError(
                f"{key}: the file name is {len(name)} characters long; this folder accepts "
                f"{limit}, and the side files GDAL writes (name + '.ovr.aux.xml') must fit "
                f"too. Use a name of at most {limit - _LONGEST_SIDE_SUFFIX} characters.")
        if os.path.exists(path) and (not os.access(path, os.W_OK) or not
                                     os.stat(path).st_mode & _WRITE_BITS):
            raise OutputError(
                f"{key}: the existing file '{path}' is read-only, so it is kept. Make it "
                "writable, or choose another file name.")
        real = os.path.normcase(os.path.realpath(path))
        if real in seen:
            raise OutputError(
                f"{key} and {seen[real]} are the same file ('{path}'). Give every output its "
                "own file name.")
        seen[real] = key


def stale_side_files(final):
    """Existing side files of ``final`` that belong to the file it replaces: overviews
    (``.ovr``), GDAL's ``.aux.xml``, masks, world files, a shapefile's indexes (``.qix``,
    ``.sbn``) and parts, a GeoPackage's ``-wal``/``-shm``... (matched ignoring case)."""
    final = os.path.abspath(os.fspath(final))
    folder, name = os.path.split(final)
    stem, ext = os.path.splitext(name)
    wanted = {(name + s).lower() for s in _FILE_SIDES}
    wanted |= {(stem + s).lower() for s in _STEM_SIDES.get(ext.lower(), ())}
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(os.path.join(folder, n) for n in names if n.lower() in wanted
                  and n != name)


def _aside_name(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name[:40]}.{uuid.uuid4().hex[:12]}.old")


def replace_families(plan):
    """Rename each ``(tmp, final)`` of ``plan`` (with its side-cars) into place, together.

    The destinations that exist and their stale side files (:func:`stale_side_files`) are
    moved aside first; on any failure every new file is removed and the old files are moved
    back, then the exception propagates. Returns the new paths.
    """
    from .geoio import file_family

    moves = []
    for tmp, final in plan:
        family = file_family(tmp, final)
        if not family or family[-1][0] != os.path.abspath(os.fspath(tmp)):
            raise FileNotFoundError(f"the output {final} was not written")
        moves.extend(family)
    targets = [dst for _, dst in moves]
    old = [p for p in targets if os.path.lexists(p)]
    old += [p for _, final in plan for p in stale_side_files(final)
            if p not in targets and p not in old]
    aside, done = [], []
    try:
        for path in old:
            spare = _aside_name(path)
            os.rename(path, spare)
            aside.append((path, spare))
        for src, dst in moves:
            os.replace(src, dst)
            done.append(dst)
    except BaseException:
        for dst in done:
            with contextlib.suppress(OSError):
                os.unlink(dst)
        for path, spare in reversed(aside):
            with contextlib.suppress(OSError):
                os.rename(spare, path)
        raise
    for _, spare in aside:
        with contextlib.suppress(OSError):
            os.unlink(spare)
    return done


def is_disk_full(exc):
    """True when ``exc`` (an OSError, or GDAL's RuntimeError) says the disk is full."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
        bool(_NO_SPACE_TEXT.search(str(exc)))


def output_failure(exc, key=None):
    """The :class:`~.errors.OutputError` for ``exc`` raised while writing output ``key``,
    or None when ``exc`` is not a writing failure (a bug: let it propagate)."""
    where = f"{key}: " if key else ""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, MemoryError):
        return OutputError(f"{where}not enough memory to write the output. Lower WINDOW or "
                           "BATCH_SIZE.")
    if isinstance(exc, (OSError, RuntimeError)) and is_disk_full(exc):
        return OutputError(f"{where}{NO_SPACE}. Nothing was written.")
    if isinstance(exc, OSError):
        return OutputError(
            f"{where}cannot write '{exc.filename or ''}' ({exc.strerror or exc}). Choose a "
            "folder you can write to. Nothing was written.")
    if isinstance(exc, RuntimeError):          # a GDAL or OGR driver error
        return OutputError(f"{where}writing the output failed ({str(exc)[:300]}). "
                           "Nothing was written.")
    return None


class OutputSet:
    """Temporary names for a run's outputs, renamed into place together by :meth:`commit`.

    Use as a context manager: leaving the block with an exception rolls back.

    Examples
    --------
    >>> with OutputSet() as files:                                     # doctest: +SKIP
    ...     write_geotiff(files.temporary("out/a.tif"), ...)
    ...     files.commit()
    """

    def __init__(self):
        self._items = []
        self._made = []  # folders created for the outputs, removed again on rollback
        self.committed = []

    def temporary(self, final):
        """A temporary name for the destination ``final`` (its folder is created)."""
        from .geoio import temporary_name

        folder = os.path.dirname(os.path.abspath(final))
        missing = []
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            os.mkdir(folder)
            self._made.append(folder)
        tmp = temporary_name(final)
        self._items.append((tmp, final))
        return tmp

    def commit(self):
        """Rename every temporary file to its destination (:func:`replace_families`); on
        failure the old outputs are back in place and the temporary files removed."""
        try:
            self.committed = replace_families(self._items)
            self._made = []
        except BaseException:
            self.committed = []
            self.rollback()
            raise
        self._items = []

    def rollback(self):
        """Remove every temporary file (and side-car) written so far."""
        from .geoio import remove_family

        for tmp, _ in self._items:
            remove_family(tmp)
        self._items = []
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.rollback()
        return False
