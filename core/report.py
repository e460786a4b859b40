"""A one-page PNG figure of an explanation, for pasting into a report."""

import numpy as np

from .geoio import atomic_path


def write_report(path, image, region_mask, probability, signed, *, title, lines=(),
                 cells=None):
    """Draw the window, the model's probability and the signed explanation, side by side.

    Parameters
    ----------
    path : str
        PNG file; written atomically.
    image : ndarray [H, W]
        First band of the window (NaN = nodata), shown in grey with a 2-98 % stretch.
    region_mask : bool ndarray [H, W]
        The region of interest, outlined in every panel.
    probability : ndarray [H, W]
        The model's probability for the explained class.
    signed : ndarray [H, W]
        Excitation minus inhibition; shown red (inhibition) to green (excitation) on a colour
        scale symmetric about zero, as in the seed paper.
    title : str
    lines : sequence of str
        Printed under the panels (prediction, base value, sum of contributions...).
    cells : sequence of shapely polygons in pixel coordinates, optional
        Drawn as thin outlines over the explanation.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    red_green = LinearSegmentedColormap.from_list(
        "inhibition_excitation", ["#b2182b", "#f7f7f7", "#1a9850"])
    fig = Figure(figsize=(13, 5.2), dpi=110, constrained_layout=True)
    axes = fig.subplots(1, 3)
    finite = image[np.isfinite(image)]
    lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
    axes[0].imshow(image, cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title("Input window (band 1)")
    shown = axes[1].imshow(probability, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title("Model probability")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    limit = float(np.nanmax(np.abs(signed))) or 1.0
    axes[2].imshow(image, cmap="gray", vmin=lo, vmax=hi)
    shown = axes[2].imshow(signed, cmap=red_green, vmin=-limit, vmax=limit, alpha=0.75)
    axes[2].set_title("Explanation: green = excitation, red = inhibition")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    if cells is not None:
        for poly in cells:
            for ring in [poly.exterior] if poly.geom_type == "Polygon" else \
                    [g.exterior for g in poly.geoms]:
                x, y = ring.xy
                axes[2].plot(np.asarray(x) - 0.5, np.asarray(y) - 0.5, color="k", lw=0.2,
                             alpha=0.4)
    for ax in axes:
        if region_mask.any():
            ax.contour(region_mask.astype(float), levels=[0.5], colors="cyan", linewidths=1.2)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    if lines:
        fig.text(0.01, 0.01, "   ".join(lines), fontsize=9, family="monospace")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return str(path)
