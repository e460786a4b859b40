"""Missing Python packages: detect them, and install them into a plugin-private folder with pip.

QGIS's own Python often lacks onnxruntime (and sometimes shapely or scikit-image). Installing
them into QGIS's site-packages needs administrator rights and, done carelessly, pulls in a
numpy that breaks QGIS. So the plugin installs into its own folder in the QGIS profile
(``<profile>/python/seg_explainer_deps``), appended to ``sys.path`` when the plugin loads, and
constrains pip to the numpy QGIS is running. pip runs in a :class:`PipInstallTask`, never on
the main thread.

This module imports only ``qgis.core``: it is used by ``initProcessing()`` (also under
``qgis_process``) to put the folder on ``sys.path``.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qgis.core import QgsApplication, QgsMessageLog, QgsTask

from .pip_rules import PIP_OPTIONS, constraints_text, pins_from_report, requirement_lines
from .text import LOG_TAG

#: import name -> the project (in requirements.txt) that provides it
REQUIRED = {"onnxruntime": "onnxruntime", "shapely": "shapely", "skimage": "scikit-image"}
#: import name -> project of the optional packages: only segexplainer:explain_regions needs
#: them (many regions on a local or remote Dask cluster); everything else works without.
OPTIONAL = {"dask": "dask", "distributed": "distributed"}
#: import name -> project of packages that only speed runs up, installed with the required
#: ones (never blocking a run): threadpoolctl keeps BLAS to one thread while the estimator
#: fits beside the model (core/batching.py, blas_threads).
RECOMMENDED = {"threadpoolctl": "threadpoolctl"}
DEPS_FOLDER_NAME = "seg_explainer_deps"


def deps_dir():
    """The plugin-private package folder: ``<QGIS profile>/python/seg_explainer_deps``."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / DEPS_FOLDER_NAME


def add_deps_dir_to_path(folder=None):
    """Append the package folder to ``sys.path`` (once). Returns True if it was added now.

    Appended, not prepended: QGIS's own packages (numpy above all) keep precedence.
    """
    folder = str(folder or deps_dir())
    if folder in sys.path:
        return False
    sys.path.append(folder)
    importlib.invalidate_caches()
    return True


def _missing(packages):
    """The ``{import name: project name}`` entries of ``packages`` that cannot be imported."""
    missing = {}
    for module, project in packages.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing[module] = project
    return missing


def missing_modules():
    """``{import name: project name}`` of the required packages that cannot be imported."""
    return _missing(REQUIRED)


def missing_optional():
    """``{import name: project name}`` of the :data:`OPTIONAL` packages that cannot be
    imported (install them with ``PipInstallTask(list(missing_optional().values()))``)."""
    return _missing(OPTIONAL)


def missing_recommended():
    """``{import name: project name}`` of the :data:`RECOMMENDED` packages that cannot be
    imported."""
    return _missing(RECOMMENDED)


def numpy_version():
    """The version of the numpy QGIS runs, or None if numpy itself is missing."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy.__version__


def python_candidates(executable=None, prefix=None):
    """Python interpreters that may be QGIS's own, best first (existing files only).

    Inside QGIS ``sys.executable`` is often the QGIS binary (``qgis``, ``qgis-bin.exe``), so
    look next to it and under ``sys.prefix`` for a python of the same version, then on PATH.
    """
    executable = executable if executable is not None else sys.executable
    prefix = prefix if prefix is not None else sys.prefix
    major, minor = sys.version_info[:2]
    names = [f"python{major}.{minor}", f"python{major}", "python", "python.exe",
             f"python{major}.exe"]
    found = []
    exe = Path(executable) if executable else None
    if exe is not None and exe.name.lower().startswith("python") and exe.is_file():
        found.append(str(exe))
    folders = []
    if exe is not None:
        folders.append(exe.parent)
    folders += [Path(prefix), Path(prefix) / "bin", Path(sys.base_prefix),
                Path(sys.base_prefix) / "bin"]
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found.append(str(candidate))
    for name in names[:2]:
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
    unique = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_python():
    """The python executable to run pip with, or None when none is found."""
    candidates = python_candidates()
    return candidates[0] if candidates else None


def resolve_command(requirements, constraints_file, python=None):
    """The pip command (a list) that resolves ``requirements`` against the Python that runs it
    without installing anything, printing pip's JSON installation report on stdout: the packages
    still to install, those already there (numpy above all) left out."""
    python = python or find_python() or "python3"
    return [python, "-m", "pip", "install", *PIP_OPTIONS, "--dry-run", "--quiet",
            "--report", "-", "-c", str(constraints_file), *requirements]


def pip_command(pins, target=None, python=None):
    """The pip command (a list) that installs the exact ``pins`` (``name==version``, resolved by
    :func:`resolve_command`) into ``target``, without dependencies of its own."""
    target = str(target or deps_dir())
    python = python or find_python() or "python3"
    return [python, "-m", "pip", "install", *PIP_OPTIONS, "--no-deps", "--upgrade",
            "--target", target, *pins]


class PipInstallTask(QgsTask):
    """Runs pip in a subprocess, in the background; the result is in ``ok`` / ``message``.

    All inputs are plain strings copied at construction. ``done`` (a plain Python callable,
    optional) is called on the main thread from ``finished()`` with the task.
    """

    def __init__(self, projects, target=None, python=None, done=None):
        super().__init__("Installing Python packages for Segmentation Explainer",
                         QgsTask.Flag.CanCancel)
        self.projects = list(projects)
        self.requirements = requirement_lines(self.projects)
        self.target = Path(target or deps_dir())
        self.python = python or find_python()
        self.constraints_file = self.target / "constraints.txt"
        self.command = resolve_command(self.requirements, self.constraints_file, self.python)
        self.pins = []
        self.commands_run = []
        self.done = done
        self.ok = False
        self.message = ""
        self.output = ""

    def run(self):
        if not self.python:
            self.message = ("No Python interpreter was found next to QGIS or on PATH to run "
                            "pip with. Install the packages with your QGIS installer "
                            "(OSGeo4W, conda...) instead: " + " ".join(self.requirements))
            return False
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            self.constraints_file.write_text(constraints_text())
            check = subprocess.run([self.python, "-m", "pip", "--version"],
                                   capture_output=True, text=True, timeout=60)
            if check.returncode != 0:
                self.message = (f"pip is not available for {self.python}. Install pip for "
                                "it (e.g. 'apt install python3-pip') and try again.")
                return False
            # 1. resolve against the packages QGIS's Python already has: only what is missing
            code, report, errors = self._pip(self.command)
            out = report
            if code == 0 and pins_from_report(report):
                self.pins = pins_from_report(report)
                # 2. install exactly those, nothing else (no second numpy)
                code, out, errors = self._pip(pip_command(self.pins, self.target, self.python))
                report = report + out
        except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.message = f"pip could not be run: {exc}"
            return False
        self.output = report + errors
        if self.isCanceled():
            self.message = "Installation cancelled."
            return False
        if code != 0:
            tail = "\n".join((errors + "\n" + out).strip().splitlines()[-6:])
            self.message = f"pip failed (exit code {code}):\n{tail}"
            return False
        self.ok = True
        self.message = (f"Installed {', '.join(self.pins) or 'nothing (all present)'} into "
                        f"{self.target}.")
        return True

    def _pip(self, command):
        """Run one pip command, stoppable by cancel; returns (exit code, stdout, stderr)."""
        self.commands_run.append(command)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if self.isCanceled():
                        proc.terminate()
                        proc.wait()
                        break
            out.seek(0)
            err.seek(0)
            return proc.returncode, out.read(), err.read()

    def finished(self, result):  # main thread
        from .task import task_finished

        task_finished(self)
        commands = "\n".join(" ".join(c) for c in self.commands_run or [self.command])
        QgsMessageLog.logMessage(commands + "\n" + self.output, LOG_TAG)
        if result:
            add_deps_dir_to_path(self.target)
            importlib.invalidate_caches()
        if self.done is not None:
            self.done(self)
