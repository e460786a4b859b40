"""The dock's model picker: the ONNX model file, the recently used ones, what the model's
metadata says, and the class to explain."""

from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QWidget

from ..processing_provider.estimate import DEFAULT_EDGE, ModelError, describe_model
from .text import html

MAX_RECENT_MODELS = 8


class ModelPicker(QWidget):
    """Model file, recent models, the model's description and the class.

    ``settings`` is a callable giving ``(QgsSettings, key)``, ``key(name)`` the settings key
    of ``name``: the picker remembers the recent models there.

    Attributes
    ----------
    info : dict or None
        The loaded model's description (``SegmentationModel.describe()``).
    error : str
        Why the chosen file cannot be used ("" when it can, or when none is chosen).

    Signals
    -------
    changed()
        Another model (or none) was loaded.
    classChanged()
        Another class was chosen.
    """

    changed = pyqtSignal()
    classChanged = pyqtSignal()

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.info = None
        self.error = ""
        self.restoring = False
        self.preferred_class = ""
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.file_widget = QgsFileWidget()
        self.file_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.file_widget.setFilter("ONNX models (*.onnx)")
        self.file_widget.setDialogTitle("Choose an ONNX segmentation model")
        self.file_widget.setToolTip("An ONNX semantic segmentation model; its metadata (class "
                                    "names, tile size, input scaling) is read automatically.")
        self.file_widget.fileChanged.connect(self.load)
        form.addRow("Model", self.file_widget)
        self.recent_combo = QComboBox()
        self.recent_combo.setToolTip("Models used recently")
        self.recent_combo.activated.connect(self._recent_chosen)
        form.addRow("Recent", self.recent_combo)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(self.label)
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class whose mean probability over the region is "
                                    "explained.")
        self.class_combo.currentIndexChanged.connect(self._class_chosen)
        form.addRow("Class", self.class_combo)
        self.fill_recent()

    # -- the model ---------------------------------------------------------------------------
    def path(self):
        """The loaded model's file, or None."""
        return (self.info or {}).get("path")

    def set_path(self, path):
        """Choose ``path`` (loaded through ``fileChanged``)."""
        self.file_widget.setFilePath(path)

    def load(self, path):
        """Read the model's metadata and show it; errors become a message, not a traceback.

        The model is loaded through the engine (``SegmentationModel.load``), which checks the
        file before onnxruntime reads it, as the algorithms do: external data outside the
        model's folder and custom operators are refused with a message naming the problem
        and the fix, shown here (and in the dock's hint). Returns the description or None.
        """
        path = (path or "").strip()
        self.info = None
        self.error = ""
        previous_class = self.class_combo.currentText() or self.preferred_class
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.blockSignals(False)
        if not path:
            self.label.setText("")
            self.changed.emit()
            return None
        try:
            info = describe_model(path)
        except ModelError as exc:
            self.error = f"This model cannot be used: {str(exc).rstrip('.')}."
        except ImportError as exc:
            self.error = (f"A Python package is missing ({exc}); install it with the button "
                          "above.")
        except Exception as exc:  # anything else: still a message
            self.error = f"This model cannot be read ({type(exc).__name__}: {exc})."
        if self.error:
            self.label.setText(f"<span style='color:#b00000'>{html(self.error)}</span>")
            self.changed.emit()
            return None
        self.info = info
        self.label.setText(describe_html(info))
        self.class_combo.blockSignals(True)
        self.class_combo.addItems(info["classes"])
        index = self.class_combo.findText(previous_class) if previous_class else -1
        if index < 0:
            index = 1 if len(info["classes"]) > 1 else 0
        self.class_combo.setCurrentIndex(index)
        self.class_combo.blockSignals(False)
        if not self.restoring:
            self.remember(path)
        self.changed.emit()
        return info

    def class_name(self):
        return self.class_combo.currentText()

    def _class_chosen(self, _index):
        if self.class_combo.currentText():
            self.preferred_class = self.class_combo.currentText()
        self.classChanged.emit()

    def prefer_class(self, name):
        """Choose the class ``name`` in the next model loaded, if it has it."""
        self.preferred_class = str(name or "")

    def settings_rows(self):
        """``[(settings name, getter, setter, default)]`` of the dock's settings table: the
        class, then the last model (which picks the class if it has it)."""
        return [("class", lambda: self.class_name() or None, self.prefer_class, ""),
                ("last_model", self.path, self.restore, "")]

    # -- recent models -----------------------------------------------------------------------
    def recent_models(self):
        settings, key = self.settings()
        value = settings.value(key("recent_models"), []) or []
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [p for p in value if p]

    def remember(self, path):
        """Put ``path`` first among the recent models (and make it the last model)."""
        recent = [path] + [p for p in self.recent_models() if p != path]
        recent = recent[:MAX_RECENT_MODELS]
        settings, key = self.settings()
        settings.setValue(key("recent_models"), recent)
        settings.setValue(key("last_model"), path)
        self.fill_recent(recent)

    def fill_recent(self, recent=None):
        recent = self.recent_models() if recent is None else recent
        self.recent_combo.blockSignals(True)
        self.recent_combo.clear()
        self.recent_combo.addItem("Recent models..." if recent else "(no recent model)", "")
        for path in recent:
            self.recent_combo.addItem(Path(path).name, path)
            self.recent_combo.setItemData(self.recent_combo.count() - 1, path,
                                          Qt.ItemDataRole.ToolTipRole)
        self.recent_combo.blockSignals(False)

    def _recent_chosen(self, index):
        path = self.recent_combo.itemData(index)
        if path:
            self.set_path(path)

    def restore(self, path):
        """Load the last model ``path`` (if it still exists) without reordering the recent
        models."""
        self.restoring = True
        try:
            self.fill_recent()
            if path and Path(path).is_file():
                self.set_path(path)
        finally:
            self.restoring = False


def describe_html(info):
    """What the model's metadata says, as short HTML lines."""
    scaling = info.get("scaling") or {}
    scaling_text = ", ".join(f"{k} {v}" for k, v in scaling.items()) or "none"
    shape = ["?" if d is None else str(d) for d in (info.get("input_shape") or [])]
    tile = info.get("tile_size")
    rows = [
        ("Classes", ", ".join(f"{i} {c}" for i, c in enumerate(info.get("classes", [])))),
        ("Tile size", f"{tile} px" if tile else
         f"any (the automatic window is at most {DEFAULT_EDGE} px unless the region needs "
         "more)"),
        ("Input", f"[{', '.join(shape)}] {info.get('input_layout')} "
                  f"({info.get('input_layout_source')}), "
                  f"{info.get('n_channels') or 'any number of'} channel(s)"),
        ("Scaling", scaling_text),
        ("Activation", f"{info.get('output_activation')} "
                       f"({info.get('output_activation_source')})"),
    ]
    return "<br>".join(f"<i>{k}</i>: {html(v)}" for k, v in rows)
