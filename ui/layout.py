"""Making a panel fit a narrow dock (issue 14 point 4): no widget may force a horizontal
scroll bar at the ~300 px QGIS gives a dock beside its own panels."""

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (QComboBox, QFormLayout, QFrame, QScrollArea, QSizePolicy,
                                 QVBoxLayout, QWidget)

#: Characters a combo box needs at least (longer entries are elided; the tooltip or popup
#: shows them whole).
COMBO_CHARACTERS = 8
#: The narrowest a combo box may become, in pixels (Qt 5 keeps the longest entry's width as
#: a combo box's minimum size hint, whatever its size-adjust policy says).
COMBO_MIN_WIDTH = 90


def fit_narrow(widget):
    """Let everything under ``widget`` shrink to a narrow dock: form rows put their field
    under the label when both do not fit side by side, combo boxes stop growing to their
    longest entry."""
    for form in widget.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
        combo.setMinimumWidth(COMBO_MIN_WIDTH)
        policy = combo.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Expanding)
        combo.setSizePolicy(policy)


def column(widgets, margins=True):
    """A widget holding ``widgets`` top to bottom (without margins when ``margins`` is
    False)."""
    holder = QWidget()
    layout = QVBoxLayout(holder)
    if not margins:
        layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


def dock_contents(scrolled, footer):
    """A dock's content: ``scrolled`` (widgets, top to bottom) in a scroll area, ``footer``
    always visible below it; everything fits a narrow dock (:func:`fit_narrow`)."""
    body = column(scrolled)
    body.layout().addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(body)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    container = QWidget()
    outer = QVBoxLayout(container)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll, 1)
    outer.addWidget(footer)
    fit_narrow(container)
    return container
