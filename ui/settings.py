"""What the dock remembers between sessions: QgsSettings values under ``seg_explainer/``, saved
and restored from one table of ``(name, getter, setter, default)`` rows (the dock's
:meth:`~.dock.SegExplainerDock.settings_table`)."""

from qgis.core import QgsSettings

__all__ = ["SETTINGS", "key", "restore", "save"]

#: The QgsSettings group of every value the plugin remembers.
SETTINGS = "seg_explainer"


def key(name):
    """The QgsSettings key of ``name``."""
    return f"{SETTINGS}/{name}"


def save(table):
    """Save each row of ``table`` whose getter gives a value (None saves nothing)."""
    settings = QgsSettings()
    for name, get, _, _ in table:
        if get() is not None:
            settings.setValue(key(name), get())


def restore(table):
    """Restore the rows of ``table`` in order. A value the setter refuses (saved by another
    version) gives the row's default; a bool default reads "true" back as True."""
    settings = QgsSettings()
    for name, _, put, default in table:
        value = settings.value(key(name), default)
        if isinstance(default, bool):      # QgsSettings may give "true" back
            value = value if isinstance(value, bool) else str(value).lower() == "true"
        try:
            put(value)
        except (TypeError, ValueError):    # saved by another version: the default
            put(default)
