"""The dock's run panel: Run and Cancel, the progress bar, what the last run gave (summary,
warnings, errors) and its report, and the message bar's copy of each message."""

from pathlib import Path

from qgis.core import Qgis
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, \
    QWidget

from .text import html


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


def run_summary(run):
    """One line of a finished :class:`~.task.ExplainRun`'s results: prediction, base value,
    sum of contributions (not for RISE, which is not additive), colour scale, faithfulness,
    evaluations, seconds."""
    r = run.results
    parts = []
    if "PREDICTION" in r:
        parts.append(f"prediction {r['PREDICTION']:.3f}")
    if r.get("BASE_VALUE") is not None and r.get("BASE_VALUE") == r.get("BASE_VALUE"):
        parts.append(f"base value {r['BASE_VALUE']:.3f}")
    if "SUM_CONTRIBUTIONS" in r and run.label[1] != "rise":  # RISE is not additive
        parts.append(f"sum of contributions {r['SUM_CONTRIBUTIONS']:+.3f}")
    if r.get("MAX_ABS_CONTRIBUTION") is not None:
        from ..processing_provider.styling import colour_scale

        parts.append(f"colour scale +-{colour_scale(r['MAX_ABS_CONTRIBUTION'])[0]:g}")
    if r.get("DELETION_AUC") is not None and r["DELETION_AUC"] == r["DELETION_AUC"]:
        parts.append(f"deletion AUC {r['DELETION_AUC']:.3f} (random "
                     f"{r['RANDOM_DELETION_AUC']:.3f}), insertion AUC "
                     f"{r['INSERTION_AUC']:.3f} (random {r['RANDOM_INSERTION_AUC']:.3f})")
    if "N_EVALUATIONS" in r:
        parts.append(f"{int(r['N_EVALUATIONS'])} model evaluations")
    if "SECONDS" in r:
        parts.append(f"{r['SECONDS']:.1f} s")
    return ", ".join(parts)


class ResultPanel(QWidget):
    """Run, Cancel, progress, the last run's result and its report.

    ``message_bar`` is a callable giving QGIS's message bar (None without a GUI). The dock
    connects ``run_button`` and ``cancel_button``; the panel says what happens.

    Attributes
    ----------
    last_report : str or None
        The report of the last successful run, while it exists ("Open report").
    message_widget : QgsMessageBarItem or None
        The last message pushed with an "Open report" button.
    """

    def __init__(self, message_bar, parent=None):
        super().__init__(parent)
        self.message_bar = message_bar
        self.last_report = None
        self.message_widget = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Explain the region with the method of the open tab (in the "
                                   "background; see the task manager).")
        row.addWidget(self.run_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running explanation; no files are left "
                                      "behind.")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.label = QLabel()
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.report_button = QPushButton("Open report")
        self.report_button.setToolTip("Open the report figure (PNG) of the last run")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.open_report)
        layout.addWidget(self.report_button)

    def set_state(self, can_run, running):
        self.run_button.setEnabled(can_run and not running)
        self.cancel_button.setEnabled(running)

    # -- a run -------------------------------------------------------------------------------
    def started(self):
        """A run started: no report ("Open report" never opens the previous run's)."""
        self.last_report = None
        self.report_button.setEnabled(False)
        self.progress.setValue(0)
        self.label.setText("Running... (see also the task manager)")

    def set_progress(self, value):
        self.progress.setValue(int(value))

    def cancelling(self):
        self.label.setText("Cancelling...")

    def finished(self, run):
        """Say what the finished :class:`~.task.ExplainRun` ``run`` gave, here and in the
        message bar: its summary and every warning (at warning level), a cancel as a cancel,
        an error as an error."""
        warnings = list(dict.fromkeys(run.warnings))   # each once, in order
        warned = "".join(f"<br>&#9888; {html(w)}" for w in warnings)
        if run.ok and run.project_closed:
            folder = run.output_folder()
            text = (f"The project was closed during the run, so its results were not added to "
                    f"this one; they are in {folder}.")
            self.progress.setValue(100)
            self.label.setText(html(text) + warned)
            self.message("Explanation ready", " ".join([text] + warnings),
                         Qgis.MessageLevel.Warning, duration=0)
        elif run.ok:
            summary = run_summary(run)
            self.progress.setValue(100)
            self.label.setText(f"<b>{html(run.group_name)}</b>: {html(summary)}" + warned)
            report = run.results.get("REPORT")
            self.last_report = report if report and Path(report).exists() else None
            self.report_button.setEnabled(self.last_report is not None)
            if warnings:  # a result to read with care: said at warning level, kept on screen
                self.message("Explanation ready, with warnings",
                             f"{run.group_name}: {summary}. " + " ".join(warnings),
                             Qgis.MessageLevel.Warning, report=self.last_report, duration=0)
            else:
                self.message("Explanation ready", f"{run.group_name}: {summary}",
                             Qgis.MessageLevel.Success, report=self.last_report)
            if run.error:
                self.show_error(run.error)
        elif run.cancelled:
            self.progress.setValue(0)
            self.label.setText("Explanation cancelled; no files were written.")
            self.message("Explanation cancelled", "You cancelled the run; no files were "
                         "written.", Qgis.MessageLevel.Info)
        else:
            self.progress.setValue(0)
            self.show_error(run.error)

    def open_report(self):
        """Open the last run's report; if no application opens it, say where it is."""
        if self.last_report:
            open_report_or_say_where(self.last_report, self.message)

    # -- messages ----------------------------------------------------------------------------
    def message(self, title, text, level, report=None, duration=10):
        """Push a message to QGIS's message bar, with an "Open report" button for
        ``report``."""
        bar = self.message_bar()
        if bar is None:
            return None
        if report is None:
            bar.pushMessage(title, text, level=level, duration=duration)
            return None
        widget = bar.createMessage(title, text)
        button = QPushButton("Open report", widget)
        button.clicked.connect(lambda: open_report_or_say_where(report, self.message))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, level, duration)
        self.message_widget = widget
        return widget

    def show_error(self, text):
        self.label.setText(f"<span style='color:#b00000'>{html(text)}</span>")
        self.message("Segmentation Explainer", text, Qgis.MessageLevel.Critical, duration=0)
