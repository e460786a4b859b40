"""Every parameter of the engine, declared once.

Each :class:`Parameter` says everything the plugin knows about one parameter: its engine
keyword, its Processing key, its type, default and range, the methods that use it and one line
of help. The engine validates with it (:func:`check_parameters`), the Processing algorithms
build their parameter definitions and help from it, the dock builds its form, tooltips and
saved settings from those, and the time estimate reads its defaults. Change a parameter here
and everything follows; ``tests/test_parameters.py`` checks that nothing drifted.

Examples
--------
>>> from seg_explainer.core.parameters import PARAMETERS, by_name
>>> by_name("max_depth").default
4
>>> [p.key for p in PARAMETERS if p.methods == ("rise",)]
['N_MASKS', 'GRID_SIZE', 'P_KEEP']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .baselines import KINDS as BASELINES
from .errors import InputError

__all__ = ["EXPLAIN_METHODS", "PARAMETERS", "Parameter", "by_key", "by_name",
           "check_parameters", "defaults", "for_algorithm"]

#: Largest SHAP sample count: each sample is one model evaluation, and the design matrix
#: holds one row per sample (10 million rows of 229 cells is 2.3 GB).
MAX_SAMPLES = 10_000_000
#: Largest seed: Processing integers are 32-bit, so a larger one would not be the seed used.
MAX_SEED = 2 ** 31 - 1

#: The explanation methods, in the order the toolbox and the dock show them.
EXPLAIN_METHODS = ("shap", "rise", "occlusion")


@dataclass(frozen=True)
class Parameter:
    """One parameter of the engine.

    Attributes
    ----------
    name : str
        Engine keyword (``explain_region(**{name: value})``, ``segment_raster``, model loading).
    key : str or None
        Processing parameter key; None for parameters only the Python API offers.
    kind : {int, float, str}
        Type of the value (``str`` with ``choices``).
    default
        The engine's default. None means "chosen by the engine" (see ``none_as``).
    label : str
        What the Processing dialog calls it.
    help : str
        One line: what it does, in the user's words.
    methods : tuple of str
        What uses it: explanation methods (``"shap"``, ``"rise"``, ``"occlusion"``) and
        ``"segment"``. The engine records these parameters with each result.
    shown_in : tuple of str, optional
        The algorithms that show it, when not the same as ``methods`` (the seed is shown by
        every explanation algorithm: occlusion's receptive-field crop uses it too).
    minimum, maximum : float, optional
        Accepted range, bounds included unless ``exclusive_minimum`` / ``exclusive_maximum``.
    exclusive_minimum, exclusive_maximum : bool
        The bound itself is refused (``p_keep`` is a fraction in (0, 1): a mask that keeps
        nothing or everything tells nothing).
    choices : tuple
        Accepted values of a ``str`` parameter. ``(None, "auto")`` is an on/off switch.
    choice_labels : tuple of str
        How the Processing dialog and the dock show each choice.
    none_as : number, optional
        The number forms show for the default None, and that stands for it ("0 = automatic").
    shown_default : number, optional
        The number forms start at when the default is None but no number stands for it
        (``baseline_value``: only read with the 'Constant' baseline).
    decimals : int
        Digits the forms show for a ``float``; 0 shows it as a whole number.
    advanced : bool
        Under "Advanced parameters" in the Processing dialog, not in the dock.
    short : str
        The dock's shorter label (default: ``label``).
    """

    name: str
    key: str | None
    kind: type
    default: object
    label: str
    help: str
    methods: tuple = EXPLAIN_METHODS
    shown_in: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple = ()
    choice_labels: tuple = ()
    none_as: float | None = None
    shown_default: float | None = None
    decimals: int = 2
    advanced: bool = False
    short: str = ""

    @property
    def algorithms(self):
        """The algorithms (methods and ``"segment"``) that show this parameter."""
        return self.methods if self.shown_in is None else self.shown_in

    @property
    def is_switch(self):
        """True for an on/off parameter (a checkbox): choices ``(None, value)``."""
        return len(self.choices) == 2 and self.choices[0] is None

    @property
    def form_default(self):
        """The default as a form shows it (``none_as`` for None, a bool for a switch)."""
        if self.is_switch:
            return self.default is not None
        if self.default is None:
            return self.shown_default if self.none_as is None else self.none_as
        if self.kind is str:
            return self.choices.index(self.default)
        return self.default

    @property
    def form_minimum(self):
        """The smallest number a form accepts (``none_as`` included)."""
        if self.minimum is None:
            return self.none_as
        if self.none_as is not None:
            return min(self.minimum, self.none_as)
        return self.minimum

    def from_form(self, value):
        """The engine value of a form's value (``none_as`` -> None, switch -> choice)."""
        if self.is_switch:
            return self.choices[1] if value else None
        if self.kind is str:
            return self.choices[int(value)]
        if self.none_as is not None and value == self.none_as:
            return None
        return value

    def range_text(self):
        """The accepted range in words: ``">= 1"``, ``"in (0, 1]"``, ``"from 1 to 8"``."""
        def text(v):                      # integers in full: 2147483647, not 2.14748e+09
            return str(int(v)) if self.kind is int else f"{v:g}"

        if self.minimum is not None and self.maximum is not None:
            if self.exclusive_minimum or self.exclusive_maximum:
                return (f"in {'(' if self.exclusive_minimum else '['}{text(self.minimum)}, "
                        f"{text(self.maximum)}{')' if self.exclusive_maximum else ']'}")
            return f"from {text(self.minimum)} to {text(self.maximum)}"
        if self.minimum is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {text(self.minimum)}"
        if self.maximum is not None:
            return f"<= {text(self.maximum)}"
        return ""

    def check(self, value):
        """``value`` checked and normalised (an int for ``int``), or an ``InputError``.

        None is accepted where the default is None. A ``float`` parameter without a range
        (``baseline_value``) also accepts one number per band.
        """
        if value is None and self.default is None:
            return None
        if self.choices:
            if value in self.choices:
                return value
            if self.is_switch:
                raise InputError(f"{self.name} must be None (off) or {self.choices[1]!r}, "
                                 f"got {value!r}")
            raise InputError(f"unknown {self.name} {value!r}; choose one of "
                             f"{', '.join(str(c) for c in self.choices)}")
        if self.kind is float and self.minimum is None and self.maximum is None \
                and not np.isscalar(value):
            numbers = np.asarray(value, dtype=float)
            if numbers.size == 0 or not np.all(np.isfinite(numbers)):
                raise InputError(f"{self.name} must be a number or one number per band, "
                                 f"got {value!r}")
            return value
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        ok = number and math.isfinite(value)
        if ok and self.kind is int:
            ok = value == int(value)
        if ok and self.minimum is not None:
            ok = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        if ok and self.maximum is not None:
            ok = value < self.maximum if self.exclusive_maximum else value <= self.maximum
        if not ok:
            what = "an integer" if self.kind is int else "a number"
            raise InputError(f"{self.name} must be {what} {self.range_text()}".rstrip()
                             + f", got {value!r}")
        return int(value) if self.kind is int else value


_ALL = EXPLAIN_METHODS + ("segment",)

#: Every parameter, in the order the forms show them.
PARAMETERS = (
    Parameter("window", "WINDOW", int, None, "Explanation window in pixels (0 = automatic)",
              "Edge of the square explanation window around the region, in pixels of the "
              "raster; 0 = automatic: the region plus the model's context (64 px unless its "
              "metadata says otherwise) on each side, in multiples of 32, at most the "
              "model's tile size (512 by default) unless the region needs more. Smaller "
              "windows run faster.",
              minimum=1, maximum=8192, none_as=0, short="Window (px)"),
    Parameter("baseline", "BASELINE", str, "mean", "Value of switched-off pixels",
              "What switched-off pixels become: the per-band image mean is the SAR default, "
              "'infill' works with occlusion only, 'inpaint' is slow and not for RISE.",
              choices=BASELINES,
              choice_labels=("Per-band image mean (SAR default)", "Zero",
                             "Constant (BASELINE_VALUE)", "Gaussian blur",
                             "Biharmonic inpainting (slow)",
                             "Neighbour-average infill (occlusion)"),
              short="Baseline"),
    Parameter("baseline_value", "BASELINE_VALUE", float, None,
              "Constant baseline value (raster units)",
              "Value of switched-off pixels for the 'Constant' baseline, in the raster's units "
              "as QGIS shows them (after a band's scale and offset; complex bands in the unit "
              "the model reads), before the model's own normalisation (Python: one value or "
              "one per band).",
              shown_default=0.0, decimals=4, short="Baseline value"),
    Parameter("blur_sigma", None, float, 8.0, "Blur sigma (pixels)",
              "Standard deviation of the Gaussian of the 'blur' baseline, pixels.",
              minimum=0, exclusive_minimum=True),
    Parameter("hex_size", "HEX_SIZE", float, None, "Hexagon circumradius in pixels (0 = "
              "automatic)",
              "Hexagon circumradius (or square edge) in pixels; 0 = automatic: a fifth of the "
              "region's diameter, from 6 px to the seed paper's 22 px (229 cells on a "
              "512 x 512 window). Smaller cells give finer maps but need more model "
              "evaluations.",
              methods=("shap",), minimum=2, none_as=0, decimals=0, short="Hexagon size (px)"),
    Parameter("cell_shape", None, str, "hexagon", "Cell shape",
              "Shape of the SHAP cells.", methods=("shap",), choices=("hexagon", "square")),
    Parameter("n_samples", "N_SAMPLES", int, None, "Coalitions to evaluate (0 = 2 x cells + "
              "2048)",
              "Coalitions (on/off patterns of the cells) the model is run on; 0 = automatic, "
              "2 M + 2048 for M cells. With 2^M or more the Shapley values are exact. At "
              "least 2 M + 4 are needed (M + 2 complementary pairs: fewer cannot determine "
              "one value per cell); at most 10 million.",
              methods=("shap",), minimum=0, maximum=MAX_SAMPLES, none_as=0, short="Samples"),
    Parameter("n_masks", "N_MASKS", int, 2000, "Number of masks",
              "Random masks the model is run on (RISE, Petsiuk et al. 2018: 2000 to 8000); "
              "more masks give a smoother, more stable map. At least 2: the map weighs each "
              "mask by its score minus the masks' mean score, so one mask gives an empty map.",
              methods=("rise",), minimum=2, short="Masks"),
    Parameter("grid_size", "GRID_SIZE", int, 8, "Mask grid size (cells per side)",
              "Each mask is a GRID_SIZE x GRID_SIZE grid of random on/off cells, bilinearly "
              "upsampled and randomly shifted; larger = finer; at least 2 (one cell covers "
              "the whole window: every mask is uniform and the map is flat).",
              methods=("rise",), minimum=2, short="Mask grid size"),
    Parameter("p_keep", "P_KEEP", float, 0.5, "Probability of keeping a grid cell",
              "Probability that a mask grid cell keeps the image (a fraction in (0, 1): at 1 "
              "every mask keeps the whole image and the map is empty).",
              methods=("rise",), minimum=0, maximum=1, exclusive_minimum=True,
              exclusive_maximum=True,
              short="Keep probability"),
    Parameter("max_depth", "MAX_DEPTH", int, 4, "Quadtree depth",
              "Depth of the occlusion quadtree: the smallest rectangles are "
              "WINDOW / 2^MAX_DEPTH pixels wide.",
              methods=("occlusion",), minimum=1, maximum=8, short="Quadtree depth"),
    Parameter("n_best", "N_BEST", int, 5, "Offset heatmaps averaged",
              "Offset grids whose heatmaps are averaged, best first by importance per "
              "covered area.",
              methods=("occlusion",), minimum=1, short="Offsets averaged"),
    Parameter("tile_size", "TILE_SIZE", int, None, "Tile size in pixels (0 = the model's)",
              "Edge of the square tiles the raster is segmented in; 0 = the model's tile size. "
              "At least 16 px: smaller tiles give the model almost no context and need a "
              "model call every few pixels.",
              methods=("segment",), minimum=16, none_as=0),
    Parameter("overlap", "OVERLAP", int, None,
              "Tile overlap in pixels (-1 = the model's, else 15 %)",
              "Overlap of neighbouring tiles, blended smoothly; -1 = the model's, else 15 % "
              "of the tile.",
              methods=("segment",), minimum=0, none_as=-1),
    Parameter("seed", "SEED", int, 0, "Random seed",
              "Random seed: the same seed and parameters give the same explanation (0 to "
              "2147483647, the range of a Processing integer).",
              methods=("shap", "rise"), shown_in=EXPLAIN_METHODS, minimum=0, maximum=MAX_SEED,
              short="Seed"),
    Parameter("batch_size", "BATCH_SIZE", int, None, "Images per model call (0 = automatic)",
              "Images per model call; 0 = automatic: about 200,000 pixels a call (7 images "
              "of 160 x 160 px, 1 from 317 x 317 px up), the fastest on a CPU "
              "(docs/benchmarks.md). Larger batches can help on a GPU and need more memory.",
              methods=_ALL, minimum=1, maximum=4096, none_as=0, short="Batch size"),
    Parameter("crop", "CROP", str, None, "Crop to the model's receptive field (verified)",
              "Run the model only on the smallest crop of the window around the region whose "
              "prediction over the region is the whole window's (checked to CROP_TOLERANCE).",
              choices=(None, "auto"), short="Crop to the model's receptive field"),
    Parameter("crop_tolerance", None, float, 1e-6, "Crop tolerance (probability units)",
              "Largest accepted difference between a crop's and the whole window's "
              "prediction over the region.",
              minimum=0, decimals=8),
    Parameter("crop_multiple", "CROP_MULTIPLE", int, 32,
              "Crop edges on multiples of this many pixels (the model's stride)",
              "Crop edges lie on multiples of this many pixels: the model's total stride "
              "(32 for a 5-level U-Net, 1 without striding).",
              minimum=1, advanced=True),
    Parameter("n_threads", "THREADS", int, None,
              "Threads for the model (0 = onnxruntime's default)",
              "onnxruntime intra-op threads; 0 = onnxruntime's default. More than the "
              "cores this process may use are lowered to that number, with a warning.",
              methods=_ALL, minimum=1, maximum=1024, none_as=0, advanced=True),
)

_BY_NAME = {p.name: p for p in PARAMETERS}
_BY_KEY = {p.key: p for p in PARAMETERS if p.key}


def by_name(name):
    """The :class:`Parameter` whose engine keyword is ``name``."""
    return _BY_NAME[name]


def by_key(key):
    """The :class:`Parameter` whose Processing key is ``key``."""
    return _BY_KEY[key]


def for_algorithm(algorithm, *, engine_only=False):
    """The parameters ``algorithm`` (a method or ``"segment"``) shows, in form order.

    With ``engine_only`` also those without a Processing key.
    """
    return tuple(p for p in PARAMETERS if algorithm in p.algorithms
                 and (engine_only or p.key is not None))


def defaults(names):
    """``{name: default}`` of the parameters ``names``."""
    return {name: _BY_NAME[name].default for name in names}


def check_parameters(names, given):
    """``given`` checked against the declarations of ``names``, defaults filled in.

    Raises ``TypeError`` for a keyword not among ``names`` and
    :class:`~.errors.InputError` for a value out of its range.
    """
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TypeError(f"unexpected parameter(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(names)}")
    out = {}
    for name in names:
        out[name] = _BY_NAME[name].check(given.get(name, _BY_NAME[name].default))
    return out
