"""Moved to :mod:`seg_explainer.core.onnx_check` (the engine checks every model it loads);
re-exported here for code that still imports it from the provider."""

from ..core.onnx_check import (ModelFileError, check_model_file,  # noqa: F401
                               external_data_locations)
