"""Test set-up: make the checkout importable as ``seg_explainer``, whatever its folder is called."""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent


def _register_package():
    if "seg_explainer" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "seg_explainer", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["seg_explainer"] = module
    spec.loader.exec_module(module)


_register_package()


import pytest  # noqa: E402

SAMPLE_MODEL = ROOT / "resources" / "sample" / "oil_unet.onnx"


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """The sample scene, its truth and regions (default seed), written once per test session."""
    from seg_explainer.resources.sample import scene

    paths = scene.write_sample(tmp_path_factory.mktemp("sample"))
    return {key: str(value) for key, value in paths.items()} | {"model": str(SAMPLE_MODEL)}
