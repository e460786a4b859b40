"""The dock's "Output" box: where results go, whether faithfulness is measured, and what a
run will cost (model evaluations, and time once one batch has been timed)."""

import re
import time
from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QLabel, QPushButton,
                                 QSizePolicy, QVBoxLayout)

from ..processing_provider.estimate import format_duration

#: Steps of the deletion / insertion curves when "Measure faithfulness" is ticked.
FAITHFULNESS_STEPS = 20
#: The file extension of each output a run writes.
EXTENSIONS = {"excitation": "tif", "inhibition": "tif", "signed": "tif", "cells": "gpkg",
              "report": "png", "region": "gpkg"}


def _safe(text):
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def _sample_key(model_path, occlusion):
    """A hashable key of a model and occlusion sample inputs (None without a sample)."""
    if occlusion is None:
        return None
    return (model_path,) + tuple(sorted(
        (k, repr(sorted(v.items())) if isinstance(v, dict) else repr(v))
        for k, v in occlusion.items()))


def default_output_folder():
    """Where results go until the user chooses a folder."""
    return Path.home() / "seg_explainer_results"


class OutputBox(QGroupBox):
    """Output folder, "Measure faithfulness", and the run's estimate (the dock connects
    ``estimate_button`` to :meth:`start_timing`).

    Attributes
    ----------
    estimate_task : EstimateTask or None
        The model's timing while it runs.
    """

    def __init__(self, parent=None):
        super().__init__("Output", parent)
        self.seconds_per_evaluation = {}   # by (model, window, batch size: None automatic)
        self.measured = {}            # occlusion's evaluations by sample inputs
        self.estimate_task = None
        form = QFormLayout(self)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setDialogTitle("Folder for the explanation rasters and report")
        self.folder_widget.setToolTip("Excitation, inhibition and signed rasters (GeoTIFF), "
                                      "the cells and the region outline (GeoPackage) and the "
                                      "report figure (PNG) are written here, each named after "
                                      "the raster, class, method and time.")
        self.folder_widget.setFilePath(str(default_output_folder()))
        form.addRow("Output folder", self.folder_widget)
        self.faithfulness_check = QCheckBox()
        self.faithfulness_check.setToolTip(
            f"After the explanation, remove and restore the window's pixels in the map's order "
            f"and in a random order ({FAITHFULNESS_STEPS} steps, "
            f"{4 * (FAITHFULNESS_STEPS + 1)} more model evaluations): a faithful map has a "
            "lower deletion and a higher insertion AUC than the random ordering.")
        text = QLabel("Measure faithfulness (deletion / insertion AUC against a random "
                      "ordering)")
        text.setWordWrap(True)
        text.setToolTip(self.faithfulness_check.toolTip())
        text.mousePressEvent = lambda _e: self.faithfulness_check.toggle()
        form.addRow(self.faithfulness_check, text)
        row = QVBoxLayout()
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setSizePolicy(QSizePolicy.Policy.Expanding,
                                          QSizePolicy.Policy.Preferred)
        row.addWidget(self.estimate_label, 1)
        self.estimate_button = QPushButton("Estimate time")
        self.estimate_button.setToolTip("Times a few model calls of BATCH_SIZE windows (in the "
                                        "background) and extrapolates to the whole run.")
        row.addWidget(self.estimate_button)
        form.addRow(row)

    def folder(self):
        """The chosen output folder (the default one when the field is empty)."""
        return Path(self.folder_widget.filePath().strip() or default_output_folder())

    def paths(self, raster_name, class_name, method, when):
        """``{KEY: path}`` of every output a run of ``method`` writes (:data:`EXTENSIONS`; no
        cells for RISE) in the output folder, created if need be, each named after the raster,
        class, method and the time ``when`` (a ``time.struct_time``), never a name an earlier
        run used. Raises ValueError with a message for the user when the folder cannot be
        created."""
        outputs = [name for name in EXTENSIONS if name != "cells" or method != "rise"]
        folder = self.folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"The output folder {folder} cannot be created ({exc}); choose "
                             "another.") from None
        stem = base = f"{_safe(raster_name)}_{_safe(class_name)}_{method}_" \
                      f"{time.strftime('%Y%m%d_%H%M%S', when)}"
        n = 1
        while any(folder.glob(stem + "_*")):
            n += 1
            stem = f"{base}-{n}"
        return {name.upper(): str(folder / f"{stem}_{name}.{EXTENSIONS[name]}")
                for name in outputs}

    def faithfulness_steps(self):
        return FAITHFULNESS_STEPS if self.faithfulness_check.isChecked() else 0

    def settings_rows(self):
        """``[(settings name, getter, setter, default)]`` of the dock's settings table: the
        faithfulness switch and the output folder (an empty one restores the default)."""
        check, folder = self.faithfulness_check, self.folder_widget
        return [("faithfulness", check.isChecked, check.setChecked, False),
                ("output_folder", folder.filePath,
                 lambda path: folder.setFilePath(path or str(default_output_folder())), "")]

    # -- the estimate ------------------------------------------------------------------------
    def show_estimate(self, model_path, plan, batch_size, occlusion=None):
        """The run's window, cells and model evaluations (a
        :class:`~seg_explainer.core.estimate.Plan`, None while no region is chosen), and its
        time once this model, window and batch size (None: automatic) have been timed; for
        occlusion, the
        evaluations measured on a sample of its trees once ``occlusion`` (the sample's inputs)
        has been timed. Returns ``(evaluations, seconds or None)``, or None."""
        if model_path is None:
            self.estimate_label.setText("Choose a model to see the cost of a run.")
            return None
        if plan is None:
            self.estimate_label.setText("Choose a region of interest: the window and the cells "
                                        "follow it.")
            return None
        measured = self.measured.get(_sample_key(model_path, occlusion))
        text = plan.text()
        if plan.method == "occlusion" and measured is not None:
            plan = plan.with_evaluations(measured)
            text = plan.text() + " (from a sample of its trees)"
        evaluations = plan.evaluations
        per_evaluation = self.seconds_per_evaluation.get((model_path, plan.window, batch_size))
        seconds = None
        if per_evaluation is not None and (plan.method != "occlusion" or measured is not None):
            seconds = plan.seconds(per_evaluation)
            text += f"; about {format_duration(seconds)}"
        else:
            text += "; press 'Estimate time' to time the model on this window"
        self.estimate_label.setText(text + ".")
        return evaluations, seconds

    def set_state(self, can_time):
        """"Estimate time" is enabled when a run could be timed and no timing is running."""
        self.estimate_button.setEnabled(can_time and self.estimate_task is None)

    def start_timing(self, model_path, window, channels, batch_size, done, occlusion=None):
        """Time the model in the background (a QgsTask), ``batch_size`` images a call (None:
        automatic), and, given ``occlusion`` (the inputs of a sample of occlusion's trees),
        measure its evaluations; ``done(task)`` is called on the main thread once the answer
        is kept. Returns the task, or None while a timing runs."""
        from .estimate_task import EstimateTask
        from .task import start_task

        if self.estimate_task is not None:
            return None
        key = (model_path, window, batch_size)

        def timed(task):
            if task.seconds_per_evaluation is not None:
                self.seconds_per_evaluation[key] = task.seconds_per_evaluation
            if task.evaluations is not None:
                self.measured[_sample_key(model_path, occlusion)] = task.evaluations
            self.estimate_task = None
            done(task)
            if task.error:
                self.estimate_label.setText(f"The model could not be timed: {task.error}")

        self.estimate_task = EstimateTask(model_path, window, channels, batch_size, done=timed,
                                          occlusion=occlusion)
        self.estimate_button.setEnabled(False)
        self.estimate_label.setText("Timing the model on the window..." if occlusion is None
                                    else "Timing the model and sampling occlusion's trees on "
                                         "the region...")
        return start_task(self.estimate_task)
