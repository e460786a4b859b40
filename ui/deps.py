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
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsMessageLog, QgsTask

#: import name -> pip requirement
REQUIRED = {"onnxruntime": "onnxruntime", "shapely": "shapely>=2", "skimage": "scikit-image"}
DEPS_FOLDER_NAME = "seg_explainer_deps"
LOG_TAG = "Segmentation Explainer"


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


def missing_modules():
    """``{import name: pip requirement}`` of the required packages that cannot be imported."""
    missing = {}
    for module, requirement in REQUIRED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing[module] = requirement
    return missing


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


def constraints_text():
    """pip constraints that keep QGIS's numpy: ``numpy==<the running version>``."""
    version = numpy_version()
    return f"numpy=={version}\n" if version else ""


def pip_command(requirements, target=None, constraints_file=None, python=None):
    """The pip command line (a list) that installs ``requirements`` into ``target``."""
    target = str(target or deps_dir())
    python = python or find_python() or "python3"
    command = [python, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--upgrade", "--target", target]
    if constraints_file:
        command += ["-c", str(constraints_file)]
    return command + list(requirements)


class PipInstallTask(QgsTask):
    """Runs pip in a subprocess, in the background; the result is in ``ok`` / ``message``.

    All inputs are plain strings copied at construction. ``done`` (a plain Python callable,
    optional) is called on the main thread from ``finished()`` with the task.
    """

    def __init__(self, requirements, target=None, python=None, done=None):
        super().__init__("Installing Python packages for Segmentation Explainer",
                         QgsTask.Flag.CanCancel)
        self.requirements = list(requirements)
        self.target = Path(target or deps_dir())
        self.python = python or find_python()
        self.constraints_file = self.target / "numpy-constraints.txt"
        self.command = pip_command(self.requirements, self.target, self.constraints_file,
                                   self.python)
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
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if self.isCanceled():
                    proc.terminate()
                    break
            proc.wait()
            self.output = "".join(lines)
        except (OSError, subprocess.SubprocessError) as exc:
            self.message = f"pip could not be started: {exc}"
            return False
        if self.isCanceled():
            self.message = "Installation cancelled."
            return False
        if proc.returncode != 0:
            tail = "\n".join(self.output.strip().splitlines()[-6:])
            self.message = f"pip failed (exit code {proc.returncode}):\n{tail}"
            return False
        self.ok = True
        self.message = f"Installed {', '.join(self.requirements)} into {self.target}."
        return True

    def finished(self, result):  # main thread
        from .task import _ALIVE

        _ALIVE.discard(self)
        QgsMessageLog.logMessage(" ".join(self.command) + "\n" + self.output, LOG_TAG)
        if result:
            add_deps_dir_to_path(self.target)
            importlib.invalidate_caches()
        if self.done is not None:
            self.done(self)
