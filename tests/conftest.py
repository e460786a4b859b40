"""Test set-up: make the checkout importable as ``seg_explainer``, whatever its folder is called."""

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from dev_import import register_package  # noqa: E402

register_package(ROOT)

import pytest  # noqa: E402

SAMPLE_MODEL = ROOT / "resources" / "sample" / "oil_unet.onnx"


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """The sample scene, its truth and regions (default seed), written once per test session."""
    from seg_explainer.resources.sample import scene

    paths = scene.write_sample(tmp_path_factory.mktemp("sample"))
    return {key: str(value) for key, value in paths.items()} | {"model": str(SAMPLE_MODEL)}


def _qgis_running(request):
    """True when pytest-qgis has started QGIS for this session; core tests run without it."""
    try:
        return request.getfixturevalue("qgis_app") is not None
    except pytest.FixtureLookupError:
        return False


@pytest.fixture(scope="session", autouse=True)
def real_layer_tree_view(request):
    """A real QgsLayerTreeView on the project's layer tree, given to pytest-qgis's stub iface.

    The stub answers unknown calls with a MagicMock; QGIS 3.40+'s Processing passes
    ``iface.layerTreeView()`` to C++ when it loads results (batch dialog, toolbox), where a
    MagicMock aborts or crashes the process. Every test gets the real object instead.
    """
    if not _qgis_running(request):
        yield None
        return
    import qgis.utils
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    view = QgsLayerTreeView()
    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), view)
    view.setModel(model)
    iface = qgis.utils.iface
    if iface is not None:
        iface.layerTreeView = lambda: view
    yield view
    if iface is not None:
        del iface.layerTreeView
    view.setModel(None)
    view.deleteLater()


@pytest.fixture(scope="session", autouse=True)
def rendering_stops_before_layers_go(request):
    """Cancel every canvas's render job before layers leave the project.

    pytest-qgis's stub iface puts the layer tree's layers on its canvas, which renders them in
    background threads. A test that removes layers (or starts a new project) while a job still
    prepares their symbols' data-defined expressions leaves that thread reading a deleted layer
    (seen as a crash in QgsSymbolLayer::prepareExpressions on QGIS 3.44). The QGIS desktop stops
    rendering first; so does the harness. ``stopRendering`` returns once the job has ended.
    """
    if not _qgis_running(request):
        yield
        return
    from qgis.core import QgsProject
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtWidgets import QApplication

    def stop(*_args):
        for widget in QApplication.allWidgets():
            if isinstance(widget, QgsMapCanvas):
                widget.stopRendering()

    project = QgsProject.instance()
    project.layersWillBeRemoved.connect(stop)     # also emitted when a project is cleared
    yield
    project.layersWillBeRemoved.disconnect(stop)


@pytest.fixture(scope="session", autouse=True)
def qt_garbage_collected_before_qgis_exits(request):
    """Destroy unreachable Qt wrappers (widgets, tasks, layers left in reference cycles by the
    tests) and pending deleteLater()s while QGIS still runs.

    pytest-qgis calls exitQgis() when the session ends, and pytest collects garbage once more
    after that (pytest_unconfigure): a QWidget or QObject destroyed then, with no application
    left, crashed the process after every test had passed (exit 139)."""
    yield
    if not _qgis_running(request):
        return
    import gc

    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    for _ in range(3):
        gc.collect()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QgsApplication.processEvents()
