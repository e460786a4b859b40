"""Exceptions raised by the engine.

Every failure a user can fix is a :class:`UserError`: its message names the problem and the
fix, and callers (Processing, the dock, scripts) show it as it is. Anything else that escapes
the engine is a bug and must reach the user as one, with its traceback.

::

    UserError (ValueError)
    +-- InputError        a parameter, raster, region or class that cannot work
    +-- ModelError        a model file that cannot be used, or a model returning non-probabilities
    |   +-- ModelFileError   (core.onnx_check) external data or custom operators
    +-- DependencyError   a Python package missing or unusable in this process
    +-- OutputError       an output that cannot be written (folder, disk space)
    ExplanationCancelled  the caller's cancel() asked the run to stop (not an error)
    InputWarning (UserWarning)  an input the engine changed, saying what and how many
"""

__all__ = ["DependencyError", "ExplanationCancelled", "InputError", "InputWarning",
           "ModelError", "OutputError", "UserError"]


class ExplanationCancelled(Exception):
    """Raised when the caller's ``cancel()`` callback asked the run to stop.

    The engine checks ``cancel()`` before every batch of model evaluations, so a run
    stops within one batch.
    """


class UserError(ValueError):
    """A failure the user can fix; the message names the problem and the fix.

    A ``ValueError``, so code catching ``ValueError`` for bad arguments keeps working.
    """


class InputError(UserError):
    """A parameter, raster, region or class that cannot work; the message says what to change.

    Messages about one Processing parameter start with its key (``"BANDS: ..."``).
    """


class ModelError(UserError):
    """A model file that cannot be used: the message names the problem and the fix."""


class DependencyError(UserError):
    """A Python package the engine needs is missing or cannot work in this process; the message
    says which package and how to install a version that works."""


class OutputError(UserError):
    """An output that cannot be written (a folder that cannot be written, a full disk)."""


class InputWarning(UserWarning):
    """An input the engine changed rather than refused (values made nodata, a thread count
    lowered); the message says what, how many and why."""
