"""The Segmentation Explainer dock: pick a raster, a model, a class and a region, then explain.

The dock only gathers parameters; the work is done by the same Processing algorithms the
toolbox runs (``segexplainer:explain_shap``, ``explain_rise``, ``explain_occlusion``), in QGIS's
task manager (:mod:`.task`), and their results are loaded by the toolbox's post-processors.
It is a composition of small widgets, each with one job: :class:`.DependencyBox`,
:class:`.InputBox` (raster, :class:`.BandsField`, :class:`.ModelPicker`),
:class:`.RegionPicker`, :class:`.MethodForm`, :class:`.OutputBox` and :class:`.ResultPanel`.
Everything the user sets is remembered in QgsSettings under ``seg_explainer/``, as listed by
:meth:`SegExplainerDock.settings_table`.
"""

import time
from functools import reduce

from qgis.core import Qgis, QgsProject, QgsSettings
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QDockWidget, QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from ..processing_provider.parameters import EXPLAIN_METHODS
from .dependency_box import DependencyBox
from .input_box import InputBox
from .layout import fit_narrow
from .output_box import FAITHFULNESS_STEPS, OutputBox, default_output_folder  # noqa: F401
from .parameter_form import TITLES, MethodForm
from .region_picker import RegionPicker
from .result_panel import ResultPanel
from .text import html as _html

SETTINGS = "seg_explainer"
METHODS = [(m, TITLES[m]) for m in EXPLAIN_METHODS]
#: The parts' widgets and values under the names the plugin and the tests use:
#: ``{part: {name: the part's attribute}}``, a part a dotted path from the dock.
PARTS = {
    "deps_box": dict(deps_label="label", deps_button="button", deps_status="status",
                     pip_task="pip_task", make_install_task="make_install_task",
                     install_dependencies="install"),
    "input_box": dict(raster_combo="raster_combo", bands_edit="bands_edit", bands="bands"),
    "input_box.model_picker": dict(
        model_widget="file_widget", model_label="label", recent_combo="recent_combo",
        class_combo="class_combo", model_info="info", model_error="error", load_model="load",
        recent_models="recent_models"),
    "region_picker": dict(
        region_drawn_radio="drawn_radio", region_layer_radio="layer_radio",
        region_layer_combo="layer_combo", selected_only="selected_only",
        draw_button="draw_button", region_label="label", region_geometry="geometry",
        region_crs="crs", map_tool="map_tool", set_region="set_region",
        start_drawing="start_drawing"),
    "method_form": dict(tabs="tabs", param_widgets="param_widgets",
                        current_method="current_method", method_values="method_values"),
    "output_box": dict(output_widget="folder_widget", faithfulness_check="faithfulness_check",
                       estimate_label="estimate_label", estimate_button="estimate_button"),
    "result_panel": dict(run_button="run_button", cancel_button="cancel_button",
                         progress="progress", result_label="label",
                         report_button="report_button", last_report="last_report",
                         message_widget="message_widget"),
}
ALIASES = {name: (part, attribute) for part, names in PARTS.items()
           for name, attribute in names.items()}
#: The common parameters' widgets under the names the tests use: ``name -> Processing key``.
COMMON_WIDGETS = {"window_spin": "WINDOW", "baseline_combo": "BASELINE",
                  "baseline_value_spin": "BASELINE_VALUE", "seed_spin": "SEED",
                  "batch_spin": "BATCH_SIZE", "crop_check": "CROP"}


def _key(name):
    return f"{SETTINGS}/{name}"


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
        self.current_run = None
        self.estimate_task = None
        self.deps_box = DependencyBox()
        self.deps_box.installed.connect(self._deps_installed)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setTextFormat(Qt.TextFormat.RichText)   # one problem alone is HTML too
        self.hint.setObjectName("SegExplainerHint")
        self.hint.setStyleSheet("QLabel { background: #fff8dc; border: 1px solid #e0c060; "
                                "padding: 4px; }")
        self.input_box = InputBox(lambda: (QgsSettings(), _key))
        self.input_box.changed.connect(self.update_state)
        self.input_box.classChanged.connect(self.update_estimate)
        self.model_picker = self.input_box.model_picker
        self.region_picker = RegionPicker(self.canvas)
        self.region_picker.changed.connect(self.update_state)
        self.method_form = MethodForm()
        self.method_form.estimateChanged.connect(self.update_estimate)
        for name, key in COMMON_WIDGETS.items():
            setattr(self, name, self.method_form.common_widgets[key])
        self.output_box = OutputBox()
        self.output_box.estimate_button.clicked.connect(self.start_estimate)
        self.result_panel = ResultPanel(self._message_bar)
        self.result_panel.run_button.clicked.connect(self.run)
        self.result_panel.cancel_button.clicked.connect(self.cancel)
        self._lay_out()
        QgsProject.instance().layersAdded.connect(self._exclude_results)
        self.deps_box.refresh()
        self.restore_settings()
        self._exclude_results()
        self.update_state()

    def __getattr__(self, name):
        """The names of :data:`ALIASES`, read from the part that holds them."""
        if name not in ALIASES:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        part, attribute = ALIASES[name]
        return getattr(reduce(getattr, part.split("."), self), attribute)

    def _lay_out(self):
        # The form scrolls; Run, Cancel, progress and the result stay visible below it.
        self.form = QWidget()
        form_layout = QVBoxLayout(self.form)
        form_layout.setContentsMargins(0, 0, 0, 0)
        for part in (self.input_box, self.region_picker, self.method_form, self.output_box):
            form_layout.addWidget(part)
        body = QWidget()
        layout = QVBoxLayout(body)
        for part in (self.deps_box, self.hint, self.form):
            layout.addWidget(part)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        container = QWidget()
        outer = QVBoxLayout(container)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        outer.addWidget(self.result_panel)
        self.setWidget(container)
        fit_narrow(container)

    def _exclude_results(self, *_):
        """The plugin's own results (rasters, cells, region outlines) are never offered as
        the raster to explain or the region layer."""
        from ..processing_provider.styling import is_result

        results = [layer for layer in QgsProject.instance().mapLayers().values()
                   if is_result(layer)]
        self.raster_combo.setExceptedLayerList(results)
        self.region_layer_combo.setExceptedLayerList(results)

    def canvas(self):
        try:
            return self.iface.mapCanvas()
        except AttributeError:
            return None

    def _message_bar(self):
        try:
            return self.iface.messageBar()
        except AttributeError:
            return None

    @property
    def draw_action(self):
        return self.region_picker.draw_action

    @draw_action.setter
    def draw_action(self, action):
        self.region_picker.draw_action = action

    def _deps_installed(self, task):
        if task.ok and not self.deps_box.missing:
            self.result_panel.message("Python packages installed.", task.message,
                                      Qgis.MessageLevel.Success)
            self.load_model(self.model_widget.filePath())
        self.update_state()

    # ====================================================================== state
    def problems(self):
        """What stops a run, as sentences for the user (empty when ready)."""
        found = []
        if self.deps_box.missing:
            found.append("Install the missing Python packages first (button above).")
        found.extend(self.input_box.problems())
        if self.region_picker.problem():
            found.append(self.region_picker.problem())
        return found

    def is_running(self):
        return self.current_run is not None

    def update_state(self, *_):
        problems = self.problems()
        running = self.is_running()
        if problems:
            self.hint.setText("<br>".join(f"&bull; {_html(p)}" for p in problems))
        self.hint.setVisible(bool(problems))
        self.result_panel.set_state(not problems, running)
        self.form.setEnabled(not running)
        self.estimate_button.setEnabled(self.model_info is not None and not running
                                        and self.estimate_task is None)
        self.update_estimate()

    # ====================================================================== estimate
    def plan(self, method=None):
        """The run's :class:`~seg_explainer.core.estimate.Plan` (window, cells, evaluations),
        None until a model, a raster and a region are chosen."""
        from ..processing_provider.estimate import plan_for_region

        outline = self.region_picker.outline()
        raster = self.raster_combo.currentLayer()
        if self.model_info is None or outline is None or raster is None:
            return None
        method = method or self.current_method()
        values = dict(self.method_values(method), WINDOW=self.window_spin.value())
        return plan_for_region(method, values, outline[0], outline[1], raster, self.model_info)

    def window(self):
        """The window edge the run will use (None until the region is known)."""
        plan = self.plan()
        return plan.window if plan is not None else None

    def update_estimate(self, *_):
        """The run's window, cells and evaluations, and its time once the model is timed."""
        return self.output_box.show_estimate(self.model_picker.path(), self.plan(),
                                             self.batch_spin.value())

    def start_estimate(self):
        """Time one batch in the background (a QgsTask)."""
        window = self.window()
        if self.model_info is None or self.estimate_task is not None or window is None:
            return None
        self.estimate_task = self.output_box.start_timing(
            self.model_info["path"], window, self.input_box.channels(),
            self.batch_spin.value(),
            done=self._estimated)
        return self.estimate_task

    def _estimated(self, task):
        self.estimate_task = None
        self.update_state()

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
        roi, _, problem = self.region_picker.parameter()
        if problem:
            raise ValueError(problem)
        method = self.current_method()
        raster = self.raster_combo.currentLayer()
        class_name = self.model_picker.class_name()
        now = time.localtime()
        outputs = ["excitation", "inhibition", "signed", "report", "region"] + \
            (["cells"] if method != "rise" else [])
        params = {"INPUT": raster.id(), "MODEL": self.model_info["path"], "ROI": roi,
                  "CLASS": class_name, "BANDS": self.bands()[0] or None,  # valid: problems()
                  **self.method_form.values(method),
                  "FAITHFULNESS": self.output_box.faithfulness_steps(),
                  **self.output_box.paths(raster.name(), class_name, method, outputs, now)}
        when = time.strftime("%Y-%m-%d %H:%M:%S", now)
        return (f"segexplainer:explain_{method}", params,
                result_group_name(raster.name(), class_name, method, when),
                raster.source().split("|")[0], (class_name, method, when))

    def run(self):
        """Start the explanation in the task manager. Returns the run, or None."""
        if self.is_running():
            self.result_panel.message(
                "Segmentation Explainer", "An explanation is already running; wait for it to "
                "finish or cancel it before starting another.", Qgis.MessageLevel.Info,
                duration=5)
            return None
        try:
            algorithm_id, params, group, source, label = self.build_parameters()
        except ValueError as exc:
            self.result_panel.show_error(str(exc))
            return None
        self.save_settings()
        from .task import ExplainRun

        run = ExplainRun(algorithm_id, params, group, source, label=label)
        run.progressChanged.connect(self.result_panel.set_progress)
        run.done.connect(self._run_done)
        self.result_panel.started()
        if not run.start():
            self.result_panel.show_error(run.error)
            return None
        self.current_run = run
        self.update_state()
        self.runningChanged.emit(True)
        return run

    def cancel(self):
        """Cancel the running explanation (it stops before its next batch)."""
        if self.current_run is not None:
            self.result_panel.cancelling()
            self.current_run.cancel()

    def _run_done(self, run):
        self.current_run = None
        self.result_panel.finished(run)
        self.update_state()
        self.runningChanged.emit(False)
        self.runFinished.emit(run)

    # ====================================================================== settings
    def settings_table(self):
        """``[(name, getter, setter, default)]``: every value the dock remembers under
        ``seg_explainer/<name>``, restored in this order. The method form's defaults are the
        declarations' (:mod:`..core.parameters`); a getter giving None saves nothing.

        Bands are remembered per raster file, not as one value: band numbers name one
        raster's band layout, and "2" restored on another raster with enough bands would
        silently feed the model the wrong band. The class is set before the last model is
        loaded, which picks it if the model has it."""
        picker, box = self.model_picker, self.output_box
        return self.method_form.settings_rows() + [
            ("bands_by_raster", self.bands_edit.remembered, self.input_box.restore_bands, "{}"),
            ("faithfulness", box.faithfulness_check.isChecked,
             box.faithfulness_check.setChecked, False),
            ("output_folder", box.folder_widget.filePath,
             lambda path: box.folder_widget.setFilePath(path or str(default_output_folder())),
             ""),
            ("class", lambda: picker.class_name() or None, picker.prefer_class, ""),
            ("last_model", picker.path, picker.restore, ""),
        ]

    def save_settings(self):
        settings = QgsSettings()
        for name, get, _, _ in self.settings_table():
            if get() is not None:
                settings.setValue(_key(name), get())

    def restore_settings(self):
        settings = QgsSettings()
        for name, _, put, default in self.settings_table():
            value = settings.value(_key(name), default)
            if isinstance(default, bool):      # QgsSettings may give "true" back
                value = value if isinstance(value, bool) else str(value).lower() == "true"
            try:
                put(value)
            except (TypeError, ValueError):    # saved by another version: the default
                put(default)

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
