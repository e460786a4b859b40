"""Read a segmentation model's ONNX metadata into a :class:`ModelMetadata`.

ONNX models carry ``metadata_props``: string keys mapped to string values. Structured
values are JSON text, parsed with limits (at most :data:`MAX_VALUE_CHARS` characters, lists
of at most :data:`MAX_LIST_LENGTH` items, nesting of at most :data:`MAX_DEPTH` levels, finite
numbers only). Nothing is ever evaluated as code. A malformed value raises
:class:`~seg_explainer.core.errors.ModelError` naming the key and what was expected.

Schema
------
Keys shared with the Deepness QGIS plugin (values are JSON, as written by ``json.dumps``;
plain unquoted text is accepted for the text-valued keys):

``model_type``
    ``"Segmentor"``. Other types (``"Detector"``, ``"Regressor"``) are refused: they do not
    output per-pixel class probabilities.
``class_names``
    JSON object ``{"0": "sea", "1": "oil"}`` (keys are consecutive class indices from 0) or a
    JSON list ``["sea", "oil"]``. Deepness also accepts a Python-literal dict with integer
    keys (``{0: 'sea', 1: 'oil'}``); so do we, read by ``ast.literal_eval`` (a parser of
    literals, not ``eval``). ``names`` is read as an alias, as in Deepness.
``resolution``
    Ground resolution the model was trained at, in cm per pixel (positive number).
``tiles_size``
    Tile edge the model was trained on, in pixels (positive integer). ``tile_size`` is read as
    an alias.
``tiles_overlap``
    Overlap between tiles, in percent (integer in [0, 100)).
``standardization_mean``, ``standardization_std``
    Per-channel JSON list, or one number for all channels. Applied after the input scaling:
    ``(x - mean) / std``. Every std must be > 0.
``seg_thresh``
    Optional probability threshold in [0, 1] used to call a pixel positive.

Keys of this plugin (all optional; other ``seg_explainer_*`` keys, such as training
provenance, are kept in ``raw`` and otherwise ignored):

``seg_explainer_input_scaling``
    How raw raster values are brought to the range the model was trained on, before
    standardisation. JSON, one of ``{"type": "none"}``, ``{"type": "divide", "divisor": 255}``
    or ``{"type": "minmax", "min": -35.0, "max": 5.0, "clip": true}`` (maps [min, max] to
    [0, 1]; ``clip`` defaults to false).
``seg_explainer_input_layout``
    ``"NCHW"`` or ``"NHWC"``: where the model input keeps its channel axis.
``seg_explainer_output_activation``
    ``"none"`` (the output already holds probabilities), ``"softmax"`` (logits over the
    class axis) or ``"sigmoid"`` (independent logits; a single-channel output becomes the
    two classes background and foreground).
``seg_explainer_input_nodata``
    JSON ``{"fill": "mean"}``, ``{"fill": "zero"}`` or ``{"fill": <number>}``: the raw value
    that replaces nodata (NaN) pixels before the model sees them. Default ``"mean"`` (the
    per-band mean of the valid pixels of the image).
``seg_explainer_context``
    Pixels of image the model needs around a region to predict it as on a whole tile (its
    effective receptive-field radius; integer >= 0). The automatic explanation window keeps
    this much around the region; default 64 (:data:`~.region.DEFAULT_CONTEXT`).

Conventions
-----------
Which input scaling applies depends on which keys are present (:attr:`ModelMetadata.convention`):

``"seg_explainer"``
    at least one ``seg_explainer_*`` key: scaling as stated (``"none"`` when the scaling key
    is absent), then the Deepness standardisation keys if present.
``"deepness"``
    Deepness keys and none of ours: raw values / 255, then standardisation, exactly as in
    Deepness (whose loader assumes 8-bit imagery).
``"none"``
    no recognised key at all: raw values go to the model unchanged (no scaling, mean 0,
    std 1).

The output activation and the input layout, when not stated, are inferred by
:class:`~seg_explainer.core.model.SegmentationModel` from the model itself.
"""

import ast
import json
import math
import warnings
from dataclasses import dataclass, field

from .errors import ModelError

#: Longest metadata value read, in characters.
MAX_VALUE_CHARS = 64 * 1024
#: Longest list (or object) accepted in a metadata value.
MAX_LIST_LENGTH = 4096
#: Deepest nesting accepted in a metadata value.
MAX_DEPTH = 8
#: Largest magnitude of a number in a metadata value (floats beyond it are infinite anyway).
MAX_NUMBER = 1e300

DEEPNESS_KEYS = (
    "model_type", "class_names", "names", "resolution", "tiles_size", "tile_size",
    "tiles_overlap", "standardization_mean", "standardization_std", "seg_thresh",
    "seg_small_segment",
)
OUR_PREFIX = "seg_explainer_"
KEY_SCALING = "seg_explainer_input_scaling"
KEY_LAYOUT = "seg_explainer_input_layout"
KEY_ACTIVATION = "seg_explainer_output_activation"
KEY_NODATA = "seg_explainer_input_nodata"
KEY_CONTEXT = "seg_explainer_context"

LAYOUTS = ("NCHW", "NHWC")
ACTIVATIONS = ("none", "softmax", "sigmoid")
SCALING_TYPES = ("none", "divide", "minmax")


@dataclass(frozen=True)
class InputScaling:
    """Map raw raster values to the model's training range (before standardisation).

    Attributes
    ----------
    type : {"none", "divide", "minmax"}
    divisor : float or None
        For ``"divide"``: ``x / divisor``.
    min, max : float or None
        For ``"minmax"``: ``(x - min) / (max - min)``, so [min, max] maps to [0, 1].
    clip : bool
        For ``"minmax"``: clip the result to [0, 1].
    """

    type: str = "none"
    divisor: float = None
    min: float = None
    max: float = None
    clip: bool = False

    def apply(self, x):
        """Scale ``x`` (any shape, float32); returns a new float32 array."""
        import numpy as np

        x = np.asarray(x, dtype=np.float32)
        # float32 arrays with float32 scalars stay float32: each step in place on the one
        # new array (the same values as new arrays each time, fewer passes over memory)
        if self.type == "divide":
            return np.divide(x, np.float32(self.divisor))
        if self.type == "minmax":
            y = np.subtract(x, np.float32(self.min))
            y /= np.float32(self.max - self.min)
            # clipped unless every value is in (0, 1] already (as most rasters' are): two
            # reductions cost a fifth of numpy's clip
            if self.clip and not (y.size == 0 or (y.min() > 0 and y.max() <= 1)):
                np.clip(y, np.float32(0.0), np.float32(1.0), out=y)
            return y
        return x.copy()

    def as_dict(self):
        """The JSON-able form used in metadata and in ``describe()``."""
        if self.type == "divide":
            return {"type": "divide", "divisor": self.divisor}
        if self.type == "minmax":
            return {"type": "minmax", "min": self.min, "max": self.max, "clip": self.clip}
        return {"type": "none"}


@dataclass(frozen=True)
class ModelMetadata:
    """What a model's metadata says, after validation. ``None`` = not stated.

    Attributes
    ----------
    convention : {"seg_explainer", "deepness", "none"}
        Which rules decided the input scaling (see the module docstring).
    model_type : str or None
    class_names : tuple of str or None
    resolution_cm : float or None
        Ground resolution, cm per pixel.
    tile_size : int or None
        Tile edge in pixels.
    tiles_overlap : int or None
        Percent.
    standardization_mean, standardization_std : tuple of float or None
        Per channel (length 1 = every channel).
    seg_thresh : float or None
    input_scaling : InputScaling
        The effective scaling (already resolved by ``convention``).
    input_layout : {"NCHW", "NHWC"} or None
    output_activation : {"none", "softmax", "sigmoid"} or None
    nodata_fill : "mean", "zero" or float
    context : int or None
        Pixels of context the model needs around a region.
    raw : dict
        Every metadata key and its unparsed string value.
    """

    convention: str = "none"
    model_type: str = None
    class_names: tuple = None
    resolution_cm: float = None
    tile_size: int = None
    tiles_overlap: int = None
    standardization_mean: tuple = None
    standardization_std: tuple = None
    seg_thresh: float = None
    input_scaling: InputScaling = field(default_factory=InputScaling)
    input_layout: str = None
    output_activation: str = None
    nodata_fill: object = "mean"
    context: int = None
    raw: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


# ---------------------------------------------------------------------------------------
# bounded JSON


def _reject_constant(name):
    raise ValueError(f"non-finite number {name}")


def _check_structure(value, depth=0):
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, (list, dict)):
        if len(value) > MAX_LIST_LENGTH:
            raise ValueError(f"more than {MAX_LIST_LENGTH} items")
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            _check_structure(item, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        # would overflow float(): 1e400 written as an integer
        raise ValueError("number too large")


def _check_length(key, text):
    if not isinstance(text, str):
        raise ModelError(f"metadata key {key!r}: expected a text value, got {type(text).__name__}")
    if len(text) > MAX_VALUE_CHARS:
        raise ModelError(
            f"metadata key {key!r}: value is {len(text)} characters long, more than the "
            f"{MAX_VALUE_CHARS} accepted; shorten it")


def parse_json_value(key, text, expected):
    """Parse one metadata value as bounded JSON.

    Parameters
    ----------
    key : str
        Metadata key (for the error message).
    text : str
        The value.
    expected : str
        What the value should be, for the error message (e.g. "a JSON list of numbers").

    Returns
    -------
    object
        The parsed JSON value (finite numbers, lists/objects within the limits).

    Raises
    ------
    ModelError
        If the value is too long, not JSON, too deep, too long a list, or non-finite.
    """
    _check_length(key, text)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        _check_structure(value)
    except (ValueError, RecursionError) as exc:
        raise ModelError(
            f"metadata key {key!r}: cannot read {text[:80]!r} ({exc}); expected {expected}"
        ) from None
    return value


def _text(key, text, allowed=None):
    """A text value, JSON-quoted (Deepness) or plain."""
    _check_length(key, text)
    value = text.strip()
    if value.startswith('"'):
        value = parse_json_value(key, value, "a text value")
        if not isinstance(value, str):
            raise ModelError(f"metadata key {key!r}: expected a text value, got {text[:80]!r}")
    if allowed is not None:
        match = {a.lower(): a for a in allowed}.get(value.lower())
        if match is None:
            raise ModelError(
                f"metadata key {key!r}: {value[:80]!r} is not one of {', '.join(allowed)}")
        value = match
    return value


def _number(key, text, *, integer=False, low=None, high=None, low_open=False, high_open=False):
    what = "an integer" if integer else "a number"
    rng = ""
    if low is not None or high is not None:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        rng = f" in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    expected = f"{what}{rng}"
    value = parse_json_value(key, text, expected)
    if isinstance(value, str):  # "512" written as a JSON string
        value = parse_json_value(key, value, expected)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
    if integer:
        if float(value) != int(value):
            raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
        value = int(value)
    else:
        value = float(value)
    bad = ((low is not None and (value < low or (low_open and value == low)))
           or (high is not None and (value > high or (high_open and value == high))))
    if bad:
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {value}")
    return value


def _number_list(key, text, *, positive=False):
    expected = "a JSON list of numbers (one per channel) or a single number"
    if positive:
        expected += ", all > 0"
    value = parse_json_value(key, text, expected)
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
    values = tuple(float(v) for v in values)
    if positive and any(v <= 0 for v in values):
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
    return values


def _class_names(key, text):
    expected = ('a JSON object {"0": "name", "1": "name", ...} with consecutive indices from 0, '
                'or a JSON list of names')
    _check_length(key, text)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError:
        # Deepness also accepts a Python-literal dict with integer keys: read it as literals
        # only (ast.literal_eval never runs code), within the same size limits.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise ModelError(
                f"metadata key {key!r}: cannot read {text[:80]!r} ({type(exc).__name__}); "
                f"expected {expected}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"metadata key {key!r}: cannot read {text[:80]!r} ({exc}); "
                         f"expected {expected}") from None
    try:
        _check_structure(value)
    except ValueError as exc:
        raise ModelError(f"metadata key {key!r}: {exc}; expected {expected}") from None
    if isinstance(value, dict):
        try:
            items = sorted((int(k), v) for k, v in value.items())
        except (TypeError, ValueError):
            raise ModelError(f"metadata key {key!r}: keys must be class indices; expected "
                             f"{expected}") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise ModelError(f"metadata key {key!r}: class indices {[k for k, _ in items]} "
                             f"are not consecutive from 0; expected {expected}")
        names = [v for _, v in items]
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
    if not names or any(isinstance(n, (dict, list, tuple)) or n is None for n in names):
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")
    return tuple(str(n) for n in names)


def _scaling(key, text):
    expected = ('{"type": "none"}, {"type": "divide", "divisor": <number != 0>} or '
                '{"type": "minmax", "min": <number>, "max": <number > min>, "clip": <bool>}')
    value = parse_json_value(key, text, expected)
    if isinstance(value, str):  # a bare "none" / "divide" ...
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type") not in SCALING_TYPES:
        raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")

    def num(name):
        v = value.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ModelError(f"metadata key {key!r}: {name!r} must be a number; expected "
                             f"{expected}, got {text[:80]!r}")
        return float(v)

    kind = value["type"]
    allowed = {"none": {"type"}, "divide": {"type", "divisor"},
               "minmax": {"type", "min", "max", "clip"}}[kind]
    unknown = set(value) - allowed
    if unknown:
        raise ModelError(f"metadata key {key!r}: unknown field(s) {sorted(unknown)}; "
                         f"expected {expected}")
    if kind == "divide":
        divisor = num("divisor")
        if divisor == 0:
            raise ModelError(f"metadata key {key!r}: divisor must not be 0")
        return InputScaling("divide", divisor=divisor)
    if kind == "minmax":
        lo, hi = num("min"), num("max")
        clip = value.get("clip", False)
        if not isinstance(clip, bool):
            raise ModelError(f"metadata key {key!r}: 'clip' must be true or false")
        if not hi > lo:
            raise ModelError(f"metadata key {key!r}: 'max' ({hi}) must be greater than "
                             f"'min' ({lo})")
        return InputScaling("minmax", min=lo, max=hi, clip=clip)
    return InputScaling("none")


def _nodata(key, text):
    expected = '{"fill": "mean"}, {"fill": "zero"} or {"fill": <number>}'
    value = parse_json_value(key, text, expected)
    fill = value.get("fill") if isinstance(value, dict) else None
    if isinstance(fill, str) and fill.lower() in ("mean", "zero"):
        return fill.lower()
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return float(fill)
    raise ModelError(f"metadata key {key!r}: expected {expected}, got {text[:80]!r}")


def parse_metadata(props):
    """Validate a model's metadata and resolve the input-scaling convention.

    Parameters
    ----------
    props : mapping of str to str
        ONNX ``metadata_props`` (as from onnxruntime's ``custom_metadata_map``).

    Returns
    -------
    ModelMetadata

    Raises
    ------
    ModelError
        If a recognised key holds a malformed value; the message names the key and what it
        should hold. Unknown keys are kept in ``raw`` and otherwise ignored.
    """
    props = dict(props or {})
    out = {}
    if "model_type" in props:
        model_type = _text("model_type", props["model_type"])
        if model_type.lower() not in ("segmentor", "segmentation"):
            raise ModelError(
                f"metadata key 'model_type' is {model_type!r}: only segmentation models "
                f"('Segmentor') can be explained; choose a segmentation model")
        out["model_type"] = "Segmentor"
    for key in ("class_names", "names"):
        if key in props:
            out["class_names"] = _class_names(key, props[key])
            break
    if "resolution" in props:
        out["resolution_cm"] = _number("resolution", props["resolution"], low=0, low_open=True)
    for key in ("tiles_size", "tile_size"):
        if key in props:
            out["tile_size"] = _number(key, props[key], integer=True, low=1)
            break
    if "tiles_overlap" in props:
        out["tiles_overlap"] = _number("tiles_overlap", props["tiles_overlap"], integer=True,
                                       low=0, high=100, high_open=True)
    if "standardization_mean" in props:
        out["standardization_mean"] = _number_list("standardization_mean",
                                                   props["standardization_mean"])
    if "standardization_std" in props:
        out["standardization_std"] = _number_list("standardization_std",
                                                  props["standardization_std"], positive=True)
    if "seg_thresh" in props:
        out["seg_thresh"] = _number("seg_thresh", props["seg_thresh"], low=0, high=1)

    # Any seg_explainer_* key marks the convention; the ones this version does not read
    # (e.g. training provenance) are kept in ``raw`` only.
    ours = [k for k in props if k.startswith(OUR_PREFIX)]
    if ours:
        convention = "seg_explainer"
        scaling = (_scaling(KEY_SCALING, props[KEY_SCALING]) if KEY_SCALING in props
                   else InputScaling("none"))
    elif any(k in props for k in DEEPNESS_KEYS):
        convention = "deepness"
        scaling = InputScaling("divide", divisor=255.0)
    else:
        convention = "none"
        scaling = InputScaling("none")
    if KEY_LAYOUT in props:
        out["input_layout"] = _text(KEY_LAYOUT, props[KEY_LAYOUT], LAYOUTS)
    if KEY_ACTIVATION in props:
        out["output_activation"] = _text(KEY_ACTIVATION, props[KEY_ACTIVATION], ACTIVATIONS)
    if KEY_NODATA in props:
        out["nodata_fill"] = _nodata(KEY_NODATA, props[KEY_NODATA])
    if KEY_CONTEXT in props:
        out["context"] = _number(KEY_CONTEXT, props[KEY_CONTEXT], integer=True, low=0,
                                 high=8192)
    return ModelMetadata(convention=convention, input_scaling=scaling, raw=props, **out)
