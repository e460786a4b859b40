"""How many model evaluations a run needs, and how long that takes (no QGIS, no Qt).

Parameters are read by their Processing keys; a missing one takes its declared default
(core.parameters, through processing_provider.parameters).
"""

from functools import lru_cache

from ..processing_provider.parameters import by_key


def _value(params, key):
    """``params[key]``, or the parameter's default as a form shows it."""
    return params.get(key, by_key(key).form_default)


def resolve_window(window, model_info=None):
    """The explanation window edge the algorithm will use (WINDOW 0 = the model's size)."""
    from ..core.region import window_edge

    info = model_info or {}
    return window_edge(window, info.get("fixed_size"), info.get("tile_size"))


@lru_cache(maxsize=32)
def hexagon_count(window, hex_size):
    """Cells of the hexagon grid on a ``window`` x ``window`` image."""
    from ..core.cells import hexagon_grid

    return int(hexagon_grid(int(window), int(window), float(hex_size)).n_cells)


def evaluations(method, window, params):
    """Model evaluations of one run: ``(count, exact)``; ``exact`` False means "at most".

    Parameters
    ----------
    method : {"shap", "rise", "occlusion"}
    window : int
        Explanation window edge, pixels.
    params : dict
        The method's parameters by algorithm key (HEX_SIZE, N_SAMPLES, N_MASKS, MAX_DEPTH...).
    """
    if method == "shap":
        cells = hexagon_count(window, _value(params, "HEX_SIZE"))
        n = int(_value(params, "N_SAMPLES") or 0) or 2 * cells + 2048
        if cells < 60:
            n = min(n, 2 ** cells - 2)
        return n + 2, True
    if method == "rise":
        return int(_value(params, "N_MASKS")) + 1, True
    if method == "occlusion":
        from ..core.occlusion import evaluation_bound

        return evaluation_bound((window, window), _value(params, "MAX_DEPTH")), False
    raise ValueError(method)


def format_duration(seconds):
    """``"40 s"``, ``"3 min"``, ``"1 h 20 min"``."""
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60)} min"
