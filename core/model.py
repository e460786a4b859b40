"""An ONNX segmentation model behind one call: raw raster values in, class probabilities out.

:class:`SegmentationModel` hides everything a user of the engine should not have to know:
the input scaling and standardisation (from the model's metadata, see
:mod:`seg_explainer.core.metadata`), channels-first or channels-last inputs, fixed or
dynamic batch and spatial sizes, and whether the output holds probabilities, softmax logits
or sigmoid logits. ``onnxruntime`` is imported only when a model is loaded, and is given the
bytes :func:`~seg_explainer.core.onnx_check.read_model_file` parsed and checked (no data from
outside the model's folder), never the file itself.

What the engine does with hostile or unusual models
---------------------------------------------------
* **Integer inputs.** The model-space values (after the metadata's scaling and
  standardisation) are rounded to whole numbers and clipped to the input type's range, with a
  :class:`ModelInputWarning` that counts the values changed, when the model's metadata states
  how raw values are scaled (a ``seg_explainer_*`` or Deepness key): the author declared the
  mapping, so values outside the range are outliers of it. When the metadata states nothing
  and values fall outside the type's range (e.g. dB values -25..5 given to a ``uint8``
  model), the call is refused with a :class:`~seg_explainer.core.errors.ModelError` naming the
  range and the fix: nothing says how those values relate to the model's. Values are never
  wrapped around. A float16 input gets values beyond +-65504 clipped, with the same warning.
* **Memory.** Sessions allocate from one capped onnxruntime arena (80 % of the physical
  memory, grown only by what is asked, returned after each call), initializers outside it;
  before each call the input and output of the batch are estimated and a call that would not
  fit in the memory available is split into smaller batches, or refused with a
  :class:`ModelMemoryError` when one image does not fit. A model that asks onnxruntime for
  more than the cap (``ConstantOfShape`` / ``Expand`` to terabytes) ends in a
  :class:`ModelMemoryError`, never in an out-of-memory kill.
* **Outputs.** Every output of :meth:`SegmentationModel.predict` is checked to be finite:
  NaN or infinity stops the run with a ``ModelError`` (:func:`check_finite`), with the
  message Processing gives, so plain-Python callers of the model get it too.
  A label map (``ArgMax`` output, or an integer output) and duplicate class names are refused
  at load.
"""

import math
import os
import re
import sys
import time
import warnings

import numpy as np

from .batching import batch_size_for
from .errors import ExplanationCancelled, ModelError
from .interrupt import model_call, requested
from .metadata import KEY_SCALING, parse_metadata
from .onnx_check import custom_operator_message, read_model_file

# onnxruntime input element types -> numpy dtypes.
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}
_FLOAT_OUTPUTS = {"tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"}
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


def usable_cores():
    """The CPU cores this process may run on (its affinity mask, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def usable_threads(n_threads):
    """``n_threads`` lowered to :func:`usable_cores` with an
    :class:`~.errors.InputWarning`: more spinning threads than cores stall the machine."""
    from .errors import InputWarning

    cores = usable_cores()
    if n_threads > cores:
        warnings.warn(f"THREADS: {n_threads} threads were asked for, but this process may use "
                      f"{cores} core(s); onnxruntime is given {cores}. More threads than "
                      "cores only slow the machine down.", InputWarning, stacklevel=3)
        return cores
    return n_threads


def file_sha256(path):
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelInputWarning(UserWarning):
    """Values given to a model were changed to fit its input type (rounded, clipped)."""


class ModelMemoryError(ModelError):
    """A model call needs more memory than the machine has (or the model's cap allows)."""


#: Share of the physical memory onnxruntime's CPU arena may hold (its cap).
ARENA_SHARE = 0.8
#: Bytes a call may need per byte of its input and output (onnxruntime's copies of both,
#: ours in float32, and the model's intermediate maps, which are not known before the call).
CALL_OVERHEAD = 4.0


def _meminfo(key):
    """``key``'s value in /proc/meminfo, bytes, or None (one read and one search)."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            text = fh.read()
        found = re.search(rb"^" + re.escape(key.encode()) + rb":\s*(\d+)", text, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else None
    except (OSError, ValueError):
        return None


def _windows_memory():
    import ctypes

    class Status(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong),
                    ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong),
                    ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("sullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = Status()
    status.dwLength = ctypes.sizeof(Status)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None, None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def total_memory():
    """Bytes of physical memory, or None when unknown."""
    if sys.platform == "win32":
        try:
            return _windows_memory()[0]
        except (OSError, AttributeError):
            return None
    total = _meminfo("MemTotal")
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return total


#: Seconds a reading of the available memory is reused: it is asked before every model call,
#: and reading it (a system call that sums the kernel's counters) cost more than the rest of
#: the check; a batch's worth of memory does not come and go within this time.
AVAILABLE_MEMORY_TTL = 0.5
_AVAILABLE = [-math.inf, None]  # [time.monotonic() of the reading, bytes]


def available_memory():
    """Bytes of memory available to a new allocation now (Linux MemAvailable, Windows'
    available physical memory, else the physical memory), or None when unknown; read at most
    every :data:`AVAILABLE_MEMORY_TTL` seconds."""
    now = time.monotonic()
    if now - _AVAILABLE[0] < AVAILABLE_MEMORY_TTL:
        return _AVAILABLE[1]
    if sys.platform == "win32":
        try:
            found = _windows_memory()[1]
        except (OSError, AttributeError):
            found = None
    else:
        found = _meminfo("MemAvailable") or total_memory()
    _AVAILABLE[:] = [now, found]
    return found


_ARENA = {}  # "cap": bytes, once onnxruntime's shared CPU arena is registered


def _capped_arena(ort):
    """Register (once per process) onnxruntime's shared CPU arena, capped at
    :data:`ARENA_SHARE` of the physical memory and grown only by what is asked; returns the
    cap in bytes, or None when onnxruntime does not offer it (the sessions then use their own
    arenas, uncapped)."""
    if "cap" in _ARENA:
        return _ARENA["cap"]
    total = total_memory()
    cap = int(total * ARENA_SHARE) if total else 0
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                 ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(cap, 1, -1, -1))  # 1: as asked
    except Exception:  # noqa: BLE001 (an older onnxruntime, or one registered by another user)
        cap = None
    _ARENA["cap"] = cap or None
    return _ARENA["cap"]


def _gib(n):
    return f"{n / 2 ** 30:.3g} GiB"


_ALLOCATION = ("Available memory of", "Failed to allocate memory", "bad_alloc",
               "std::bad_alloc", "Out of memory", "out of memory")


def _memory_failure(text):
    """The bytes a failed onnxruntime allocation asked for (0 if unknown), or None when the
    failure ``text`` is not an allocation failure."""
    import re

    if not any(word in text for word in _ALLOCATION):
        return None
    found = re.search(r"requested bytes of (\d+)|buffer of size (\d+)", text)
    return int(next(g for g in found.groups() if g)) if found else 0


def check_finite(out):
    """Raise a ModelError if the model output ``out`` holds NaN or infinity.

    Called on every output of :meth:`SegmentationModel.predict`, so the engine, Processing
    and the dock fail alike, with this message.
    """
    out = np.asarray(out)
    # min and max propagate NaN and are infinite where any value is: no temporary array
    if out.size and not (np.isfinite(out.min()) and np.isfinite(out.max())):
        raise ModelError(
            "the model returned NaN or infinite values; check that the raster's values "
            "suit the model (its input scaling metadata, or BANDS)")


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


def _gather_pixels(raw, pixels):
    """``raw.reshape(n, H * W, K)[:, pixels]`` (n, P, K) in the memory order of ``raw``'s
    class axis.

    The activation then runs over the same memory layout as on the whole output (class axis
    outermost for an [N, K, H, W] model, innermost for [N, H, W, K]), so numpy reduces over
    the classes in the same order and the probabilities are equal bit for bit.
    """
    class_major = raw.strides[-1] > raw.strides[2]      # [N, K, H, W] output
    src = raw.transpose(0, 3, 1, 2) if class_major else raw
    axis = 2 if class_major else 1
    (h, w), (step_h, step_w) = src.shape[axis:axis + 2], src.strides[axis:axis + 2]
    if step_h == w * step_w:
        # rows follow each other in memory (no padding cropped off): one flat take, three
        # times faster than indexing rows and columns
        flat = src.reshape(src.shape[:axis] + (h * w,) + src.shape[axis + 2:])
        out = np.take(flat, pixels, axis=axis)
    else:
        rows, cols = np.divmod(pixels, w)
        out = np.ascontiguousarray(src[(slice(None),) * axis + (rows, cols)])
    return out.transpose(0, 2, 1) if class_major else out


class ModelInput:
    """Images in a model's space, ready for its call: what
    :meth:`SegmentationModel.prepare_images` returns, and its ``predict`` and
    ``predict_pixels`` take in place of raw images.

    Attributes
    ----------
    model : SegmentationModel
        The model they were prepared for.
    x : ndarray, shape (N, H', W', C), float32
        Preprocessed, padded to a fixed-size model's input (H' >= H, W' >= W).
    shape : tuple
        The raw images' shape (N, H, W, C).
    """

    __slots__ = ("model", "x", "shape")

    def __init__(self, model, x, shape):
        self.model, self.x, self.shape = model, x, tuple(shape)

    def __len__(self):
        return self.shape[0]


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
        self._output_shape = tuple(_dim(d) for d in session.get_outputs()[0].shape)
        #: The output's class axis (1 or 3) once known: from the static shapes, else from the
        #: first call whose output's size tells it (the load's test run); a square output whose
        #: side equals the class count cannot tell it by itself.
        self._class_axis = self._static_class_axis(self._output_shape, self._input_shape,
                                                   input_layout)
        self._memory_cap = _ARENA.get("cap")
        #: Values changed to fit an integer (or float16) input so far: {"clipped": n,
        #: "rounded": n} (see the module notes); a ModelInputWarning is given once per kind.
        self.input_adjustments = {"clipped": 0, "rounded": 0}
        #: The first message of each kind of adjustment (for a run's summary of them).
        self.input_notes = {}
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
        # Without onnxruntime nothing can run: say that first, whatever the file holds.
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed, so no model can be run; install "
                             "the Python package 'onnxruntime' into QGIS's Python") from None
        try:
            checked = read_model_file(path)  # parsed and checked: what onnxruntime is given
        except OSError as exc:
            raise ModelError(f"cannot read the model file {path} ({exc.strerror or exc}); "
                             "check that you may read it, or copy it to a local folder") \
                from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: failures reach the user as ModelErrors
        if _capped_arena(ort) is not None:
            options.add_session_config_entry("session.use_env_allocators", "1")
        options.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
        # onnxruntime's threads spin after every run by default: the engine's own work between
        # runs (RISE's masks, compositing, scoring) then shares the cores with them. RISE on
        # a 192 px window spent 1.9-2.4 s outside the model with spinning, 0.8 s without,
        # the model's own time unchanged (docs/benchmarks.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if n_threads is not None:
            if int(n_threads) < 1:
                raise ValueError(f"n_threads must be >= 1, got {n_threads}")
            options.intra_op_num_threads = usable_threads(int(n_threads))
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in available] or ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(checked.data, sess_options=options,
                                           providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            custom = custom_operator_message(path, str(exc), checked.scan)
            if custom is not None:
                raise ModelError(custom) from None
            asked = _memory_failure(str(exc))
            if asked is not None:
                raise ModelMemoryError(
                    f"{os.path.basename(path)} asks for more memory than this machine can give "
                    f"while it is loaded ({_gib(asked) if asked else 'a large block'}); a "
                    "segmentation model needing that much is broken or hostile: choose "
                    "another model") from None
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
        if outputs and (outputs[0].name in checked.scan.label_maps
                        or outputs[0].type not in _FLOAT_OUTPUTS):
            made = ("an ArgMax" if outputs[0].name in checked.scan.label_maps
                    else f"its type {outputs[0].type}")
            raise ModelError(
                f"the model outputs a label map (one class index per pixel; {made}), which "
                "holds no class probabilities to explain; re-export the model without its "
                "final ArgMax, so that it outputs one score per class ([N, K, H, W] logits "
                "or probabilities)")
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
        learned_axis = None
        activation, activation_source = meta.output_activation, "metadata"
        if activation is None or n_raw is None:
            model = cls(session, path, None, meta, input_layout=layout,
                        layout_source=layout_source, output_activation="none",
                        activation_source="", n_raw_classes=None, class_names=[])
            probe = model._probe()
            n_raw = probe.shape[-1]
            learned_axis = model._class_axis
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
        folded = [str(name).strip().casefold() for name in names]
        repeated = sorted({name for name, key in zip(names, folded) if folded.count(key) > 1})
        if repeated:
            listed = ", ".join(f"'{name[:100]}'" for name in repeated[:5])
            raise ModelError(
                f"the model's class_names metadata names the class {listed} more than once "
                f"({', '.join(str(n)[:100] for n in names[:20])}); a class is chosen by its "
                "name, so give every class its own name in the model's class_names metadata")
        model = cls(session, path, checked.sha256, meta, input_layout=layout,
                    layout_source=layout_source, output_activation=activation,
                    activation_source=activation_source, n_raw_classes=n_raw,
                    class_names=names)
        model._class_axis = model._class_axis or learned_axis
        return model

    @staticmethod
    def _static_class_axis(out_shape, in_shape, layout):
        """1 or 3 when the static shapes say where the output's class axis is, else None."""
        if len(out_shape) != 4:
            return None
        known = [d is not None for d in out_shape[1:]]
        if known == [True, False, False]:
            return 1
        if known == [False, False, True]:
            return 3
        spatial = tuple(in_shape[2:4]) if layout == "NCHW" else tuple(in_shape[1:3])
        if None in spatial or not all(known):
            return None
        first, last = tuple(out_shape[2:]) == spatial, tuple(out_shape[1:3]) == spatial
        return (1 if first else 3) if first != last else None

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
        self._check_memory(n, h, w, c)
        return self._run(self._random_input((n, h, w, c)))

    def _random_input(self, shape):
        """A fixed pseudo-random input of ``shape`` that suits the input type."""
        rng = np.random.default_rng(0)
        dtype = np.dtype(self._input_dtype)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(max(int(info.min), 0), min(int(info.max), 255), shape,
                                endpoint=True).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    def _to_input_type(self, x):
        """Model-space float32 values as the model's input type: see the module notes."""
        dtype = np.dtype(self._input_dtype)
        if dtype.kind == "f" and dtype.itemsize >= 4:
            return x
        if dtype.kind == "f":
            low_bound, high_bound = -float(np.finfo(dtype).max), float(np.finfo(dtype).max)
        else:
            info = np.iinfo(dtype)
            low_bound = float(info.min)
            high_bound = float(info.max) if dtype.itemsize < 8 else \
                float(np.nextafter(2.0 ** 63, 0))
        x = x.astype(np.float64)
        outside = int(np.count_nonzero((x < low_bound) | (x > high_bound)))
        what = (f"{dtype.name} input (values {low_bound:.6g} to {high_bound:.6g})")
        if outside:
            low, high = float(x.min()), float(x.max())
            stated = KEY_SCALING in (self.metadata.raw or {}) or \
                self.metadata.convention == "deepness"
            if not stated and dtype.kind != "f":
                raise ModelError(
                    f"the model takes {what} but the values given to it go from {low:.4g} to "
                    f"{high:.4g} ({outside} of {x.size} outside that range); its metadata does "
                    "not say how the raster's values map to that range, so they are not "
                    "clipped: choose a raster of the type the model was trained on (e.g. an "
                    "8-bit export), or add seg_explainer_input_scaling to the model's metadata")
            self._adjusted("clipped", outside, (
                f"{outside} of {x.size} values given to the model ({low:.4g} to {high:.4g}) "
                f"were outside its {what} and were clipped to that range; check that the "
                "raster suits the model's input scaling metadata"))
            x = np.clip(x, low_bound, high_bound)
        if dtype.kind != "f":
            rounded = np.rint(x)
            changed = int(np.count_nonzero(rounded != x))
            if changed:
                self._adjusted("rounded", changed, (
                    f"{changed} of {x.size} values given to the model were not whole numbers "
                    f"and were rounded to the nearest, as its {what} requires"))
            x = rounded
        return x

    def _adjusted(self, kind, count, message):
        first = not self.input_adjustments[kind]
        self.input_adjustments[kind] += count
        self.input_notes.setdefault(kind, message)
        if first:
            warnings.warn(message, ModelInputWarning, stacklevel=4)

    def _per_image_bytes(self, h, w, c):
        """Estimated bytes of one image's input and output in a call (x CALL_OVERHEAD)."""
        k = self._n_raw_classes
        if k is None:  # before the test run: the output's static size, or the input's
            dims = [d for d in self._output_shape[1:] if d is not None]
            spatial = 1 if len(dims) == len(self._output_shape) - 1 else h * w
            k = max(int(np.prod(dims, dtype=np.float64)) * spatial // max(1, h * w), c, 1)
        item = np.dtype(self._input_dtype).itemsize
        return CALL_OVERHEAD * float(h) * float(w) * (c * max(item, 4) + 4.0 * k)

    def _check_memory(self, n, h, w, c):
        """The largest batch (<= n) that fits the memory available; ModelMemoryError when even
        the smallest call the model accepts (one image, or its fixed batch) does not."""
        per_image = self._per_image_bytes(h, w, c)
        available = available_memory()
        if self._memory_cap:
            available = min(available or self._memory_cap, self._memory_cap)
        if not available:
            return n
        least = self._fixed_batch or 1
        if per_image * least > available:
            raise ModelMemoryError(
                f"one call of the model on {least} image(s) of {h} x {w} pixels would need "
                f"about {_gib(per_image * least)} (input and output), more than the "
                f"{_gib(available)} of memory available; use a smaller region of interest, "
                "tile size or window, or close other programs")
        if self._fixed_batch:
            return n
        return max(1, min(n, int(available // per_image)))

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
    def context(self):
        """Pixels of context the model needs around a region: its metadata's
        ``seg_explainer_context``, else :data:`~.region.DEFAULT_CONTEXT`."""
        from .region import DEFAULT_CONTEXT

        context = self.metadata.context
        return DEFAULT_CONTEXT if context is None else int(context)

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
        # the minimum is NaN when any value is (one pass, no temporary array)
        if x.size and np.isnan(x.min()):
            nan = np.isnan(x)
            fill = self.metadata.nodata_fill
            if fill == "mean":
                valid = np.where(nan, 0.0, x)
                counts = (~nan).sum(axis=(1, 2), keepdims=True)
                means = valid.sum(axis=(1, 2), keepdims=True) / np.maximum(counts, 1)
                x = np.where(nan, means, x).astype(np.float32)
            else:
                x = np.where(nan, 0.0 if fill == "zero" else float(fill), x).astype(np.float32)
        x = self.metadata.input_scaling.apply(x)      # a new float32 array
        x -= self._mean                                # float32 - float32, in place
        x /= self._std
        return x

    def _run(self, x):
        """Model-space batch [n, H, W, C] (n = fixed batch if any) -> raw output [n, H, W, K]."""
        n, h, w, _ = x.shape
        x = self._to_input_type(x)
        feed = np.transpose(x, (0, 3, 1, 2)) if self.input_layout == "NCHW" else x
        feed = np.ascontiguousarray(feed, dtype=self._input_dtype)
        del x
        try:
            with model_call(self._run_options()) as options:
                out = self._session.run([self._output_name], {self._input_name: feed},
                                        options)[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            if requested():       # a signal terminated the call (core.interrupt)
                raise ExplanationCancelled(f"stopped by {requested()}") from None
            asked = _memory_failure(str(exc))
            if asked is not None:
                cap = (f"the {_gib(self._memory_cap)} onnxruntime may use here"
                       if self._memory_cap else "what this machine could give")
                raise ModelMemoryError(
                    f"the model asked for {_gib(asked) if asked else 'more memory'} in one step "
                    f"on an input of shape {list(feed.shape)}, more than {cap}; use a smaller "
                    "batch size, region of interest or tile size. A segmentation model asking "
                    "for that much on a small input is broken or hostile: choose another "
                    "model") from None
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
        if not np.issubdtype(np.asarray(out).dtype, np.floating):
            raise ModelError(
                f"the model returned {np.asarray(out).dtype} values, a label map rather than "
                "class scores; re-export it without its final ArgMax")
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out[..., None]
        if out.ndim != 4 or out.shape[0] != n:
            raise ModelError(f"the model returned shape {list(out.shape)} for a batch of {n}; "
                             f"expected a per-pixel map [N, K, H, W] or [N, H, W, K]")
        first = out.shape[2:] == (h, w)  # [N, K, H, W]
        last = out.shape[1:3] == (h, w)  # [N, H, W, K]
        if first != last and self._class_axis is None:
            self._class_axis = 1 if first else 3      # learned (the load's test run)
        if first and last:       # square, side = class count: as learned, else as the input
            first = (self._class_axis or (1 if self.input_layout == "NCHW" else 3)) == 1
        if first:
            out = np.transpose(out, (0, 2, 3, 1))
        elif not last:
            raise ModelError(
                f"the model returned a map of shape {list(out.shape)} for an input of "
                f"{h} x {w} pixels; only models whose output has the input's size are "
                f"supported; re-export the model with the upsampling included")
        return out

    def _run_options(self):
        """onnxruntime run options: the shared arena gives back what a call left unused."""
        import onnxruntime as ort

        options = ort.RunOptions()
        if self._memory_cap:
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return options

    def _runs_on(self, shape):
        """True if the model runs on an input of ``shape`` (model layout, batch axis first).

        Used to tell why a call failed: True when it has run on that size before, or runs now
        on a pseudo-random input of that size (one image, or the fixed batch).
        """
        if tuple(shape[1:]) in self._shapes_run:
            return True
        n = self._fixed_batch or 1
        x = self._random_input((n, *shape[1:])).astype(self._input_dtype)
        try:
            self._session.run([self._output_name], {self._input_name: x}, self._run_options())
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
        images : ndarray, shape (N, H, W, C), or ModelInput
            Raw raster values, bands last (C must equal :attr:`n_channels`). NaN = nodata,
            replaced per the metadata (default: per-band mean of the image's valid pixels).
            Or :meth:`prepare_images`'s result for them.
        batch_size : int, optional
            Images per model call. Default: automatic, as the explanations take it
            (:func:`~.batching.batch_size_for` the model's input size). A model whose batch
            axis is fixed (e.g. to 1) is called with that many images at a time.

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
        return self._predict(images, batch_size, None)

    def predict_pixels(self, images, pixels, batch_size=None):
        """Class probabilities of raw images at some pixels only.

        The model runs on the whole images, as in :meth:`predict`; only the pixels asked for
        are activated (softmax or sigmoid) and returned, which saves most of the work around
        the model when they are a small region of a large image.

        Parameters
        ----------
        images : ndarray, shape (N, H, W, C), or ModelInput
            As in :meth:`predict`.
        pixels : ndarray of int, shape (P,)
            Flat pixel indices ``row * W + col``.
        batch_size : int, optional
            As in :meth:`predict`.

        Returns
        -------
        ndarray, shape (N, P, K), float32
            ``predict(images).reshape(N, H * W, K)[:, pixels]``, bit for bit.
        """
        return self._predict(images, batch_size, np.asarray(pixels, dtype=np.intp))

    def prepare_images(self, images):
        """Raw images checked and put in the model's space (:meth:`preprocess`, then padded to
        a fixed-size model's input): the work before the model call, which
        :meth:`predict` and :meth:`predict_pixels` skip when given the result in place of
        the images. The explanations run it for the next batch while the model runs.

        Parameters
        ----------
        images : ndarray, shape (N, H, W, C)
            As in :meth:`predict`.

        Returns
        -------
        ModelInput
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
        return ModelInput(self, x, (n, h, w, c))

    def _predict(self, images, batch_size, pixels):
        if not isinstance(images, ModelInput):
            images = self.prepare_images(images)
        elif images.model is not self:
            raise ValueError("these images were prepared for another model; give the raw "
                             "images or this model's prepare_images(images)")
        x = images.x
        n, h, w, c = images.shape
        fixed_batch = self._fixed_batch
        if fixed_batch is not None:
            step = fixed_batch
        else:
            step = batch_size_for(batch_size, x.shape[1], x.shape[2])
        step = self._check_memory(step, x.shape[1], x.shape[2], c)
        if pixels is None:
            out = np.empty((n, h, w, self.n_classes), dtype=np.float32)
        else:
            out = np.empty((n, len(pixels), self.n_classes), dtype=np.float32)
        for start in range(0, n, step):
            chunk = x[start:start + step]
            m = len(chunk)
            if fixed_batch is not None and m < fixed_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed_batch - m, 0)])
            raw = self._run(chunk)[:m, :h, :w]
            if raw.shape[-1] != self._n_raw_classes:
                raise ModelError(f"the model returned {raw.shape[-1]} channels, earlier "
                                 f"{self._n_raw_classes}; its output is not a class map")
            if pixels is not None:
                raw = _gather_pixels(raw, pixels)
            out[start:start + m] = self._activate(raw)
            check_finite(out[start:start + m])
        return out

    def describe(self):
        """A summary for the UI and for result metadata.

        Returns
        -------
        dict
            ``name``, ``path``, ``sha256``, ``classes``, ``n_classes``, ``n_channels``,
            ``tile_size``, ``fixed_size``, ``context``, ``input_shape`` (None = dynamic),
            ``input_layout``
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
            "context": self.context,
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
