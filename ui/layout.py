"""Making a panel fit a narrow dock (issue 14 point 4): no widget may force a horizontal
scroll bar at the ~300 px QGIS gives a dock beside its own panels."""

from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QSizePolicy

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
