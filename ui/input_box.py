"""The dock's "Raster and model" box: the raster to explain, its bands, and the model with the
class to explain."""

from pathlib import Path

from qgis.core import QgsProject, QgsProviderRegistry
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                                 QToolButton, QWidget)

from ..processing_provider.common import layer_for_file
from ..processing_provider.compat import FILTER_RASTER
from .bands_field import BandsField
from .model_picker import ModelPicker

#: Raster providers the algorithms cannot read window by window.
EXCLUDED_RASTER_PROVIDERS = ["wms", "wcs", "arcgismapserver", "postgresraster",
                             "virtualraster", "vectortile"]
SAMPLE_HINT = ("e.g. the sample scene: resources/sample/scene.py writes scene_vv_db.tif, and "
               "resources/sample/oil_unet.onnx is a model for it")
#: The file dialog's first filter: Sentinel-1 GRD products as downloaded (a zip of the .SAFE
#: folder) or unpacked (the folder's manifest.safe).
SENTINEL1_FILTER = "Sentinel-1 GRD products (*.zip *.ZIP manifest.safe)"


class InputBox(QGroupBox):
    """Raster layer, Bands and the :class:`~.model_picker.ModelPicker`.

    ``settings`` is handed to the model picker (recent models).

    Signals
    -------
    changed()
        The raster, the bands or the model changed.
    classChanged()
        Another class was chosen.
    """

    changed = pyqtSignal()
    classChanged = pyqtSignal()

    def __init__(self, settings, parent=None):
        super().__init__("Raster and model", parent)
        form = QFormLayout(self)
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(FILTER_RASTER)
        self.raster_combo.setExcludedProviders(EXCLUDED_RASTER_PROVIDERS)
        self.raster_combo.setToolTip("The raster to explain (a file GDAL can read, e.g. a "
                                     "GeoTIFF). Its bands go to the model in order, or those "
                                     "given under Bands.")
        self.raster_combo.layerChanged.connect(self.raster_changed)
        self.browse_button = QToolButton()
        self.browse_button.setText("\u2026")
        self.browse_button.setToolTip("Open a raster file or a Sentinel-1 product (its .zip or "
                                      "its manifest.safe) as a layer and choose it")
        self.browse_button.clicked.connect(self.browse)
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.raster_combo, 1)
        row_layout.addWidget(self.browse_button)
        form.addRow("Raster layer", row)
        self.open_error = QLabel()
        self.open_error.setWordWrap(True)
        self.open_error.setVisible(False)
        form.addRow(self.open_error)
        self.last_folder = ""
        self.bands_edit = BandsField()
        self.bands_edit.textChanged.connect(self.changed)
        bands_label = QLabel("Bands")
        bands_label.setToolTip(self.bands_edit.toolTip())
        form.addRow(bands_label, self.bands_edit)
        self.model_picker = ModelPicker(settings)
        self.model_picker.changed.connect(self.changed)
        self.model_picker.classChanged.connect(self.classChanged)
        form.addRow(self.model_picker)

    def raster(self):
        return self.raster_combo.currentLayer()

    def browse(self):
        """The "..." button: a file dialog, then :meth:`open_file`."""
        filters = ";;".join(f for f in (SENTINEL1_FILTER,
                                        QgsProviderRegistry.instance().fileRasterFilters()) if f)
        path, _ = QFileDialog.getOpenFileName(self, "Open a raster", self.last_folder, filters)
        if path:
            self.open_file(path)

    def open_file(self, path):
        """Add the raster file (or Sentinel-1 product) ``path`` to the project as a layer and
        choose it; a file that cannot be opened is said here and nothing is added. Returns
        the layer or None."""
        self.last_folder = str(Path(path).parent)
        layer, problem = layer_for_file(path)
        self.open_error.setText(problem)
        self.open_error.setVisible(bool(problem))
        if layer is None:
            return None
        QgsProject.instance().addMapLayer(layer)
        self.raster_combo.setLayer(layer)
        return layer

    def raster_changed(self, *_):
        """Another raster: the Bands field shows what was last given for it."""
        self.bands_edit.set_raster(self.raster())
        self.changed.emit()

    def bands(self):
        """``(band numbers, problem)`` from the "Bands" field (:meth:`BandsField.bands`)."""
        self.bands_edit.set_raster(self.raster())
        self.bands_edit.set_channels((self.model_picker.info or {}).get("n_channels"))
        return self.bands_edit.bands()

    def restore_bands(self, remembered):
        """Restore the bands remembered per raster file (:meth:`BandsField.remembered`)."""
        self.bands_edit.restore(remembered)
        self.raster_changed()

    def settings_rows(self):
        """``[(settings name, getter, setter, default)]`` of the dock's settings table. Bands
        are remembered per raster file, not as one value: band numbers name one raster's band
        layout, and "2" restored on another raster with enough bands would silently feed the
        model the wrong band."""
        return [("bands_by_raster", self.bands_edit.remembered, self.restore_bands, "{}")]

    def problems(self):
        """What stops a run here, as sentences for the user."""
        found = []
        if self.raster() is None:
            found.append("No raster layer is open. Open a raster file or a Sentinel-1 product "
                         "with the \u2026 button beside Raster layer, or add one with Layer > "
                         f"Add Layer > Add Raster Layer ({SAMPLE_HINT}) and choose it above.")
        if self.model_picker.error:
            found.append(self.model_picker.error)
        elif self.model_picker.info is None:
            found.append("Choose an ONNX segmentation model (.onnx).")
        _, bands_problem = self.bands()
        if bands_problem:
            found.append(bands_problem)
        return found

    def channels(self):
        """The channels one model call takes (for timing a batch)."""
        raster = self.raster()
        return (self.model_picker.info or {}).get("n_channels") or \
            len(self.bands()[0] or []) or (self.bands_edit.n_bands if raster else 1) or 1
