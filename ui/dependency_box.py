"""The dock's "Missing Python packages" box: what QGIS's Python cannot import, and a button
that installs it with pip into the QGIS profile (:mod:`.deps`), in the background."""

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout

from . import deps


class DependencyBox(QGroupBox):
    """Shown only while a package the engine needs is missing.

    Signals
    -------
    installed(object)
        The finished :class:`~.deps.PipInstallTask` (``ok``, ``message``), on the main thread,
        after the box has been refreshed; ``missing`` says what is still missing.
    """

    installed = pyqtSignal(object)

    def __init__(self, parent=None):
        super().__init__("Missing Python packages", parent)
        self.missing = {}
        self.pip_task = None
        box = QVBoxLayout(self)
        self.label = QLabel()
        self.label.setWordWrap(True)
        box.addWidget(self.label)
        self.button = QPushButton("Install missing packages")
        self.button.clicked.connect(self.install)
        box.addWidget(self.button)
        self.status = QLabel()
        self.status.setWordWrap(True)
        box.addWidget(self.status)
        self.setVisible(False)

    def refresh(self):
        """Show what is missing, if anything. Returns ``{module: requirement}``."""
        missing = deps.missing_modules()
        self.missing = missing
        if missing:
            names = ", ".join(f"<b>{module}</b> (pip: {req})" for module, req in missing.items())
            self.label.setText(
                f"<p>QGIS's Python cannot import {names}. Without "
                f"{'it' if len(missing) == 1 else 'them'} no model can be run.</p>"
                f"<p>One click installs {'it' if len(missing) == 1 else 'them'} with pip into "
                f"<tt>{deps.deps_dir()}</tt> (this QGIS profile only; numpy stays at the "
                f"version QGIS runs, {deps.numpy_version()}). Or install with your QGIS "
                f"installer (OSGeo4W, conda, apt).</p>")
            self.button.setEnabled(self.pip_task is None)
        self.setVisible(bool(missing))
        return missing

    def problems(self):
        """What stops a run here, as sentences for the user."""
        return ["Install the missing Python packages first (button above)."] \
            if self.missing else []

    def make_install_task(self):
        """The pip task for the missing packages (not started), with the missing
        :data:`~.deps.RECOMMENDED` ones."""
        projects = list(self.missing.values()) + list(deps.missing_recommended().values())
        return deps.PipInstallTask(projects, done=self._installed)

    def install(self):
        """Run pip in the background for the missing packages. Returns the task, or None."""
        if not self.missing or self.pip_task is not None:
            return None
        self.pip_task = self.make_install_task()
        self.button.setEnabled(False)
        self.status.setText("Installing (see the task manager)... " +
                            " ".join(self.pip_task.command))
        from .task import start_task

        start_task(self.pip_task)
        return self.pip_task

    def _installed(self, task):
        self.pip_task = None
        self.status.setText(task.message)
        still = self.refresh()
        if task.ok and not still:
            self.status.setText(task.message + " Ready.")
        elif task.ok:
            self.status.setText(task.message + " Restart QGIS to use them.")
        self.installed.emit(task)
