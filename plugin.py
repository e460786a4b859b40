"""The plugin object QGIS loads: registers the Processing provider, adds the toolbar and dock."""

from pathlib import Path

from qgis.core import QgsApplication

PLUGIN_DIR = Path(__file__).resolve().parent
ICON_PATH = PLUGIN_DIR / "resources" / "icons" / "icon.png"
MENU_NAME = "&Segmentation Explainer"


class SegExplainerPlugin:
    """Thin plugin class: Processing without GUI, then actions and the dock when there is a GUI."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.toolbar = None
        self.actions = []
        self.dock = None
        self.draw_action = self.run_action = self.cancel_action = None

    # -- Processing (also called by qgis_process, where iface is None) ---------------------
    def initProcessing(self):  # noqa: N802 (QGIS API)
        from .processing_provider.provider import SegExplainerProvider
        from .ui.deps import add_deps_dir_to_path

        add_deps_dir_to_path()  # packages the dock installed into the profile, if any

        if self.provider is None:
            provider = SegExplainerProvider()
            # addProvider() refuses (and deletes) a duplicate, e.g. a provider left registered
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider

    # -- GUI --------------------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        self.toolbar = self.iface.addToolBar("Segmentation Explainer")
        self.toolbar.setObjectName("SegExplainerToolbar")
        window = self.iface.mainWindow()
        action = QAction(QIcon(str(ICON_PATH)), "Segmentation Explainer", window)
        action.setObjectName("SegExplainerShowDock")
        action.setToolTip("Open the Segmentation Explainer dock")
        action.setCheckable(True)
        action.toggled.connect(self._set_dock_visible)
        self.toolbar.addAction(action)
        self.iface.addPluginToRasterMenu(MENU_NAME, action)
        self.actions.append(action)

        self.draw_action = QAction(QgsApplication.getThemeIcon("/mActionCapturePolygon.svg"),
                                   "Draw region of interest", window)
        self.draw_action.setObjectName("SegExplainerDrawRegion")
        self.draw_action.setToolTip(
            "Draw region of interest: left click adds a vertex, right click finishes, Esc "
            "cancels; a single click is one pixel")
        self.draw_action.setCheckable(True)
        self.draw_action.triggered.connect(self._draw_region)
        self.run_action = QAction(QgsApplication.getThemeIcon("/mActionStart.svg"),
                                  "Run explanation", window)
        self.run_action.setObjectName("SegExplainerRun")
        self.run_action.setToolTip("Explain the region of interest with the dock's settings")
        self.run_action.triggered.connect(self._run)
        self.cancel_action = QAction(QgsApplication.getThemeIcon("/mTaskCancel.svg"),
                                     "Cancel explanation", window)
        self.cancel_action.setObjectName("SegExplainerCancel")
        self.cancel_action.setToolTip("Cancel the running explanation")
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(self._cancel)
        for extra in (self.draw_action, self.run_action, self.cancel_action):
            self.toolbar.addAction(extra)
            self.actions.append(extra)

    def _ensure_dock(self):
        from qgis.PyQt.QtCore import Qt

        if self.dock is None:
            from .ui.dock import SegExplainerDock

            self.dock = SegExplainerDock(self.iface, self.iface.mainWindow())
            self.dock.region_picker.draw_action = self.draw_action
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self.actions[0].setChecked)
            self.dock.runningChanged.connect(self._running_changed)
        return self.dock

    def _set_dock_visible(self, visible):
        if self.dock is None and not visible:
            return
        self._ensure_dock().setVisible(visible)

    def _draw_region(self):
        dock = self._ensure_dock()
        dock.setVisible(True)
        if dock.region_picker.start_drawing() is None:
            self.draw_action.setChecked(False)

    def _run(self):
        dock = self._ensure_dock()
        dock.setVisible(True)
        dock.run()

    def _cancel(self):
        if self.dock is not None:
            self.dock.cancel()

    def _running_changed(self, running):
        self.cancel_action.setEnabled(running)
        self.run_action.setEnabled(not running)

    def unload(self):
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.close()
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            if action.objectName() == "SegExplainerShowDock":
                self.iface.removePluginRasterMenu(MENU_NAME, action)
            if self.toolbar is not None:
                self.toolbar.removeAction(action)
            action.deleteLater()
        self.actions = []
        self.draw_action = self.run_action = self.cancel_action = None
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
