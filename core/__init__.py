"""The explanation engine: plain functions over ndarrays, no QGIS, no Qt.

The public surface, re-exported here::

    SegmentationModel.load(path)             an ONNX segmentation model
    check_model_file(path)                   refuse external data outside the model's folder
    hexagon_grid, square_grid                cells that tile a window
    kernel_shap, rise, multiscale_occlusion  the estimators, over batched value functions
    explain_region                           one entry point for all three methods
    deletion_insertion                       causal faithfulness metrics
    segment_raster                           whole-raster tiled segmentation
"""

from .baselines import baseline_image, composite, infill_rect
from .cells import Cells, hexagon_grid, square_grid
from .errors import ExplanationCancelled, ModelError
from .explain import Explanation, explain_region
from .kernel_shap import ShapleyResult, kernel_shap
from .metadata import ModelMetadata, parse_metadata
from .metrics import CausalMetrics, deletion_insertion
from .model import SegmentationModel
from .occlusion import OcclusionResult, multiscale_occlusion
from .onnx_check import ModelFileError, check_model_file
from .rise import RiseResult, rise
from .tiling import segment_raster

__all__ = [
    "Cells", "CausalMetrics", "Explanation", "ExplanationCancelled", "ModelError",
    "ModelFileError", "ModelMetadata", "OcclusionResult", "RiseResult", "SegmentationModel",
    "ShapleyResult", "baseline_image", "check_model_file", "composite", "deletion_insertion",
    "explain_region", "hexagon_grid", "infill_rect", "kernel_shap", "multiscale_occlusion",
    "parse_metadata", "rise", "segment_raster", "square_grid",
]
