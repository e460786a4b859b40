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

    # -- Processing (also called by qgis_process, where iface is None) ---------------------
    def initProcessing(self):  # noqa: N802 (QGIS API)
        from .processing_provider.provider import SegExplainerProvider

        if self.provider is None:
            self.provider = SegExplainerProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI --------------------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        self.toolbar = self.iface.addToolBar("Segmentation Explainer")
        self.toolbar.setObjectName("SegExplainerToolbar")
        action = QAction(QIcon(str(ICON_PATH)), "Segmentation Explainer",
                         self.iface.mainWindow())
        action.setObjectName("SegExplainerShowDock")
        action.setToolTip("Open the Segmentation Explainer dock")
        action.setCheckable(True)
        action.toggled.connect(self._set_dock_visible)
        self.toolbar.addAction(action)
        self.iface.addPluginToRasterMenu(MENU_NAME, action)
        self.actions.append(action)

    def _set_dock_visible(self, visible):
        from qgis.PyQt.QtCore import Qt

        if self.dock is None:
            from .ui.dock import SegExplainerDock

            self.dock = SegExplainerDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self.actions[0].setChecked)
        self.dock.setVisible(visible)

    def unload(self):
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.close()
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU_NAME, action)
            if self.toolbar is not None:
                self.toolbar.removeAction(action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
