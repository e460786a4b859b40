"""The Segmentation Explainer dock: pick a raster, a model, a class and a region, then explain.

The dock only gathers parameters; the work is done by the same Processing algorithms the
toolbox runs (``segexplainer:explain_shap``, ``explain_rise``, ``explain_occlusion``), in QGIS's
task manager (:mod:`.task`). Everything the user sets is remembered in QgsSettings under
``seg_explainer/``.
"""

import re
import time
from pathlib import Path

from qgis.core import Qgis, QgsProject, QgsSettings
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QFormLayout,
                                 QFrame, QGroupBox, QHBoxLayout, QLabel,
                                 QProgressBar, QPushButton, QScrollArea,
                                 QSizePolicy, QVBoxLayout, QWidget)

from ..processing_provider.compat import FILTER_RASTER
from ..processing_provider.parameters import EXPLAIN_METHODS
from .bands_field import BandsField
from .dependency_box import DependencyBox
from .estimate import evaluations, format_duration, resolve_window
from .layout import fit_narrow
from .parameter_form import TITLES, MethodForm
from .region_picker import RegionPicker

SETTINGS = "seg_explainer"
#: Steps of the deletion / insertion curves when "Measure faithfulness" is ticked.
FAITHFULNESS_STEPS = 20
MAX_RECENT_MODELS = 8
METHODS = [(m, TITLES[m]) for m in EXPLAIN_METHODS]
#: Raster providers the algorithms cannot read window by window.
EXCLUDED_RASTER_PROVIDERS = ["wms", "wcs", "arcgismapserver", "postgresraster",
                             "virtualraster", "vectortile"]
SAMPLE_HINT = ("e.g. the sample scene: resources/sample/scene.py writes scene_vv_db.tif, and "
               "resources/sample/oil_unet.onnx is a model for it")


def _safe(text):
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def _settings():
    return QgsSettings()


def default_output_folder():
    """Where results go until the user chooses a folder."""
    return Path.home() / "seg_explainer_results"


def _key(name):
    return f"{SETTINGS}/{name}"


def open_file(path):
    """Open ``path`` with the desktop's default application (the report PNG)."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def open_report_or_say_where(path, message):
    """Open the report ``path``; when it is gone or no application opens it, tell the user
    where it is through ``message(title, text, level, duration=...)``. Returns True if
    opened."""
    if not Path(path).is_file():
        message("Report not found", f"The report {path} no longer exists.",
                Qgis.MessageLevel.Warning, duration=0)
        return False
    if open_file(path):
        return True
    message("Report", f"No application opened the report; it is at {path}",
            Qgis.MessageLevel.Warning, duration=0)
    return False


class SegExplainerDock(QDockWidget):
    """Dock widget: pick a layer, a model and a region, then explain.

    Signals
    -------
    runningChanged(bool)
        An explanation started (True) or ended (False).
    runFinished(object)
        The finished :class:`~.task.ExplainRun` (successful, cancelled or failed).
    """

    runningChanged = pyqtSignal(bool)
    runFinished = pyqtSignal(object)

    def __init__(self, iface, parent=None):
        super().__init__("Segmentation Explainer", parent)
        self.iface = iface
        self.setObjectName("SegExplainerDock")
        self.model_info = None
        self.model_error = ""
        self.current_run = None
        self.last_report = None
        self.estimate_task = None
        self._seconds_per_batch = {}
        self.message_widget = None
        self._restoring = False

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        layout = QVBoxLayout(body)
        self._build_deps_box(layout)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setObjectName("SegExplainerHint")
        self.hint.setStyleSheet("QLabel { background: #fff8dc; border: 1px solid #e0c060; "
                                "padding: 4px; }")
        layout.addWidget(self.hint)
        self.form = QWidget()
        form_layout = QVBoxLayout(self.form)
        form_layout.setContentsMargins(0, 0, 0, 0)
        self._build_input_box(form_layout)
        self._build_region_box(form_layout)
        self._build_method_tabs(form_layout)
        self._build_output_box(form_layout)
        layout.addWidget(self.form)
        layout.addStretch(1)
        scroll.setWidget(body)
        # Run, Cancel, progress and the result stay visible below the scrolling form.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        container = QWidget()
        outer = QVBoxLayout(container)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        run_panel = QWidget()
        self._build_run_box(QVBoxLayout(run_panel))
        outer.addWidget(run_panel)
        self.setWidget(container)
        fit_narrow(container)

        QgsProject.instance().layersAdded.connect(self._exclude_results)
        self.refresh_dependencies()
        self.restore_settings()
        self._exclude_results()
        self.update_state()

    def _exclude_results(self, *_):
        """The plugin's own results (rasters, cells, region outlines) are never offered as
        the raster to explain or the region layer."""
        from ..processing_provider.styling import is_result

        results = [layer for layer in QgsProject.instance().mapLayers().values()
                   if is_result(layer)]
        self.raster_combo.setExceptedLayerList(results)
        self.region_layer_combo.setExceptedLayerList(results)

    # ====================================================================== building
    def _build_deps_box(self, layout):
        self.deps_box = DependencyBox()
        self.deps_box.installed.connect(self._deps_installed)
        # its parts under the names the rest of the dock (and its tests) use
        self.deps_label, self.deps_button = self.deps_box.label, self.deps_box.button
        self.deps_status = self.deps_box.status
        layout.addWidget(self.deps_box)

    def _build_input_box(self, layout):
        group = QGroupBox("Raster and model")
        form = QFormLayout(group)
        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(FILTER_RASTER)
        self.raster_combo.setExcludedProviders(EXCLUDED_RASTER_PROVIDERS)
        self.raster_combo.setToolTip("The raster to explain (a file GDAL can read, e.g. a "
                                     "GeoTIFF). Its bands go to the model in order, or those "
                                     "given under Bands.")
        self.raster_combo.layerChanged.connect(self._raster_changed)
        form.addRow("Raster layer", self.raster_combo)
        self.bands_edit = BandsField()
        self.bands_edit.textChanged.connect(self.update_state)
        bands_label = QLabel("Bands")
        bands_label.setToolTip(self.bands_edit.toolTip())
        form.addRow(bands_label, self.bands_edit)

        self.model_widget = QgsFileWidget()
        self.model_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.model_widget.setFilter("ONNX models (*.onnx)")
        self.model_widget.setDialogTitle("Choose an ONNX segmentation model")
        self.model_widget.setToolTip("An ONNX semantic segmentation model; its metadata (class "
                                     "names, tile size, input scaling) is read automatically.")
        self.model_widget.fileChanged.connect(self.load_model)
        form.addRow("Model", self.model_widget)
        self.recent_combo = QComboBox()
        self.recent_combo.setToolTip("Models used recently")
        self.recent_combo.activated.connect(self._recent_chosen)
        form.addRow("Recent", self.recent_combo)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(self.model_label)
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class whose mean probability over the region is "
                                    "explained.")
        self.class_combo.currentIndexChanged.connect(self.update_estimate)
        form.addRow("Class", self.class_combo)
        layout.addWidget(group)

    def _build_region_box(self, layout):
        self.region_picker = RegionPicker(self.canvas)
        self.region_picker.changed.connect(self.update_state)
        # its parts under the names the rest of the dock (and its tests) use
        picker = self.region_picker
        self.region_drawn_radio, self.region_layer_radio = picker.drawn_radio, picker.layer_radio
        self.region_layer_combo, self.selected_only = picker.layer_combo, picker.selected_only
        self.draw_button, self.region_label = picker.draw_button, picker.label
        layout.addWidget(picker)

    def _build_method_tabs(self, layout):
        self.method_form = MethodForm()
        self.method_form.estimateChanged.connect(self.update_estimate)
        layout.addWidget(self.method_form)
        # the widgets under the names the rest of the dock (and its tests) use
        self.tabs = self.method_form.tabs
        self.param_widgets = self.method_form.param_widgets
        common = self.method_form.common_widgets
        self.window_spin, self.baseline_combo = common["WINDOW"], common["BASELINE"]
        self.baseline_value_spin, self.seed_spin = common["BASELINE_VALUE"], common["SEED"]
        self.batch_spin, self.crop_check = common["BATCH_SIZE"], common["CROP"]

    def _build_output_box(self, layout):
        group = QGroupBox("Output")
        form = QFormLayout(group)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output_widget.setDialogTitle("Folder for the explanation rasters and report")
        self.output_widget.setToolTip("Excitation, inhibition and signed rasters (GeoTIFF), "
                                      "the cells (GeoPackage) and the report figure (PNG) are "
                                      "written here, each named after the raster, class, "
                                      "method and time.")
        self.output_widget.setFilePath(str(default_output_folder()))
        form.addRow("Output folder", self.output_widget)
        self.faithfulness_check = QCheckBox()
        self.faithfulness_check.setToolTip(
            f"After the explanation, remove and restore the window's pixels in the map's order "
            f"and in a random order ({FAITHFULNESS_STEPS} steps, "
            f"{4 * (FAITHFULNESS_STEPS + 1)} more model evaluations): a faithful map has a "
            "lower deletion and a higher insertion AUC than the random ordering.")
        faithfulness_text = QLabel("Measure faithfulness (deletion / insertion AUC against "
                                   "a random ordering)")
        faithfulness_text.setWordWrap(True)
        faithfulness_text.setToolTip(self.faithfulness_check.toolTip())
        faithfulness_text.mousePressEvent = lambda _e: self.faithfulness_check.toggle()
        form.addRow(self.faithfulness_check, faithfulness_text)
        row = QVBoxLayout()
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setSizePolicy(QSizePolicy.Policy.Expanding,
                                          QSizePolicy.Policy.Preferred)
        row.addWidget(self.estimate_label, 1)
        self.estimate_button = QPushButton("Estimate time")
        self.estimate_button.setToolTip("Times one model call on BATCH_SIZE windows (in the "
                                        "background) and extrapolates to the whole run.")
        self.estimate_button.clicked.connect(self.start_estimate)
        row.addWidget(self.estimate_button)
        form.addRow(row)
        layout.addWidget(group)

    def _build_run_box(self, layout):
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Explain the region with the method of the open tab (in the "
                                   "background; see the task manager).")
        self.run_button.clicked.connect(self.run)
        row.addWidget(self.run_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running explanation; no files are left "
                                      "behind.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        row = QVBoxLayout()
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        row.addWidget(self.result_label, 1)
        self.report_button = QPushButton("Open report")
        self.report_button.setToolTip("Open the report figure (PNG) of the last run")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.open_report)
        row.addWidget(self.report_button)
        layout.addLayout(row)

    # ====================================================================== dependencies
    @property
    def missing(self):
        """``{module: requirement}`` the engine needs and QGIS's Python cannot import."""
        return self.deps_box.missing

    @property
    def pip_task(self):
        return self.deps_box.pip_task

    def refresh_dependencies(self):
        return self.deps_box.refresh()

    def make_install_task(self):
        return self.deps_box.make_install_task()

    def install_dependencies(self):
        return self.deps_box.install()

    def _deps_installed(self, task):
        if task.ok and not self.missing:
            self._message("Python packages installed.", task.message, Qgis.MessageLevel.Success)
            self.load_model(self.model_widget.filePath())
        self.update_state()

    # ====================================================================== model
    def _recent_chosen(self, index):
        path = self.recent_combo.itemData(index)
        if path:
            self.model_widget.setFilePath(path)

    def recent_models(self):
        value = _settings().value(_key("recent_models"), []) or []
        if isinstance(value, str):  # QSettings gives a one-item list back as a string
            value = [value]
        return [p for p in value if p]

    def _remember_model(self, path):
        recent = [path] + [p for p in self.recent_models() if p != path]
        recent = recent[:MAX_RECENT_MODELS]
        settings = _settings()
        settings.setValue(_key("recent_models"), recent)
        settings.setValue(_key("last_model"), path)
        self._fill_recent(recent)

    def _fill_recent(self, recent=None):
        recent = self.recent_models() if recent is None else recent
        self.recent_combo.blockSignals(True)
        self.recent_combo.clear()
        self.recent_combo.addItem("Recent models..." if recent else "(no recent model)", "")
        for path in recent:
            self.recent_combo.addItem(Path(path).name, path)
            self.recent_combo.setItemData(self.recent_combo.count() - 1, path,
                                          Qt.ItemDataRole.ToolTipRole)
        self.recent_combo.blockSignals(False)

    def load_model(self, path):
        """Read the model's metadata and show it; errors become a message, not a traceback.

        The model is loaded through the engine (``SegmentationModel.load``), which checks the
        file before onnxruntime reads it, as the algorithms do: external data outside the
        model's folder and custom operators are refused with a message naming the problem
        and the fix, shown here and in the hint; Run stays disabled until a usable model is
        chosen.
        """
        path = (path or "").strip()
        self.model_info = None
        self.model_error = ""
        previous_class = self.class_combo.currentText() or \
            _settings().value(_key("class"), "", type=str)
        self.class_combo.clear()
        if not path:
            self.model_label.setText("")
            self.update_state()
            return None
        from ..core.errors import ModelError

        try:
            from ..core.model import SegmentationModel

            info = SegmentationModel.load(path).describe()
        except ModelError as exc:
            self.model_error = f"This model cannot be used: {str(exc).rstrip('.')}."
        except ImportError as exc:
            self.model_error = (f"A Python package is missing ({exc}); install it with the "
                                f"button above.")
        except Exception as exc:  # anything else: still a message
            self.model_error = f"This model cannot be read ({type(exc).__name__}: {exc})."
        if self.model_error:
            self.model_label.setText(f"<span style='color:#b00000'>{_html(self.model_error)}"
                                     "</span>")
            self.update_state()
            return None
        self.model_info = info
        self.model_label.setText(describe_html(info))
        self.class_combo.blockSignals(True)
        self.class_combo.addItems(info["classes"])
        index = self.class_combo.findText(previous_class) if previous_class else -1
        if index < 0:
            index = 1 if len(info["classes"]) > 1 else 0
        self.class_combo.setCurrentIndex(index)
        self.class_combo.blockSignals(False)
        if not self._restoring:
            self._remember_model(path)
        self.update_state()
        return info

    # ====================================================================== region
    def canvas(self):
        try:
            return self.iface.mapCanvas()
        except AttributeError:
            return None

    @property
    def region_geometry(self):
        return self.region_picker.geometry

    @property
    def region_crs(self):
        return self.region_picker.crs

    @property
    def map_tool(self):
        return self.region_picker.map_tool

    @property
    def draw_action(self):
        return self.region_picker.draw_action

    @draw_action.setter
    def draw_action(self, action):
        self.region_picker.draw_action = action

    def ensure_map_tool(self):
        return self.region_picker.ensure_map_tool()

    def start_drawing(self):
        return self.region_picker.start_drawing()

    def set_region(self, geometry, crs):
        """Use ``geometry`` (in ``crs``) as the drawn region of interest."""
        self.region_picker.set_region(geometry, crs)

    def region_parameter(self):
        """See :meth:`RegionPicker.parameter`."""
        return self.region_picker.parameter()

    # ====================================================================== bands
    def _raster_changed(self, *_):
        """Another raster: the Bands field shows what was last given for it."""
        self.bands_edit.set_raster(self.raster_combo.currentLayer())
        self.update_state()

    def bands(self):
        """``(band numbers, problem)`` from the "Bands" field (:meth:`BandsField.bands`)."""
        self.bands_edit.set_channels((self.model_info or {}).get("n_channels"))
        return self.bands_edit.bands()

    # ====================================================================== state
    def problems(self):
        """What stops a run, as sentences for the user (empty when ready)."""
        found = []
        if self.missing:
            found.append("Install the missing Python packages first (button above).")
        raster = self.raster_combo.currentLayer()
        if raster is None:
            found.append("No raster layer is open. Add one with Layer > Add Layer > Add Raster "
                         f"Layer ({SAMPLE_HINT}) and choose it above.")
        if self.model_error:
            found.append(self.model_error)
        elif self.model_info is None:
            found.append("Choose an ONNX segmentation model (.onnx).")
        _, bands_problem = self.bands()
        if bands_problem:
            found.append(bands_problem)
        region_problem = self.region_picker.problem()
        if region_problem:
            found.append(region_problem)
        return found

    def is_running(self):
        return self.current_run is not None

    def update_state(self, *_):
        self.bands_edit.set_raster(self.raster_combo.currentLayer())
        self.bands_edit.set_channels((self.model_info or {}).get("n_channels"))
        problems = self.problems()
        running = self.is_running()
        if problems:
            self.hint.setText("<br>".join(f"&bull; {_html(p)}" for p in problems))
        self.hint.setVisible(bool(problems))
        self.run_button.setEnabled(not problems and not running)
        self.cancel_button.setEnabled(running)
        self.form.setEnabled(not running)
        self.estimate_button.setEnabled(self.model_info is not None and not running
                                        and self.estimate_task is None)
        self.update_estimate()

    # ====================================================================== parameters
    def current_method(self):
        return self.method_form.current_method()

    def method_values(self, method=None):
        return self.method_form.method_values(method)

    def window(self):
        return resolve_window(self.window_spin.value(), self.model_info)

    def update_estimate(self, *_):
        """Model evaluations of the run, and its time once a batch has been timed."""
        if self.model_info is None:
            self.estimate_label.setText("Choose a model to see the cost of a run.")
            return None
        method = self.current_method()
        window = self.window()
        try:
            count, exact = evaluations(method, window, self.method_values(method))
        except Exception as exc:  # e.g. a missing package
            self.estimate_label.setText(f"No estimate ({exc}).")
            return None
        text = f"{'' if exact else 'at most '}{count:,} model evaluations of {window} x " \
               f"{window} px"
        per_batch = self._seconds_per_batch.get(self._estimate_key())
        seconds = None
        if per_batch is not None:
            seconds = per_batch * count / max(1, self.batch_spin.value())
            text += f"; about {format_duration(seconds)} (one batch of " \
                    f"{self.batch_spin.value()} took {per_batch:.2f} s)"
        else:
            text += "; press 'Estimate time' to time one batch"
        self.estimate_label.setText(text + ".")
        return count, seconds

    def _estimate_key(self):
        return (self.model_info or {}).get("path"), self.window(), self.batch_spin.value()

    def start_estimate(self):
        """Time one batch in the background (a QgsTask)."""
        if self.model_info is None or self.estimate_task is not None:
            return None
        raster = self.raster_combo.currentLayer()
        bands, _ = self.bands()
        channels = self.model_info.get("n_channels") or len(bands or []) or \
            (raster.bandCount() if raster else 1)
        from .task import EstimateTask, start_task

        key = self._estimate_key()
        task = EstimateTask(self.model_info["path"], self.window(), channels,
                            self.batch_spin.value(), done=lambda t: self._estimated(t, key))
        self.estimate_task = task
        self.estimate_button.setEnabled(False)
        self.estimate_label.setText("Timing one batch...")
        start_task(task)
        return task

    def _estimated(self, task, key):
        self.estimate_task = None
        if task.seconds_per_batch is not None:
            self._seconds_per_batch[key] = task.seconds_per_batch
        self.update_state()
        if task.error:
            self.estimate_label.setText(f"The model could not be timed: {task.error}")

    # ====================================================================== run
    def build_parameters(self):
        """``(algorithm id, parameters, group name, raster source, label)`` of a run (see
        :class:`~.task.ExplainRun`); raises ValueError with a user-facing message when
        something is missing. Layers are given by id: the run copies what it needs from them
        when it starts, and the user may remove them meanwhile."""
        from ..processing_provider.styling import result_group_name

        problems = self.problems()
        if problems:
            raise ValueError(problems[0])
        roi, _, problem = self.region_parameter()
        if problem:
            raise ValueError(problem)
        method = self.current_method()
        raster = self.raster_combo.currentLayer()
        folder = Path(self.output_widget.filePath().strip() or default_output_folder())
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"The output folder {folder} cannot be created ({exc}); choose "
                             "another.") from None
        bands, _ = self.bands()  # valid: problems() checked it
        class_name = self.class_combo.currentText()
        now = time.localtime()
        stem = f"{_safe(raster.name())}_{_safe(class_name)}_{method}_" \
               f"{time.strftime('%Y%m%d_%H%M%S', now)}"
        base, n = stem, 1
        while any(folder.glob(stem + "_*")):
            n += 1
            stem = f"{base}-{n}"
        params = {
            "INPUT": raster.id(), "MODEL": self.model_info["path"], "ROI": roi,
            "CLASS": class_name, "BANDS": bands or None, **self.method_form.values(method),
            "EXCITATION": str(folder / f"{stem}_excitation.tif"),
            "INHIBITION": str(folder / f"{stem}_inhibition.tif"),
            "SIGNED": str(folder / f"{stem}_signed.tif"),
            "REPORT": str(folder / f"{stem}_report.png"),
            "REGION": str(folder / f"{stem}_region.gpkg"),
        }
        if method != "rise":
            params["CELLS"] = str(folder / f"{stem}_cells.gpkg")
        params["FAITHFULNESS"] = FAITHFULNESS_STEPS if self.faithfulness_check.isChecked() \
            else 0
        when = time.strftime("%Y-%m-%d %H:%M:%S", now)
        group = result_group_name(raster.name(), class_name, method, when)
        return (f"segexplainer:explain_{method}", params, group,
                raster.source().split("|")[0], (class_name, method, when))

    def run(self):
        """Start the explanation in the task manager. Returns the run, or None."""
        if self.is_running():
            self._message("Segmentation Explainer", "An explanation is already running; wait "
                          "for it to finish or cancel it before starting another.",
                          Qgis.MessageLevel.Info, duration=5)
            return None
        try:
            algorithm_id, params, group, source, label = self.build_parameters()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        self.save_settings()
        from .task import ExplainRun

        run = ExplainRun(algorithm_id, params, group, source, label=label)
        run.progressChanged.connect(self._progress)
        run.done.connect(self._run_done)
        self.last_report = None             # "Open report" never opens the previous run's
        self.report_button.setEnabled(False)
        self.progress.setValue(0)
        self.result_label.setText("Running... (see also the task manager)")
        if not run.start():
            self._show_error(run.error)
            return None
        self.current_run = run
        self.update_state()
        self.runningChanged.emit(True)
        return run

    def _progress(self, value):
        self.progress.setValue(int(value))

    def cancel(self):
        """Cancel the running explanation (it stops before its next batch)."""
        if self.current_run is not None:
            self.result_label.setText("Cancelling...")
            self.current_run.cancel()

    def _run_done(self, run):
        self.current_run = None
        warnings = list(dict.fromkeys(run.warnings))   # each once, in order
        warned = "".join(f"<br>&#9888; {_html(w)}" for w in warnings)
        if run.ok and run.project_closed:
            folder = run.output_folder()
            text = (f"The project was closed during the run, so its results were not added to "
                    f"this one; they are in {folder}.")
            self.progress.setValue(100)
            self.result_label.setText(_html(text) + warned)
            self._message("Explanation ready", " ".join([text] + warnings),
                          Qgis.MessageLevel.Warning, duration=0)
        elif run.ok:
            summary = run.summary()
            self.progress.setValue(100)
            self.result_label.setText(f"<b>{_html(run.group_name)}</b>: {_html(summary)}"
                                      + warned)
            report = run.results.get("REPORT")
            self.last_report = report if report and Path(report).exists() else None
            self.report_button.setEnabled(self.last_report is not None)
            if warnings:  # a result to read with care: said at warning level, kept on screen
                self._message("Explanation ready, with warnings",
                              f"{run.group_name}: {summary}. " + " ".join(warnings),
                              Qgis.MessageLevel.Warning, report=self.last_report, duration=0)
            else:
                self._message("Explanation ready", f"{run.group_name}: {summary}",
                              Qgis.MessageLevel.Success, report=self.last_report)
            if run.error:
                self._show_error(run.error)
        elif run.cancelled:
            self.progress.setValue(0)
            self.result_label.setText("Explanation cancelled; no files were written.")
            self._message("Explanation cancelled", "You cancelled the run; no files were "
                          "written.", Qgis.MessageLevel.Info)
        else:
            self.progress.setValue(0)
            self._show_error(run.error)
        self.update_state()
        self.runningChanged.emit(False)
        self.runFinished.emit(run)

    def open_report(self):
        """Open the last run's report; if no application opens it, say where it is."""
        if self.last_report:
            open_report_or_say_where(self.last_report, self._message)

    # ====================================================================== messages
    def _message_bar(self):
        try:
            return self.iface.messageBar()
        except AttributeError:
            return None

    def _message(self, title, text, level, report=None, duration=10):
        bar = self._message_bar()
        if bar is None:
            return None
        if report is None:
            bar.pushMessage(title, text, level=level, duration=duration)
            return None
        widget = bar.createMessage(title, text)
        button = QPushButton("Open report", widget)
        button.clicked.connect(lambda: open_report_or_say_where(report, self._message))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, level, duration)
        self.message_widget = widget
        return widget

    def _show_error(self, text):
        self.result_label.setText(f"<span style='color:#b00000'>{_html(text)}</span>")
        self._message("Segmentation Explainer", text, Qgis.MessageLevel.Critical, duration=0)

    # ====================================================================== settings
    def save_settings(self):
        settings = _settings()
        self.method_form.save(settings, SETTINGS)
        # Bands are remembered per raster file, not as one value: band numbers name one
        # raster's band layout, and "2" restored on another raster with enough bands would
        # silently feed the model the wrong band.
        settings.setValue(_key("bands_by_raster"), self.bands_edit.remembered())
        settings.setValue(_key("output_folder"), self.output_widget.filePath())
        settings.setValue(_key("faithfulness"), self.faithfulness_check.isChecked())
        if self.class_combo.currentText():
            settings.setValue(_key("class"), self.class_combo.currentText())
        if self.model_info is not None:
            settings.setValue(_key("last_model"), self.model_info["path"])

    def restore_settings(self):
        settings = _settings()
        self._restoring = True
        try:
            self.method_form.restore(settings, SETTINGS)
            self.bands_edit.restore(settings.value(_key("bands_by_raster"), "{}", type=str))
            self._raster_changed()
            self.faithfulness_check.setChecked(
                settings.value(_key("faithfulness"), False, type=bool))
            folder = settings.value(_key("output_folder"), "", type=str)
            if folder:
                self.output_widget.setFilePath(folder)
            self._fill_recent()
            last = settings.value(_key("last_model"), "", type=str)
            if last and Path(last).is_file():
                self.model_widget.setFilePath(last)  # loads it through fileChanged
        finally:
            self._restoring = False

    # ====================================================================== life cycle
    def shutdown(self):
        """Plugin unload: cancel work, take the map tool off the canvas, save settings."""
        try:
            QgsProject.instance().layersAdded.disconnect(self._exclude_results)
        except TypeError:
            pass
        self.save_settings()
        if self.current_run is not None:
            self.current_run.detach()   # cancelled; tells this dock nothing once it is gone
            self.current_run = None
        self.region_picker.remove_map_tool()

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.save_settings()
        super().closeEvent(event)


def describe_html(info):
    """What the model's metadata says, as a short HTML table."""
    scaling = info.get("scaling") or {}
    scaling_text = ", ".join(f"{k} {v}" for k, v in scaling.items()) or "none"
    shape = ["?" if d is None else str(d) for d in (info.get("input_shape") or [])]
    tile = info.get("tile_size")
    rows = [
        ("Classes", ", ".join(f"{i} {c}" for i, c in enumerate(info.get("classes", [])))),
        ("Tile size", f"{tile} px" if tile else "any (window 512 px by default)"),
        ("Input", f"[{', '.join(shape)}] {info.get('input_layout')} "
                  f"({info.get('input_layout_source')}), "
                  f"{info.get('n_channels') or 'any number of'} channel(s)"),
        ("Scaling", scaling_text),
        ("Activation", f"{info.get('output_activation')} "
                       f"({info.get('output_activation_source')})"),
    ]
    return "<br>".join(f"<i>{k}</i>: {_html(v)}" for k, v in rows)


def _html(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", "<br>"))
