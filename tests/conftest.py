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
