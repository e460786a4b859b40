"""Ready for QGIS 4 (Qt 6): the code avoids every Qt5-only construct that QGIS's PyQt5-to-PyQt6
migration notes (``scripts/pyqt5_to_pyqt6`` in QGIS) list, and spells every enum scoped.

The scan is an AST walk over the plugin's own Python files. Enum spellings are checked against the
running QGIS: ``Name.attr`` where ``attr`` is an enum *member* (not a type) is an unscoped
spelling, which PyQt6 rejects; ``Name.Type.attr`` where ``attr`` is an alias of a member with
another name is one of the compatibility shims QGIS 3.36+ keeps for the renamed enums (e.g.
``QgsProcessing.SourceType.TypeVectorPolygon``), which QGIS 4 drops.
"""

import ast
import configparser
import enum
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["core", "processing_provider", "ui", "resources", "tests", "scripts", "bench"]
TOP_FILES = ["__init__.py", "plugin.py"]

#: names whose import means Qt5-only code (QGIS migration notes)
FORBIDDEN_IMPORTS = {
    "QRegExp": "QRegExp is gone in Qt 6: use QRegularExpression",
    "QRegExpValidator": "use QRegularExpressionValidator",
    "qApp": "use QApplication.instance()",
    "resources_rc": "compiled resources are gone in Qt 6: load files by path",
    "QDesktopWidget": "QDesktopWidget is gone in Qt 6: use QScreen",
}
FORBIDDEN_MODULES = ("PyQt5", "PyQt6", "sip", "qgis.PyQt.Qt")
RENAMED_ENUMS = {("Qt", "MidButton"), ("Qt", "TextColorRole"), ("Qt", "BackgroundColorRole"),
                 ("QPainter", "HighQualityAntialiasing")}


def python_files():
    files = [ROOT / name for name in TOP_FILES]
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _qgis_imports(tree):
    """``{local name: object}`` for every ``from qgis... import name`` in the module."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qgis"):
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    return names


def _is_enum_member(value):
    if isinstance(value, enum.Enum):
        return True
    # PyQt5 / sip enums: int subclasses whose type is a named attribute of a Qt or QGIS class
    kind = type(value)
    return (isinstance(value, int) and kind not in (int, bool)
            and kind.__module__.split(".")[0] in ("PyQt5", "PyQt6", "qgis", "sip"))


def violations_in(path):
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    imported = _qgis_imports(tree)
    found = []

    def report(node, message):
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        found.append(f"{where}:{node.lineno}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [a.name for a in node.names])
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_MODULES[:3] or module == FORBIDDEN_MODULES[3]:
                    report(node, f"import from {module}: import Qt through qgis.PyQt")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in FORBIDDEN_IMPORTS:
                        report(node, f"{alias.name}: {FORBIDDEN_IMPORTS[alias.name]}")
        elif isinstance(node, ast.FunctionDef) and node.name == "exec_":
            report(node, "def exec_: name it exec")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "exec_":
                report(node, "exec_(): use exec()")
            if node.func.attr == "desktop" and not node.args:
                report(node, "QApplication.desktop() is gone in Qt 6")
            if node.func.attr == "addAction" and len(node.args) >= 4:
                report(node, "fragile addAction(...) overload: build the QAction first")
        elif isinstance(node, ast.Name) and node.id == "qApp":
            report(node, "qApp: use QApplication.instance()")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "activated":
                report(node, "activated[str] is gone in Qt 6: use textActivated")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner_name, attr = node.value.id, node.attr
            if (owner_name, attr) in RENAMED_ENUMS:
                report(node, f"{owner_name}.{attr} was removed in Qt 6")
            if owner_name == "QVariant" and attr[:1].isupper():
                report(node, f"QVariant.{attr}: use QMetaType.Type (QVariant types are gone in Qt 6)")
            owner = imported.get(owner_name)
            if owner is None or not isinstance(owner, type):
                continue
            value = getattr(owner, attr, None)
            if value is not None and not isinstance(value, type) and _is_enum_member(value):
                report(node, f"{owner_name}.{attr} is an unscoped enum: write "
                             f"{type(value).__qualname__}.{getattr(value, 'name', attr)} (see "
                             "processing_provider/compat.py)")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)):
            owner = imported.get(node.value.value.id)
            kind = getattr(owner, node.value.attr, None) if owner is not None else None
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                member = getattr(kind, node.attr, None)
                if isinstance(member, enum.Enum) and member.name != node.attr:
                    report(node, f"{node.value.value.id}.{node.value.attr}.{node.attr} is a "
                                 f"compatibility alias of {kind.__name__}.{member.name}, which "
                                 "QGIS 4 drops: use the new name (see processing_provider/compat.py)")
    return found


def test_scanner_catches_each_qt5_construct(tmp_path):
    """The scan itself: a file with every forbidden construct gives one finding for each."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from PyQt5.QtCore import QTimer\n"
        "from qgis.PyQt.QtCore import QRegExp, Qt\n"
        "from qgis.core import QgsTask\n"
        "dialog.exec_()\n"
        "x = Qt.AlignLeft\n"
        "y = QgsTask.CanCancel\n"
        "z = Qt.MidButton\n"
        "ok = Qt.AlignmentFlag.AlignLeft\n")
    found = violations_in(bad)
    text = "\n".join(found)
    for needle in ("PyQt5", "QRegExp", "exec_", "Qt.AlignLeft", "QgsTask.CanCancel",
                   "Qt.MidButton"):
        assert needle in text, needle
    assert not any(line.startswith(f"{bad}:8:") for line in found), text   # scoped: fine
    assert len(found) == 7, text     # Qt.MidButton is both removed and unscoped


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_qt5_only_constructs(path):
    assert violations_in(path) == []


def test_metadata_declares_qt6_and_qgis4():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    general = meta["general"]
    assert general.get("supportsQt6", "").strip().lower() in ("true", "yes")
    assert general["qgisMinimumVersion"] == "3.22"
    major, minor = (int(part) for part in general["qgisMaximumVersion"].split("."))
    assert (major, minor) >= (4, 0)
