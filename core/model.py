"""An ONNX segmentation model behind one call: raw raster values in, class probabilities out.

:class:`SegmentationModel` hides everything a user of the engine should not have to know:
the input scaling and standardisation (from the model's metadata, see
:mod:`seg_explainer.core.metadata`), channels-first or channels-last inputs, fixed or
dynamic batch and spatial sizes, and whether the output holds probabilities, softmax logits
or sigmoid logits. ``onnxruntime`` is imported only when a model is loaded, and only after
:func:`~seg_explainer.core.onnx_check.check_model_file` has checked that the file reads no
data from outside its own folder.
"""

import hashlib
import os

import numpy as np

from .errors import ModelError
from .metadata import parse_metadata
from .onnx_check import check_model_file, custom_operator_message

# onnxruntime input element types -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}
# Pixels per batch when predict() chooses the batch size (16 tiles of 512 x 512).
_AUTO_BATCH_PIXELS = 16 * 512 * 512
# Edge of the test input for models with a dynamic spatial size and no stated tile size.
_PROBE_SIZE = 64


def _dim(d):
    """A static dimension as int, a dynamic one (symbolic name or None) as None."""
    return int(d) if isinstance(d, (int, np.integer)) and d > 0 else None


def infer_layout(shape, n_channels=None):
    """Guess where a 4-D image input keeps its channel axis.

    Parameters
    ----------
    shape : sequence of 4 (int or None)
        The model input's shape; None (or a symbolic name) for a dynamic dimension.
    n_channels : int, optional
        The channel count, if known from elsewhere (e.g. per-channel standardisation).

    Returns
    -------
    {"NCHW", "NHWC"}
        The layout whose channel axis looks like a channel axis (a static dimension of size
        <= 4 or equal to ``n_channels``) while the other candidate does not; "NCHW" when
        both or neither do.
    """
    d1, d3 = _dim(shape[1]), _dim(shape[3])

    def looks_like_channels(d):
        return d is not None and (d <= 4 or (n_channels is not None and d == n_channels))

    if looks_like_channels(d3) and not looks_like_channels(d1):
        return "NHWC"
    return "NCHW"


def file_sha256(path):
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _softmax(x, axis=-1):
    z = x - np.max(x, axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= np.sum(z, axis=axis, keepdims=True)
    return z


def _sigmoid(x):
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def _looks_like_probabilities(out):
    """True if ``out`` [..., K] holds probabilities (K = 1: in [0, 1]; else also sums to 1)."""
    if not np.all(np.isfinite(out)):
        return False
    tol = 1e-4
    if out.min() < -tol or out.max() > 1 + tol:
        return False
    if out.shape[-1] == 1:
        return True
    return bool(np.all(np.abs(out.sum(axis=-1) - 1.0) < 1e-3))


class SegmentationModel:
    """A loaded ONNX semantic segmentation model. Create it with :meth:`load`.

    Attributes
    ----------
    path : str
        Absolute path of the model file.
    sha256 : str
        Hex SHA-256 of the model file (identifies the model in outputs and caches).
    metadata : ModelMetadata
        The validated metadata.
    class_names : list of str
        One name per output class; "class 0", "class 1", ... when the metadata has none.
    n_classes : int
        K, the class axis length of :meth:`predict`'s output.
    n_channels : int or None
        C, the number of bands the model takes (None if the model accepts any count).
    tile_size : int or None
        Tile edge in pixels: a square fixed input size, else the metadata's ``tiles_size``.
    fixed_size : (int, int) or None
        (H, W) when the model only takes one spatial size, None when it is dynamic.
    input_layout : {"NCHW", "NHWC"}
    output_activation : {"none", "softmax", "sigmoid"}
        "none" means the output already holds probabilities.
    """

    def __init__(self, session, path, sha256, metadata, *, input_layout, layout_source,
                 output_activation, activation_source, n_raw_classes, class_names):
        self._session = session
        self.path = path
        self.sha256 = sha256
        self.metadata = metadata
        self.input_layout = input_layout
        self.layout_source = layout_source
        self.output_activation = output_activation
        self.activation_source = activation_source
        self._n_raw_classes = n_raw_classes
        self.class_names = list(class_names)
        inp = session.get_inputs()[0]
        self._input_name = inp.name
        self._input_shape = tuple(_dim(d) for d in inp.shape)
        self._input_dtype = _ORT_DTYPES.get(inp.type, np.float32)
        self._output_name = session.get_outputs()[0].name
        self._shapes_run = set()  # input shapes (without the batch axis) the model ran on
        self._mean = np.asarray(metadata.standardization_mean or (0.0,), dtype=np.float32)
        self._std = np.asarray(metadata.standardization_std or (1.0,), dtype=np.float32)

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, path, *, n_threads=None, providers=None):
        """Load an ONNX segmentation model.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.onnx`` file.
        n_threads : int, optional
            Threads onnxruntime may use inside one operator (intra-op); its default if None.
        providers : list of str, optional
            onnxruntime execution providers in order of preference. Default: CUDA when
            available, then CPU.

        Returns
        -------
        SegmentationModel

        Raises
        ------
        ModelError
            When the file is missing, is not an ONNX model, keeps weights in a data file
            outside its own folder (or a missing one; see :mod:`.onnx_check`: nothing outside
            the folder is read), uses a custom operator, has more than one input, an input
            that is not a 4-D image, malformed metadata, or metadata that contradicts the
            model. The message says what to do.
        """
        path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(path):
            raise ModelError(f"model file not found: {path}; check the path, or choose the "
                             f".onnx file again")
        try:
            check_model_file(path)  # before onnxruntime reads any external data
        except OSError as exc:
            raise ModelError(f"cannot read the model file {path} ({exc.strerror or exc}); "
                             "check that you may read it, or copy it to a local folder") \
                from None
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed, so no model can be run; install "
                             "the Python package 'onnxruntime' into QGIS's Python") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if n_threads is not None:
            if int(n_threads) < 1:
                raise ValueError(f"n_threads must be >= 1, got {n_threads}")
            options.intra_op_num_threads = int(n_threads)
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available] or ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(path, sess_options=options,
                                           providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            custom = custom_operator_message(path, str(exc))
            if custom is not None:
                raise ModelError(custom) from None
            raise ModelError(
                f"{os.path.basename(path)} is not an ONNX model onnxruntime {ort.__version__} "
                f"can read ({str(exc).strip()[:300]}); export the model to ONNX (opset <= 20) "
                f"and choose the .onnx file") from None

        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"the model has {len(inputs)} inputs ({names}); the explainer needs a model with "
                f"one image input of shape [N, C, H, W] or [N, H, W, C]; re-export it with a "
                f"single input")
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ModelError(
                f"the model input {inputs[0].name!r} has rank {len(shape)} (shape {shape}); an "
                f"image segmentation model takes a 4-D input [N, C, H, W] or [N, H, W, C]; "
                f"re-export it with a batch axis and a channel axis")
        if inputs[0].type not in _ORT_DTYPES:
            raise ModelError(f"the model input has type {inputs[0].type}; only numeric image "
                             f"tensors are supported; re-export it with a float32 input")
        outputs = session.get_outputs()
        if not outputs or len(outputs[0].shape) not in (3, 4):
            raise ModelError(
                "the model's first output is not a per-pixel map ([N, K, H, W], [N, H, W, K] or "
                "[N, H, W]); choose a semantic segmentation model")

        meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
        known_c = None
        for values in (meta.standardization_mean, meta.standardization_std):
            if values is not None and len(values) > 1:
                known_c = len(values)
        if meta.input_layout is not None:
            layout, layout_source = meta.input_layout, "metadata"
        else:
            layout, layout_source = infer_layout(shape, known_c), "inferred"
        n_channels = _dim(shape[1] if layout == "NCHW" else shape[3])
        for key, values in (("standardization_mean", meta.standardization_mean),
                            ("standardization_std", meta.standardization_std)):
            if values is not None and len(values) > 1 and n_channels is not None \
                    and len(values) != n_channels:
                raise ModelError(
                    f"metadata key {key!r} has {len(values)} values but the model takes "
                    f"{n_channels} channels; give one value per channel (or a single value)")

        n_raw = cls._static_classes(outputs[0].shape, shape, layout)
        activation, activation_source = meta.output_activation, "metadata"
        if activation is None or n_raw is None:
            model = cls(session, path, None, meta, input_layout=layout,
                        layout_source=layout_source, output_activation="none",
                        activation_source="", n_raw_classes=None, class_names=[])
            probe = model._probe()
            n_raw = probe.shape[-1]
            if activation is None:
                activation_source = "inferred"
                if _looks_like_probabilities(probe):
                    activation = "none"
                else:
                    activation = "sigmoid" if n_raw == 1 else "softmax"
        if activation == "softmax" and n_raw == 1:
            raise ModelError(
                "the model has a single output channel but its metadata asks for a softmax, "
                "which would always give 1; set seg_explainer_output_activation to \"sigmoid\" "
                "(logits) or \"none\" (probabilities)")
        n_classes = 2 if n_raw == 1 else n_raw
        names = meta.class_names
        if names is None:
            names = [f"class {k}" for k in range(n_classes)]
        elif n_raw == 1 and len(names) == 1:
            names = ["background", names[0]]
        elif len(names) != n_classes:
            raise ModelError(
                f"the metadata names {len(names)} classes ({', '.join(names)}) but the model "
                f"outputs {n_classes}; fix the model's class_names metadata")
        return cls(session, path, file_sha256(path), meta, input_layout=layout,
                   layout_source=layout_source, output_activation=activation,
                   activation_source=activation_source, n_raw_classes=n_raw, class_names=names)

    @staticmethod
    def _static_classes(out_shape, in_shape, layout):
        """The raw class count from static shapes, or None when it needs a test run."""
        out = [_dim(d) for d in out_shape]
        if len(out) == 3:
            return 1
        spatial = (_dim(in_shape[2]), _dim(in_shape[3])) if layout == "NCHW" else \
            (_dim(in_shape[1]), _dim(in_shape[2]))
        if None not in spatial:
            if tuple(out[2:]) == spatial and tuple(out[1:3]) != spatial:
                return out[1]
            if tuple(out[1:3]) == spatial and tuple(out[2:]) != spatial:
                return out[3]
        return out[1] if layout == "NCHW" else out[3]

    def _probe(self):
        """Run the model once on a fixed pseudo-random input; raw output as [N, H, W, K]."""
        h, w = self._spatial
        size = self.metadata.tile_size or _PROBE_SIZE
        h, w = h or size, w or size
        c = self.n_channels or 1
        n = self._fixed_batch or 1
        x = np.random.default_rng(0).standard_normal((n, h, w, c)).astype(np.float32)
        return self._run(x)

    # ---------------------------------------------------------------- properties

    @property
    def _spatial(self):
        s = self._input_shape
        return (s[2], s[3]) if self.input_layout == "NCHW" else (s[1], s[2])

    @property
    def _fixed_batch(self):
        return self._input_shape[0]

    @property
    def n_channels(self):
        return self._input_shape[1] if self.input_layout == "NCHW" else self._input_shape[3]

    @property
    def n_classes(self):
        return len(self.class_names)

    @property
    def fixed_size(self):
        h, w = self._spatial
        return (h, w) if h is not None and w is not None else None

    @property
    def tile_size(self):
        fixed = self.fixed_size
        if fixed is not None and fixed[0] == fixed[1]:
            return fixed[0]
        return self.metadata.tile_size

    @property
    def input_shape(self):
        """The model input's shape, None for dynamic dimensions."""
        return self._input_shape

    @property
    def providers(self):
        """The onnxruntime execution providers in use."""
        return list(self._session.get_providers())

    # ---------------------------------------------------------------- running

    def preprocess(self, images):
        """Raw raster values to model-space values (scaling, then standardisation).

        Parameters
        ----------
        images : ndarray, shape (N, H, W, C)
            Raw values; NaN (nodata) is replaced first, per the metadata's nodata fill
            (default: the per-band mean of the image's valid pixels).

        Returns
        -------
        ndarray, shape (N, H, W, C), float32
        """
        x = np.asarray(images, dtype=np.float32)
        nan = np.isnan(x)
        if nan.any():
            fill = self.metadata.nodata_fill
            if fill == "mean":
                valid = np.where(nan, 0.0, x)
                counts = (~nan).sum(axis=(1, 2), keepdims=True)
                means = valid.sum(axis=(1, 2), keepdims=True) / np.maximum(counts, 1)
                x = np.where(nan, means, x).astype(np.float32)
            else:
                x = np.where(nan, 0.0 if fill == "zero" else float(fill), x).astype(np.float32)
        x = self.metadata.input_scaling.apply(x)
        return ((x - self._mean) / self._std).astype(np.float32)

    def _run(self, x):
        """Model-space batch [n, H, W, C] (n = fixed batch if any) -> raw output [n, H, W, K]."""
        n, h, w, _ = x.shape
        feed = np.transpose(x, (0, 3, 1, 2)) if self.input_layout == "NCHW" else x
        feed = np.ascontiguousarray(feed, dtype=self._input_dtype)
        try:
            out = self._session.run([self._output_name], {self._input_name: feed})[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            if self._runs_on(feed.shape):  # the size suits it: the values or the machine
                fix = ("the model runs on inputs of this size, so the values given to it (the "
                       "raster's or the baseline's) or the machine (e.g. memory) made it fail; "
                       "try another baseline or a smaller batch size, and tell the model's "
                       "author if it persists")
            else:
                fix = "check that the raster's bands and size suit the model"
            raise ModelError(f"the model failed on an input of shape {list(feed.shape)} "
                             f"({str(exc).strip()[:300]}); {fix}") from None
        self._shapes_run.add(feed.shape[1:])
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out[..., None]
        if out.ndim != 4 or out.shape[0] != n:
            raise ModelError(f"the model returned shape {list(out.shape)} for a batch of {n}; "
                             f"expected a per-pixel map [N, K, H, W] or [N, H, W, K]")
        first = out.shape[2:] == (h, w)  # [N, K, H, W]
        last = out.shape[1:3] == (h, w)  # [N, H, W, K]
        if first and (not last or self.input_layout == "NCHW"):
            out = np.transpose(out, (0, 2, 3, 1))
        elif not last:
            raise ModelError(
                f"the model returned a map of shape {list(out.shape)} for an input of "
                f"{h} x {w} pixels; only models whose output has the input's size are "
                f"supported; re-export the model with the upsampling included")
        return out

    def _runs_on(self, shape):
        """True if the model runs on an input of ``shape`` (model layout, batch axis first).

        Used to tell why a call failed: True when it has run on that size before, or runs now
        on a pseudo-random input of that size (one image, or the fixed batch).
        """
        if tuple(shape[1:]) in self._shapes_run:
            return True
        n = self._fixed_batch or 1
        x = np.random.default_rng(0).standard_normal((n, *shape[1:]))
        try:
            self._session.run([self._output_name],
                              {self._input_name: x.astype(self._input_dtype)})
        except Exception:  # noqa: BLE001 (any failure means: not this size)
            return False
        self._shapes_run.add(tuple(shape[1:]))
        return True

    def _activate(self, out):
        act = self.output_activation
        if act == "softmax":
            out = _softmax(out, axis=-1)
        elif act == "sigmoid":
            out = _sigmoid(out)
        if out.shape[-1] == 1:
            p = out[..., 0]
            out = np.stack([1.0 - p, p], axis=-1)
        return out.astype(np.float32)

    def predict(self, images, batch_size=None):
        """Class probabilities of raw images.

        Parameters
        ----------
        images : ndarray, shape (N, H, W, C)
            Raw raster values, bands last (C must equal :attr:`n_channels`). NaN = nodata,
            replaced per the metadata (default: per-band mean of the image's valid pixels).
        batch_size : int, optional
            Images per model call. Default: as many 512 x 512 equivalents as fit 16. A model
            whose batch axis is fixed (e.g. to 1) is called with that many images at a time.

        Returns
        -------
        ndarray, shape (N, H, W, K), float32
            Probabilities, K = :attr:`n_classes`. A single-channel model gives K = 2
            (background = 1 - p, foreground = p).

        Raises
        ------
        ModelError
            Band count differs from the model's; image larger than a fixed-size model's input
            (smaller images are padded with their per-band mean and the output cropped).
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
        n, h, w, c = images.shape
        if self.n_channels is not None and c != self.n_channels:
            raise ModelError(
                f"the image has {c} band(s) but the model takes {self.n_channels}; choose a "
                f"raster (or bands) with {self.n_channels} band(s)")
        for name, values in (("standardization_mean", self._mean),
                             ("standardization_std", self._std)):
            if len(values) not in (1, c):
                raise ModelError(f"the model's {name} metadata has {len(values)} values, the "
                                 f"image {c} band(s); choose a raster with {len(values)} bands")
        x = self.preprocess(images)
        fh, fw = self._spatial
        ph = (fh - h) if fh is not None else 0
        pw = (fw - w) if fw is not None else 0
        if ph < 0 or pw < 0:
            raise ModelError(
                f"the model takes {fh or 'any'} x {fw or 'any'} pixel inputs only, the image is "
                f"{h} x {w}; use a region of interest (or tile) at most that size")
        if ph or pw:
            # pad with the model-space per-band mean (the mean of the raw image, scaled)
            fill = x.mean(axis=(1, 2), keepdims=True)
            padded = np.repeat(np.repeat(fill, h + ph, axis=1), w + pw, axis=2)
            padded[:, :h, :w] = x
            x = padded
        fixed_batch = self._fixed_batch
        if fixed_batch is not None:
            step = fixed_batch
        elif batch_size is not None:
            step = max(1, int(batch_size))
        else:
            step = max(1, _AUTO_BATCH_PIXELS // max(1, x.shape[1] * x.shape[2]))
        out = np.empty((n, h, w, self.n_classes), dtype=np.float32)
        for start in range(0, n, step):
            chunk = x[start:start + step]
            m = len(chunk)
            if fixed_batch is not None and m < fixed_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - m, 0)])
            raw = self._run(chunk)[:m, :h, :w]
            if raw.shape[-1] != self._n_raw_classes:
                raise ModelError(f"the model returned {raw.shape[-1]} channels, earlier "
                                 f"{self._n_raw_classes}; its output is not a class map")
            out[start:start + m] = self._activate(raw)
        return out

    def describe(self):
        """A summary for the UI and for result metadata.

        Returns
        -------
        dict
            ``name``, ``path``, ``sha256``, ``classes``, ``n_classes``, ``n_channels``,
            ``tile_size``, ``fixed_size``, ``input_shape`` (None = dynamic), ``input_layout``
            and ``input_layout_source`` ("metadata" or "inferred"), ``scaling`` (dict),
            ``standardization_mean``/``_std``, ``output_activation`` and
            ``output_activation_source``, ``convention``, ``resolution_cm``, ``seg_thresh``,
            ``nodata_fill``, ``providers``.
        """
        meta = self.metadata
        return {
            "name": os.path.basename(self.path),
            "path": self.path,
            "sha256": self.sha256,
            "classes": list(self.class_names),
            "n_classes": self.n_classes,
            "n_channels": self.n_channels,
            "tile_size": self.tile_size,
            "fixed_size": self.fixed_size,
            "input_shape": list(self._input_shape),
            "input_layout": self.input_layout,
            "input_layout_source": self.layout_source,
            "scaling": meta.input_scaling.as_dict(),
            "standardization_mean": [float(v) for v in self._mean],
            "standardization_std": [float(v) for v in self._std],
            "output_activation": self.output_activation,
            "output_activation_source": self.activation_source,
            "convention": meta.convention,
            "resolution_cm": meta.resolution_cm,
            "seg_thresh": meta.seg_thresh,
            "nodata_fill": meta.nodata_fill,
            "providers": self.providers,
        }

    def __repr__(self):
        return (f"SegmentationModel({os.path.basename(self.path)!r}, classes={self.class_names}, "
                f"channels={self.n_channels}, layout={self.input_layout}, "
                f"activation={self.output_activation})")
