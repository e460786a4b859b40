"""Import shapely only when its GEOS can coexist with the GEOS already loaded in the process.

A shapely wheel bundles its own GEOS. Inside QGIS (desktop or ``qgis_process``) the system GEOS
is already loaded globally, and the dynamic linker binds the wheel's GEOS C API to the system's
C++ library: when the two differ in minor version, the first geometry operation crashes the
process (seen with shapely 2.1 / GEOS 3.13 in QGIS 3.40 on bookworm, GEOS 3.11). This module
refuses that combination with a message instead.
"""

import ctypes
import ctypes.util

__all__ = ["import_shapely", "loaded_geos_version", "system_geos_version", "shapely_range_for_geos"]

#: GEOS minor version -> the shapely releases whose wheels bundle that GEOS
SHAPELY_FOR_GEOS = {(3, 11): ">=2.0,<2.1", (3, 13): ">=2.1,<2.2", (3, 14): ">=2.2,<2.3"}


def _geos_version_in(library):
    """(major, minor) that ``GEOSversion`` reports in a library (None: the process's global
    symbols), or None when there is no such library or function."""
    try:
        version = ctypes.CDLL(library).GEOSversion
    except (AttributeError, OSError):
        return None
    version.restype = ctypes.c_char_p
    return _major_minor(version().decode())


def loaded_geos_version():
    """(major, minor) of a GEOS C library loaded globally in this process, or None."""
    return _geos_version_in(None)


def system_geos_version():
    """(major, minor) of the GEOS this process uses, else of the system's libgeos_c, or None
    (standard library only: ``ui/pip_rules.py`` uses it before anything is installed)."""
    loaded = loaded_geos_version()
    if loaded is not None:
        return loaded
    name = ctypes.util.find_library("geos_c")
    return _geos_version_in(name) if name else None


def shapely_range_for_geos(geos):
    """The shapely version range whose wheels bundle GEOS ``geos`` (major, minor), or None."""
    return SHAPELY_FOR_GEOS.get(tuple(geos[:2])) if geos else None


def _major_minor(text):
    parts = text.split("-")[0].split(".")
    return int(parts[0]), int(parts[1])


def import_shapely(loaded=None):
    """The shapely module, after checking its GEOS against the one this process already uses.

    Raises
    ------
    DependencyError
        shapely is missing, or is older than 2.0, or bundles a GEOS whose minor version
        differs from the GEOS loaded by QGIS / GDAL in this process.
    """
    from .errors import DependencyError

    try:
        import shapely
    except ImportError as exc:
        raise DependencyError(
            "shapely is not installed; install shapely 2 (the plugin's dock offers it, or "
            "'pip install shapely')") from exc
    if not hasattr(shapely, "contains_xy"):   # the shapely 2 API (Debian's says "0+unknown")
        raise DependencyError(f"shapely {shapely.__version__} is too old: install shapely 2")
    loaded = loaded_geos_version() if loaded is None else loaded
    bundled = tuple(shapely.geos_version[:2])
    if loaded is not None and bundled != tuple(loaded):
        wanted = shapely_range_for_geos(loaded)
        fix = (f"install 'shapely{wanted}' (its wheels carry GEOS {loaded[0]}.{loaded[1]})"
               if wanted else "install shapely built against the system GEOS "
                              "(e.g. your distribution's python3-shapely)")
        raise DependencyError(
            f"shapely {shapely.__version__} carries GEOS {bundled[0]}.{bundled[1]}, but this "
            f"QGIS/GDAL already uses GEOS {loaded[0]}.{loaded[1]}; mixing them crashes QGIS. "
            f"{fix[0].upper() + fix[1:]}.")
    return shapely
