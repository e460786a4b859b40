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

from qgis.core import Qgis, QgsProject, QgsSettings
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QDockWidget

from . import settings
from .dependency_box import DependencyBox
from .input_box import InputBox
from .layout import column, dock_contents
from .output_box import OutputBox
from .parameter_form import MethodForm
from .region_picker import RegionPicker
from .result_panel import ResultPanel
from .text import Hint


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
        self.deps_box = DependencyBox()
        self.deps_box.installed.connect(self._deps_installed)
        self.hint = Hint()
        self.input_box = InputBox(lambda: (QgsSettings(), settings.key))
        self.input_box.changed.connect(self.update_state)
        self.input_box.classChanged.connect(self.update_estimate)
        self.model_picker = self.input_box.model_picker
        self.region_picker = RegionPicker(lambda: self._from_iface("mapCanvas"))
        self.region_picker.changed.connect(self.update_state)
        self.method_form = MethodForm()
        self.method_form.estimateChanged.connect(self.update_estimate)
        self.output_box = OutputBox()
        self.output_box.estimate_button.clicked.connect(self.start_estimate)
        self.result_panel = ResultPanel(lambda: self._from_iface("messageBar"))
        self.result_panel.run_button.clicked.connect(self.run)
        self.result_panel.cancel_button.clicked.connect(self.cancel)
        # The form scrolls; Run, Cancel, progress and the result stay visible below it.
        self.form = column([self.input_box, self.region_picker, self.method_form,
                            self.output_box], margins=False)
        self.setWidget(dock_contents([self.deps_box, self.hint, self.form], self.result_panel))
        QgsProject.instance().layersAdded.connect(self._exclude_results)
        self.deps_box.refresh()
        self.restore_settings()
        self._exclude_results()
        self.update_state()

    def _exclude_results(self, *_):
        """The plugin's own results (rasters, cells, region outlines) are never offered as
        the raster to explain or the region layer."""
        from ..processing_provider.styling import is_result

        results = [layer for layer in QgsProject.instance().mapLayers().values()
                   if is_result(layer)]
        self.input_box.raster_combo.setExceptedLayerList(results)
        self.region_picker.layer_combo.setExceptedLayerList(results)

    def _from_iface(self, name):
        """``iface.<name>()``: the map canvas, the message bar; None without a GUI."""
        try:
            return getattr(self.iface, name)()
        except AttributeError:
            return None

    def _deps_installed(self, task):
        if task.ok and not self.deps_box.missing:
            self.result_panel.message("Python packages installed.", task.message,
                                      Qgis.MessageLevel.Success)
            self.model_picker.load(self.model_picker.file_widget.filePath())
        self.update_state()

    # ====================================================================== state
    def problems(self):
        """What stops a run, as sentences for the user (empty when ready)."""
        region = self.region_picker.problem()
        return self.deps_box.problems() + self.input_box.problems() + ([region] if region else [])

    def is_running(self):
        return self.current_run is not None

    def update_state(self, *_):
        problems = self.problems()
        running = self.is_running()
        self.hint.show_problems(problems)
        self.result_panel.set_state(not problems, running)
        self.form.setEnabled(not running)
        self.output_box.set_state(self.model_picker.info is not None and not running)
        self.update_estimate()

    # ====================================================================== estimate
    def estimate_inputs(self):
        """``(plan, occlusion sample)`` of the run as set: see
        :func:`~seg_explainer.processing_provider.estimate.estimate_inputs`."""
        from ..processing_provider.estimate import estimate_inputs

        method = self.method_form.current_method()
        return estimate_inputs(method, self.method_form.values(method),
                               self.region_picker.outline(), self.input_box.raster(),
                               self.model_picker.info, self.model_picker.class_name(),
                               self.input_box.bands())

    def plan(self):
        """The run's :class:`~seg_explainer.core.estimate.Plan`, or None (see above)."""
        return self.estimate_inputs()[0]

    def batch_size(self):
        """The form's batch size as the engine takes it (None: automatic)."""
        from ..processing_provider.parameters import by_key

        return by_key("BATCH_SIZE").from_form(self.method_form.common_value("BATCH_SIZE"))

    def update_estimate(self, *_):
        """The run's window, cells and evaluations, and its time once the model is timed."""
        plan, sample = self.estimate_inputs()
        return self.output_box.show_estimate(self.model_picker.path(), plan, self.batch_size(),
                                             occlusion=sample)

    def start_estimate(self):
        """Time the model on the run's window in the background (a QgsTask; for occlusion it
        also samples the trees). Returns the task, or None (no plan yet, or a timing runs)."""
        plan, sample = self.estimate_inputs()
        if plan is None:
            return None
        return self.output_box.start_timing(
            self.model_picker.path(), plan.window, self.input_box.channels(), self.batch_size(),
            done=self.update_state, occlusion=sample)

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
        method = self.method_form.current_method()
        raster = self.input_box.raster()
        class_name = self.model_picker.class_name()
        now = time.localtime()
        params = {"INPUT": raster.id(), "MODEL": self.model_picker.path(), "ROI": roi,
                  "CLASS": class_name,
                  "BANDS": self.input_box.bands()[0] or None,  # valid: problems() said so
                  **self.method_form.values(method),
                  "FAITHFULNESS": self.output_box.faithfulness_steps(),
                  **self.output_box.paths(raster.name(), class_name, method, now)}
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
        ``seg_explainer/<name>`` (:mod:`.settings`), restored in this order: the rows of the
        method form (the declarations' defaults), the bands, the output box and the model
        picker (the class before the last model, which picks it if the model has it)."""
        return (self.method_form.settings_rows() + self.input_box.settings_rows()
                + self.output_box.settings_rows() + self.model_picker.settings_rows())

    def save_settings(self):
        settings.save(self.settings_table())

    def restore_settings(self):
        settings.restore(self.settings_table())

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
