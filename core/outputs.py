"""Writing a run's outputs transactionally: all of them appear together, or none.

Every output (with its side-car files) is written under a hidden temporary name beside its
destination; :meth:`OutputSet.commit` renames them all at the end and
:meth:`OutputSet.rollback` removes them. Failures a user can fix (an unwritable folder, a full
disk) become :class:`~.errors.OutputError` with the fix.
"""

import contextlib
import errno
import os
import re
import tempfile

from .errors import OutputError

__all__ = ["NO_SPACE", "OutputSet", "check_writable", "output_failure"]

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
        """Rename every temporary file to its destination; on failure undo what was renamed."""
        from .geoio import commit_family

        try:
            for tmp, final in self._items:
                self.committed.extend(commit_family(tmp, final))
            self._made = []
        except BaseException:
            for path in self.committed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
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
