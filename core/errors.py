"""Exceptions raised by the engine."""


class ExplanationCancelled(Exception):
    """Raised when the caller's ``cancel()`` callback asked the run to stop.

    The engine checks ``cancel()`` before every batch of model evaluations, so a run
    stops within one batch.
    """


class ModelError(ValueError):
    """A model file that cannot be used: the message names the problem and the fix."""


class DependencyError(ValueError):
    """A Python package the engine needs is missing or cannot work in this process; the message
    says which package and how to install a version that works."""
