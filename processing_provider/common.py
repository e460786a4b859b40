"""What the algorithms share: turning QGIS inputs into plain data for core, and core errors
into messages a user understands."""

import hashlib
import os
from pathlib import Path

from qgis.core import QgsProcessingException

PLUGIN_DIR = Path(__file__).resolve().parent.parent


def plugin_version():
    """The version in metadata.txt."""
    for line in (PLUGIN_DIR / "metadata.txt").read_text().splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    return "unknown"


def file_sha256(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def raster_source_path(layer, param_name="INPUT"):
    """The file GDAL can open for ``layer``, or a QgsProcessingException saying what to do."""
    if layer is None:
        raise QgsProcessingException(f"{param_name}: no raster layer was given. Choose a raster "
                                     "layer or a raster file.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{param_name}: the layer '{layer.name()}' comes from the '{layer.providerType()}' "
            "provider, which cannot be read window by window. Save it as a GeoTIFF "
            "(Export > Save As...) and use that file.")
    source = layer.source().split("|")[0]
    if not layer.crs().isValid():
        raise QgsProcessingException(
            f"{param_name}: the raster '{layer.name()}' has no coordinate reference system. "
            "Assign one (Layer Properties > Source) so results can be georeferenced.")
    return source


def load_model(path, n_threads=None):
    """Load an ONNX model through core, turning its errors into a QgsProcessingException."""
    from ..core.errors import ModelError
    from ..core.model import SegmentationModel

    if not path or not os.path.isfile(path):
        raise QgsProcessingException(
            f"MODEL: the model file '{path}' does not exist. Choose an .onnx segmentation "
            "model file.")
    try:
        return SegmentationModel.load(path, n_threads=n_threads)
    except ImportError as exc:
        raise QgsProcessingException(
            f"The Python package onnxruntime is missing ({exc}). Install it from the "
            "Segmentation Explainer dock, or with pip into QGIS's Python.") from exc
    except ModelError as exc:
        raise QgsProcessingException(f"MODEL: {exc}") from exc


def feedback_callbacks(feedback):
    """``(progress, cancel)`` callables for core from a QgsProcessingFeedback."""
    if feedback is None:
        return None, None
    return (lambda fraction: feedback.setProgress(100.0 * fraction)), feedback.isCanceled
