"""Helpers shared by the tests that run QGIS: the headless Processing executor in a
subprocess, the ``segexplainer`` provider, and the project's layers and layer tree."""

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "scripts" / "qgis_process.sh"

#: The sample scene's oil region (``sample_data["regions"]`` formatted in).
ROI_OIL = "{regions}|layername=regions|subset=\"name\" = 'oil'"


def qgis_process(args, home, *, timeout=600, check=True, extra_env=None):
    """Run ``scripts/qgis_process.sh args`` with its state in ``home``; the CompletedProcess."""
    env = dict(os.environ, SEGX_QGIS_HOME=str(home))
    env.update(extra_env or {})
    proc = subprocess.run(["bash", str(WRAPPER), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"qgis_process {args} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def provider(qgis_processing):
    """The ``segexplainer`` provider in the processing registry (import into a test module).

    Added when missing and removed again afterwards, so the registry is left as found for
    the plugin's load/unload tests.
    """
    from qgis.core import QgsApplication

    from seg_explainer.processing_provider.provider import SegExplainerProvider

    registry = QgsApplication.processingRegistry()
    added = None
    if registry.providerById("segexplainer") is None:
        added = SegExplainerProvider()
        registry.addProvider(added)
    yield registry.providerById("segexplainer")
    if added is not None:
        registry.removeProvider(added)


@pytest.fixture()
def project_restored():
    """QgsProject.instance() for a test that adds layers and groups; both removed afterwards.

    Yields the project. Layers that were there before the test stay, with their tree nodes.
    """
    from qgis.core import QgsProject

    project = QgsProject.instance()
    before_layers = set(project.mapLayers())
    before_nodes = list(project.layerTreeRoot().children())  # kept alive: compared by identity
    yield project
    added = [layer_id for layer_id in project.mapLayers() if layer_id not in before_layers]
    project.removeMapLayers(added)
    root = project.layerTreeRoot()
    for node in list(root.children()):
        if not any(node is old for old in before_nodes):
            root.removeChildNode(node)


def wait_until(predicate, what, limit=600.0):
    """Process Qt events until ``predicate()`` is true.

    ``limit`` (seconds) only keeps a hung run from blocking the suite forever; it is far
    above any run's duration and is not a performance check.
    """
    from qgis.core import QgsApplication

    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {limit:g} s")
        QgsApplication.processEvents()
        time.sleep(0.005)


def hook_model_calls(patch, before):
    """Call ``before(images)`` at the start of every model call the engine makes
    (``SegmentationModel.predict`` and ``predict_pixels``), through ``patch`` (a pytest
    monkeypatch or its context)."""
    from seg_explainer.core.model import SegmentationModel

    for name in ("predict", "predict_pixels"):
        real = getattr(SegmentationModel, name)

        def hooked(self, images, *args, _real=real, **kwargs):
            before(images)
            return _real(self, images, *args, **kwargs)

        patch.setattr(SegmentationModel, name, hooked)
