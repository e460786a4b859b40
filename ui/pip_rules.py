"""The rules pip follows whenever it installs this plugin's Python packages.

Shared by ``scripts/setup.sh`` (the developer's ``.venv``) and the dock's dependency installer
(``ui/deps.py``), so both install the same version ranges the same way:

* the ranges come from ``requirements.txt`` (shipped with the plugin), with environment markers
  for each Python version, which pip evaluates itself;
* numpy, scipy and matplotlib are pinned to the versions the running Python already has, the
  ones QGIS was built with: pip never installs a second numpy;
* shapely is the system's where that is shapely 2 (built on the system GEOS), otherwise held to
  the releases whose wheels carry the GEOS that QGIS and GDAL use (two GEOS versions in one QGIS
  process crash it; see ``core/shapely_geos.py``);
* binary wheels only (``--only-binary=:all:``): no source builds inside QGIS.

Standard library only, so it runs as ``python3 ui/pip_rules.py constraints`` before anything
else is installed.
"""

import importlib.metadata
import json
import importlib.util
import re
import sys
from pathlib import Path

__all__ = ["PINNED", "REQUIREMENTS_FILE", "PIP_OPTIONS", "constraints_text", "requirement_lines",
           "project_name", "system_provided"]

#: Packages QGIS (or Debian) is built against: pinned, never upgraded by pip.
PINNED = ("numpy", "scipy", "matplotlib")
REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "requirements.txt"
PIP_OPTIONS = ("--only-binary=:all:", "--disable-pip-version-check", "--no-input")


def _shapely_geos():
    """core/shapely_geos.py, loaded by path (it needs only the standard library)."""
    path = Path(__file__).resolve().parent.parent / "core" / "shapely_geos.py"
    spec = importlib.util.spec_from_file_location("_segx_shapely_geos", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def constraints_text(version_of=None, geos=None):
    """pip constraints: every installed package of :data:`PINNED` at its version, and shapely
    to the releases carrying the system's GEOS.

    ``version_of`` maps a distribution name to its version (or raises
    ``importlib.metadata.PackageNotFoundError``); the running interpreter's by default.
    ``geos`` is the system GEOS (major, minor); found with ctypes by default.
    """
    version_of = version_of or importlib.metadata.version
    lines = []
    for name in PINNED:
        try:
            lines.append(f"{name}=={version_of(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    if "shapely" not in system_provided():   # else pip is never asked for shapely at all
        module = _shapely_geos()
        wanted = module.shapely_range_for_geos(geos or module.system_geos_version())
        if wanted:
            lines.append(f"shapely{wanted}")
    return "".join(line + "\n" for line in lines)


def system_provided():
    """Projects of requirements.txt that the system already provides in a usable version, so
    pip is not asked for them: shapely 2 from the distribution (Debian trixie and sid ship it
    built on the system GEOS; its metadata says version "0+unknown", so the API is checked)."""
    provided = set()
    try:
        import shapely
    except ImportError:
        return provided
    if hasattr(shapely, "contains_xy") and hasattr(shapely, "geos_version"):
        provided.add("shapely")
    return provided


def project_name(line):
    """The normalised project name a requirement line asks for (``scikit-image``, ...)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def requirement_lines(projects=None, path=REQUIREMENTS_FILE):
    """The requirement lines (markers included) of a requirements file and the files it
    includes with ``-r``, optionally only those for the given project names."""
    wanted = None if projects is None else {project_name(p) for p in projects}
    lines = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(projects, Path(path).parent / line[3:].strip())
            continue
        if not line or line.startswith("-"):
            continue
        if wanted is None or project_name(line) in wanted:
            lines.append(line)
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["constraints"]:
        sys.stdout.write(constraints_text())
    elif len(sys.argv) == 3 and sys.argv[1] == "requirements":
        skip = system_provided()
        sys.stdout.write("".join(line + "\n" for line in requirement_lines(path=sys.argv[2])
                                 if project_name(line) not in skip))
    else:
        sys.exit("usage: python3 ui/pip_rules.py constraints | requirements FILE")


def pins_from_report(report_text, version_of=None):
    """``name==version`` for every package of a pip installation report (JSON) that is not
    already installed at that version, and never one of :data:`PINNED`."""
    version_of = version_of or importlib.metadata.version
    pins = []
    for item in json.loads(report_text).get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if project_name(name) in PINNED:
            continue
        try:
            if version_of(name) == version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        pins.append(f"{name}=={version}")
    return pins
