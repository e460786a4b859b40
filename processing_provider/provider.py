"""The ``segexplainer`` Processing provider."""

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

ICON_PATH = Path(__file__).resolve().parent.parent / "resources" / "icons" / "icon.png"


class SegExplainerProvider(QgsProcessingProvider):
    """Holds the Segmentation Explainer algorithms."""

    def id(self):
        return "segexplainer"

    def name(self):
        return "Segmentation Explainer"

    def longName(self):  # noqa: N802 (QGIS API)
        return "Segmentation Explainer: why did the model call this oil, or sea?"

    def icon(self):
        return QIcon(str(ICON_PATH))

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        from .algorithms import all_algorithms

        for alg in all_algorithms():
            self.addAlgorithm(alg)
