"""The dock's method form: one tab per explanation method and the common parameters.

Every widget is made from the engine's declaration of its parameter
(:mod:`..core.parameters`, reached through :mod:`..processing_provider.parameters`): label,
range, default, tooltip and the QgsSettings key it is saved under. Values are read and written
as the Processing algorithms take them (a number, an enum index, a bool), keyed by their
Processing keys.
"""

from functools import partial

from qgis.gui import QgsDoubleSpinBox, QgsSpinBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel,
                                 QTabWidget, QVBoxLayout, QWidget)

from ..processing_provider.parameters import EXPLAIN_METHODS, by_key, by_name, for_algorithm

#: Tab titles of the methods.
TITLES = {"shap": "SHAP", "rise": "RISE", "occlusion": "Occlusion"}
TAB_TIPS = {"shap": "Hexagonal Kernel SHAP: Shapley values of hexagonal cells; they add up to "
                    "prediction minus base value.",
            "rise": "RISE: random smooth masks, score-weighted average.",
            "occlusion": "Multi-scale occlusion: a quadtree of occluded rectangles."}
#: What a spin box shows at the number that stands for the engine's automatic choice (a
#: declaration's ``none_as``: "0 = automatic").
AUTOMATIC_TEXT = "auto"


def method_keys(method):
    """Processing keys of the parameters only ``method`` has (its tab)."""
    return [d.key for d in for_algorithm(method) if d.algorithms == (method,)]


def common_keys():
    """Processing keys of the parameters every method shows in the dock (not the advanced)."""
    return [d.key for d in for_algorithm(EXPLAIN_METHODS[0])
            if set(EXPLAIN_METHODS) <= set(d.algorithms) and not d.advanced]


def tooltip(decl):
    """The tooltip of a declared parameter: its key, label, default and help line."""
    default = "on" if decl.is_switch and decl.default else \
        "off" if decl.is_switch else \
        decl.default if decl.kind is str else decl.form_default
    text = f"<p><b>{decl.key}</b>: {decl.label} (default {default}).</p><p>{decl.help}</p>"
    if decl.key == "CROP":
        tolerance, multiple = by_name("crop_tolerance"), by_key("CROP_MULTIPLE")
        text += (f"<p>Checked to {tolerance.default:g} on the image, with everything switched "
                 "off and with half of it switched off. Faster for small regions in large "
                 "windows; no effect when no smaller crop matches (the log says why). RISE and "
                 "occlusion give the uncropped result up to float rounding; SHAP cells wholly "
                 f"outside the crop get exactly 0. Crop edges lie on multiples of "
                 f"{multiple.default} px (CROP_MULTIPLE, set in the Processing algorithm).</p>")
    return text


def make_widget(decl):
    """A spin box, combo box or checkbox from the declaration: range, default, tooltip."""
    if decl.is_switch:
        widget = QCheckBox(decl.short or decl.label)
        widget.setChecked(decl.form_default)
    elif decl.kind is str:
        widget = QComboBox()
        widget.addItems(list(decl.choice_labels))
        widget.setCurrentIndex(decl.form_default)
    else:
        whole = decl.kind is int or decl.decimals == 0
        widget = QgsSpinBox() if whole else QgsDoubleSpinBox()
        low = decl.form_minimum
        high = decl.maximum
        if whole:
            widget.setRange(int(-2**31 + 1 if low is None else low),
                            int(2**31 - 1 if high is None else high))
        else:
            widget.setDecimals(decl.decimals)
            widget.setSingleStep(0.05)
            widget.setRange(-1e9 if low is None else low, 1e9 if high is None else high)
        widget.setClearValue(decl.form_default)
        widget.setShowClearButton(True)
        widget.setValue(decl.form_default)
        if decl.none_as is not None:
            widget.setSpecialValueText(AUTOMATIC_TEXT)
    widget.setToolTip(tooltip(decl))
    return widget


def widget_value(widget):
    """A widget's value as its Processing parameter takes it."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentIndex()
    return widget.value()


def set_widget_value(widget, value):
    """Set a widget from a saved value (QgsSettings may hand back strings)."""
    if isinstance(widget, QCheckBox):
        widget.setChecked(value if isinstance(value, bool) else str(value).lower() == "true")
    elif isinstance(widget, QComboBox):
        widget.setCurrentIndex(int(value))
    elif isinstance(widget, QgsDoubleSpinBox):
        widget.setValue(float(value))
    else:
        widget.setValue(int(float(value)))


class MethodForm(QWidget):
    """The method tabs and the common parameters.

    Signals
    -------
    estimateChanged()
        A value the run's cost depends on changed (method, its parameters, window, batch size).
    """

    estimateChanged = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tabs = QTabWidget()
        #: ``{method: {KEY: widget}}`` of the tabs, ``{KEY: widget}`` of the common box.
        self.param_widgets = {m: {} for m in EXPLAIN_METHODS}
        self.common_widgets = {}
        for method in EXPLAIN_METHODS:
            page = QWidget()
            form = QFormLayout(page)
            for key in method_keys(method):
                widget = self._add(form, by_key(key))
                widget.valueChanged.connect(self.estimateChanged)
                self.param_widgets[method][key] = widget
            self.tabs.addTab(page, TITLES[method])
            self.tabs.setTabToolTip(self.tabs.count() - 1, TAB_TIPS[method])
        self.tabs.currentChanged.connect(self.estimateChanged)
        layout.addWidget(self.tabs)

        common = QGroupBox("Common parameters")
        form = QFormLayout(common)
        for key in common_keys():
            self.common_widgets[key] = self._add(form, by_key(key))
        for key in ("WINDOW", "BATCH_SIZE"):
            self.common_widgets[key].valueChanged.connect(self.estimateChanged)
        self.common_widgets["BASELINE"].currentIndexChanged.connect(self._baseline_changed)
        self._baseline_changed()
        layout.addWidget(common)

    @staticmethod
    def _add(form, decl):
        widget = make_widget(decl)
        if isinstance(widget, QCheckBox):
            # The text in a wrapping label beside the box (a checkbox's own text never wraps
            # and would widen a narrow dock); clicking the text toggles the box.
            text = QLabel(widget.text())
            text.setWordWrap(True)
            text.setToolTip(widget.toolTip())
            text.mousePressEvent = lambda _event, box=widget: box.toggle()
            widget.setAccessibleName(widget.text())
            widget.setText("")
            form.addRow(widget, text)
        else:
            label = QLabel(decl.short or decl.label)
            label.setToolTip(widget.toolTip())
            label.setWordWrap(True)
            form.addRow(label, widget)
        return widget

    def _baseline_changed(self, *_):
        baseline = by_key("BASELINE").from_form(self.common_widgets["BASELINE"].currentIndex())
        self.common_widgets["BASELINE_VALUE"].setEnabled(baseline == "constant")

    def current_method(self):
        return EXPLAIN_METHODS[self.tabs.currentIndex()]

    def set_method(self, method):
        self.tabs.setCurrentIndex(EXPLAIN_METHODS.index(method)
                                  if method in EXPLAIN_METHODS else 0)

    def method_values(self, method=None):
        """``{KEY: value}`` of a method's tab (the current one by default)."""
        widgets = self.param_widgets[method or self.current_method()]
        return {key: widget_value(w) for key, w in widgets.items()}

    def common_value(self, key):
        """The value of the common parameter ``key`` (e.g. ``"WINDOW"``)."""
        return widget_value(self.common_widgets[key])

    def values(self, method=None):
        """``{KEY: value}`` of the method's tab and the common parameters."""
        out = {key: widget_value(w) for key, w in self.common_widgets.items()}
        out.update(self.method_values(method))
        return out

    def settings_table(self):
        """``[(settings name, widget)]``: what is saved and restored, one row per widget."""
        rows = [(f"{m}/{key}", w) for m, ws in self.param_widgets.items()
                for key, w in ws.items()]
        return rows + list(self.common_widgets.items())

    def settings_rows(self):
        """``[(settings name, getter, setter, default)]`` of the dock's settings table
        (:meth:`~.dock.SegExplainerDock.settings_table`): the open tab and every widget, each
        default the declaration's (:mod:`..core.parameters`)."""
        rows = [("method", self.current_method, self.set_method, EXPLAIN_METHODS[0])]
        for name, widget in self.settings_table():
            rows.append((name, partial(widget_value, widget), partial(set_widget_value, widget),
                         by_key(name.rsplit("/", 1)[-1]).form_default))
        return rows
