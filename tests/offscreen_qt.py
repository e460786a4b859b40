"""pytest plugin loaded with ``-p tests.offscreen_qt`` (pytest.ini), before pytest-qgis starts QGIS.

pytest-qgis creates its QgsApplication in its earliest hook, before any conftest.py is imported,
so the Qt platform must be chosen here: offscreen unless the caller picked one (e.g. ``xcb`` with
a real display to watch the tests).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
