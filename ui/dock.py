"""The Segmentation Explainer dock."""

from qgis.PyQt.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget


class SegExplainerDock(QDockWidget):
    """Dock widget: pick a layer, a model and a region, then explain."""

    def __init__(self, iface, parent=None):
        super().__init__("Segmentation Explainer", parent)
        self.iface = iface
        self.setObjectName("SegExplainerDock")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        self.hint = QLabel("Open a raster layer, pick an ONNX model and draw a region of interest.")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        self.setWidget(body)
