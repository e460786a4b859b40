"""Plain text in the dock's rich-text labels, and the hint that lists what stops a run."""

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QLabel

#: The plugin's tab in QGIS's log (View > Panels > Log Messages): tracebacks, pip's output.
LOG_TAG = "Segmentation Explainer"


def html(text):
    """``text`` escaped for a QLabel showing rich text; line breaks kept.

    >>> html("a < b\\nc")
    'a &lt; b<br>c'
    """
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", "<br>"))


class Hint(QLabel):
    """What stops a run, one bullet per problem on a pale note; hidden when nothing does."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)   # one problem alone is HTML too
        self.setObjectName("SegExplainerHint")
        self.setStyleSheet("QLabel { background: #fff8dc; border: 1px solid #e0c060; "
                           "padding: 4px; }")

    def show_problems(self, problems):
        """Show ``problems`` (sentences for the user); hide the hint when there are none."""
        if problems:
            self.setText("<br>".join(f"&bull; {html(p)}" for p in problems))
        self.setVisible(bool(problems))
