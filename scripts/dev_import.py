"""Make a checkout importable as the ``seg_explainer`` package, whatever its folder is called.

QGIS loads the plugin from a folder named ``seg_explainer``; a git checkout may be called
anything (``main``, ``ci-try``), so the tests and benchmarks register it under the package
name before importing it.
"""

import importlib.util
import sys
from pathlib import Path


def register_package(root):
    """Import ``root/__init__.py`` as ``seg_explainer`` (once), with ``root`` as its path."""
    if "seg_explainer" in sys.modules:
        return
    root = Path(root)
    spec = importlib.util.spec_from_file_location(
        "seg_explainer", root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["seg_explainer"] = module
    spec.loader.exec_module(module)
