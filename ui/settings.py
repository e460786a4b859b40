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


#: Settings written since values equal to their default are no longer stored (a default the
#: user never changed then follows the plugin's). Earlier versions stored every value.
VERSION = 2
#: Defaults of earlier versions, ``{name: value}``: a value stored by an earlier version and
#: equal to its default then is dropped once, so that the new default applies.
FORMER_DEFAULTS = {"BATCH_SIZE": 1}


def save(table):
    """Save each row of ``table`` whose getter gives a value (None saves nothing); a value
    equal to the row's default is removed instead, so a later default applies to it."""
    settings = QgsSettings()
    for name, get, _, default in table:
        value = get()
        if value is None:
            continue
        if value == default:
            settings.remove(key(name))
        else:
            settings.setValue(key(name), value)
    settings.setValue(key("settings_version"), VERSION)


def _forget_former_defaults(settings):
    """Once, for settings an earlier version stored: drop the values that were its defaults."""
    try:
        version = int(settings.value(key("settings_version"), 1))
    except (TypeError, ValueError):
        version = 1
    if version >= VERSION:
        return
    for name, former in FORMER_DEFAULTS.items():
        if str(settings.value(key(name), "")) == str(former):
            settings.remove(key(name))
    settings.setValue(key("settings_version"), VERSION)


def restore(table):
    """Restore the rows of ``table`` in order. A value the setter refuses (saved by another
    version) gives the row's default; a bool default reads "true" back as True."""
    settings = QgsSettings()
    _forget_former_defaults(settings)
    for name, _, put, default in table:
        value = settings.value(key(name), default)
        if isinstance(default, bool):      # QgsSettings may give "true" back
            value = value if isinstance(value, bool) else str(value).lower() == "true"
        try:
            put(value)
        except (TypeError, ValueError):    # saved by another version: the default
            put(default)
