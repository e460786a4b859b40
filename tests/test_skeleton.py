"""The plugin skeleton: layout, metadata, import isolation, load/unload, qgis_process, packaging."""

import ast
import configparser
import os
import subprocess
import sys
import textwrap
import zipfile

from helpers_qgis import ROOT, qgis_process

REQUIRED_METADATA = ["name", "qgisMinimumVersion", "description", "about", "version", "author",
                     "email", "repository"]


def test_layout_has_the_plugin_files():
    for name in ["metadata.txt", "__init__.py", "plugin.py", "pb_tool.cfg", "README.md", "LICENSE",
                 "Makefile", "requirements.txt", "core", "processing_provider", "ui", "resources",
                 "tests"]:
        assert (ROOT / name).exists(), name
    assert not (ROOT / "tests" / "__init__.py").exists()
    assert not (ROOT / "processing").exists(), "a processing/ folder would shadow QGIS's own"
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()


def test_metadata_has_what_the_plugin_repository_requires():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    general = meta["general"]
    for key in REQUIRED_METADATA:
        assert general.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert general["name"] == "Segmentation Explainer"
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert general["category"] == "Raster"
    assert len(general["tags"].split(",")) >= 5
    assert (ROOT / general["icon"]).is_file()


def test_init_only_holds_a_lazy_class_factory():
    source = (ROOT / "__init__.py").read_text()
    assert "def classFactory(iface)" in source
    top_level_imports = [line for line in source.splitlines()
                         if line.startswith(("import", "from"))]
    assert top_level_imports == []


def test_core_imports_without_qgis_or_qt():
    script = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("qgis", "PyQt5", "PyQt6", "sip"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        root = {str(ROOT)!r}
        spec = importlib.util.spec_from_file_location(
            "seg_explainer", root + "/__init__.py", submodule_search_locations=[root])
        mod = importlib.util.module_from_spec(spec); sys.modules["seg_explainer"] = mod
        spec.loader.exec_module(mod)
        import pkgutil, seg_explainer.core as core
        names = [m.name for m in pkgutil.iter_modules(core.__path__)]
        for name in names:
            importlib.import_module("seg_explainer.core." + name)
        try:
            import qgis.core
        except ImportError:
            print("BLOCKED-OK", len(names))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BLOCKED-OK" in proc.stdout


def _plugin_imports(path):
    """``[(module, names, node)]`` of every import in ``path`` (a plugin file), relative ones
    resolved to dotted paths inside the plugin (``"ui.task"``, ``"core"``)."""
    package = list(path.relative_to(ROOT).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node))
    return found


def test_imports_go_one_way_and_no_private_name_crosses_a_module():
    """``core`` imports neither the provider nor the dock, the provider not the dock, the dock
    not ``core`` (it goes through the provider); no module imports another's private
    (``_name``) names or reads them as ``module._name``."""
    below = {"core": ("processing_provider", "ui", "plugin"),
             "processing_provider": ("ui", "plugin"), "ui": ("core",)}
    folders = ("core", "processing_provider", "ui")
    files = [ROOT / "plugin.py", ROOT / "__init__.py"] + sorted(
        p for folder in folders for p in (ROOT / folder).rglob("*.py"))
    problems = []
    for path in files:
        where = path.relative_to(ROOT)
        modules = set()
        for module, names, node in _plugin_imports(path):
            top = module.split(".")[0]
            if top in below.get(where.parts[0], ()):
                problems.append(f"{where}:{node.lineno} imports {module}")
            problems += [f"{where}:{node.lineno} imports {module}.{name}" for name in names
                         if name.startswith("_") and not name.startswith("__")]
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in modules and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                problems.append(f"{where}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert problems == []


class RecordingIface:
    """A QGIS interface over a real main window that records what the plugin adds."""

    def __init__(self, main_window):
        self.window = main_window
        self.raster_menu = {}

    def mainWindow(self):  # noqa: N802
        return self.window

    def addToolBar(self, name):  # noqa: N802
        return self.window.addToolBar(name)

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self.raster_menu.setdefault(name, []).append(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        self.raster_menu[name].remove(action)
        if not self.raster_menu[name]:
            del self.raster_menu[name]

    def __getattr__(self, name):
        raise AttributeError(f"RecordingIface has no {name}")


def _leftovers(window):
    from qgis.PyQt.QtWidgets import QAction, QDockWidget, QToolBar

    found = []
    for cls, name in [(QToolBar, "SegExplainerToolbar"), (QDockWidget, "SegExplainerDock"),
                      (QAction, "SegExplainerShowDock")]:
        found += [w for w in window.findChildren(cls) if w.objectName() == name]
    return found


def test_plugin_loads_and_unloads_twice_without_leftovers(qgis_app, qgis_parent):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication, QEvent
    from qgis.PyQt.QtWidgets import QMainWindow
    import seg_explainer

    window = QMainWindow(qgis_parent)
    iface = RecordingIface(window)
    registry = QgsApplication.processingRegistry()
    for _ in range(2):
        plugin = seg_explainer.classFactory(iface)
        plugin.initGui()
        assert registry.providerById("segexplainer") is not None
        assert len(iface.raster_menu["&Segmentation Explainer"]) == 1
        plugin.actions[0].trigger()  # opens the dock
        assert plugin.dock is not None and plugin.dock.isVisibleTo(window)
        assert _leftovers(window)
        plugin.unload()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert registry.providerById("segexplainer") is None
        assert iface.raster_menu == {}
        assert _leftovers(window) == []


def test_init_processing_works_without_iface(qgis_app):
    from qgis.core import QgsApplication
    import seg_explainer

    plugin = seg_explainer.classFactory(None)
    plugin.initProcessing()
    plugin.initGui()  # must not touch the (absent) GUI
    try:
        provider = QgsApplication.processingRegistry().providerById("segexplainer")
        assert provider is not None
        assert "segexplainer:segment" in [a.id() for a in provider.algorithms()]
    finally:
        plugin.unload()
    assert QgsApplication.processingRegistry().providerById("segexplainer") is None


def test_qgis_process_finds_the_provider(tmp_path):
    proc = qgis_process(["list"], tmp_path / "qp")
    assert "Segmentation Explainer" in proc.stdout
    assert "segexplainer:segment" in proc.stdout


def test_package_zip_installs_into_a_fresh_profile_and_loads(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--out",
                          str(tmp_path / "dist")], capture_output=True, text=True, check=True)
    zip_path = out.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert "seg_explainer/metadata.txt" in names
        assert not any("/tests/" in n or "__pycache__" in n for n in names)
        config = tmp_path / "config"
        plugins = config / "profiles" / "default" / "python" / "plugins"
        zf.extractall(plugins)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    site = subprocess.run([str(ROOT / ".venv/bin/python"), "-c",
                           "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "QGIS_PLUGINPATH"}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(runtime),
               QGIS_CUSTOM_CONFIG_PATH=str(config), PYTHONPATH=site)
    enable = subprocess.run(["/usr/bin/qgis_process.bin", "plugins", "enable", "seg_explainer"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    listing = subprocess.run(["/usr/bin/qgis_process.bin", "list"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert "segexplainer:segment" in listing.stdout, listing.stdout[-3000:] + listing.stderr
