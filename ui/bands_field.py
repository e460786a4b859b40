"""The dock's "Bands" field: raster bands fed to the model's channels, remembered per raster
file (band numbers name one raster's band layout)."""

import json
import re

from qgis.PyQt.QtWidgets import QLineEdit

from ..processing_provider.common import raster_band_count

TOOLTIP = ("<p><b>BANDS</b>: the raster bands fed to the model's channels, in order, as band "
           "numbers separated by commas: '2, 1' feeds band 2 to the first channel and band 1 "
           "to the second. A band may be repeated. Empty = all the raster's bands in their "
           "order (the placeholder shows them). The count must be the model's channel "
           "count when its input shape fixes it.</p><p>Remembered per raster file.</p>")
#: Raster files remembered with their "Bands" text (the oldest are forgotten first).
MAX_REMEMBERED = 50


def parse_bands(text):
    """Band numbers from the "Bands" text: ``"2, 1"`` -> ``[2, 1]``, ``""`` -> ``[]``.

    Commas, semicolons and spaces separate numbers. Raises ``ValueError`` whose message is the
    first part that is not a whole number.
    """
    bands = []
    for part in re.split(r"[,;\s]+", str(text).strip()):
        if not part:
            continue
        if not re.fullmatch(r"[0-9]+", part):
            raise ValueError(part)
        bands.append(int(part))
    return bands


def band_list(count, n_bands=None):
    """``"1, 2"``: the first ``count`` band numbers (the last one repeated past ``n_bands``)."""
    return ", ".join(str(min(i, n_bands or i)) for i in range(1, count + 1))


class BandsField(QLineEdit):
    """A line edit for band numbers that knows the raster and the model's channel count.

    ``set_raster(layer)`` shows the text last given for that raster's file (empty = all its
    bands); bands typed while no raster was chosen are kept for the first raster chosen.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setClearButtonEnabled(True)
        self.setToolTip(TOOLTIP)
        self.raster = None
        self.n_bands = None
        self.channels = None
        self._by_source = {}
        self._source = None
        self.textChanged.connect(self._remember)

    # -- the raster and the model -------------------------------------------------------------
    def set_raster(self, raster):
        """The raster layer the bands belong to (or None)."""
        self.raster = raster
        source = raster.source() if raster is not None else None
        if source != self._source:
            # what the run reads, not the layer's count (raster_band_count)
            self.n_bands = raster_band_count(raster) if raster is not None else None
            text = self._by_source.get(source) if source else ""
            if text is None:  # a raster not seen before: all its bands, its default
                text = self.text() if self._source is None else ""
            self._source = source
            self.blockSignals(True)
            self.setText(text)
            self.blockSignals(False)
            self._remember(text)
        self._update_placeholder()

    def set_channels(self, channels):
        """The model's channel count (None when it does not fix one)."""
        self.channels = channels
        self._update_placeholder()

    # -- the value ------------------------------------------------------------------------------
    def bands(self):
        """``(band numbers, problem)``: ``[]`` means all the raster's bands (the algorithm's
        default); ``problem`` is a sentence for the user, or None."""
        raster, channels = self.raster, self.channels
        n_bands = self.n_bands if raster is not None else None
        example = band_list(channels or min(n_bands or 2, 2), n_bands)
        try:
            bands = parse_bands(self.text())
        except ValueError as exc:
            return None, (f"Bands: '{exc}' is not a band number. Give band numbers separated "
                          f"by commas, in model-channel order (e.g. {example}), or leave it "
                          "empty for all bands.")
        if raster is None:
            return bands, None  # no raster is a problem of its own
        outside = [str(b) for b in bands if not 1 <= b <= n_bands]
        if outside:
            return None, (f"Bands: '{raster.name()}' has band(s) 1 to {n_bands}; "
                          f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not "
                          f"among them. Give band numbers from 1 to {n_bands}.")
        if channels and bands and len(bands) != channels:
            return None, (f"Bands: the model takes {channels} channel(s) but {len(bands)} "
                          f"band(s) are given. Give {channels} band number(s) in model-channel "
                          f"order, e.g. {example}.")
        if channels and not bands and n_bands != channels:
            return None, (f"The model takes {channels} channel(s) but '{raster.name()}' has "
                          f"{n_bands} band(s). Under Bands, give {channels} of its band "
                          f"numbers in model-channel order, e.g. {example}, or choose a raster "
                          f"with {channels} band(s).")
        return bands, None

    def _update_placeholder(self):
        raster, channels = self.raster, self.channels
        if raster is None:
            text = "band numbers in model-channel order, e.g. 1, 2"
        elif channels and channels != self.n_bands:
            text = f"e.g. {band_list(channels, self.n_bands)}: {channels} band(s) " \
                   "in model-channel order"
        else:
            n_bands = self.n_bands
            text = f"{band_list(n_bands)} (all bands)" if n_bands <= 6 else \
                f"1 to {n_bands} (all bands)"
        self.setPlaceholderText(text)

    # -- memory per raster file -------------------------------------------------------------------
    def _remember(self, text):
        if self._source is None:
            return
        self._by_source.pop(self._source, None)  # the most recent last
        if text.strip():
            self._by_source[self._source] = text.strip()

    def remembered(self):
        """The texts per raster file as JSON (the :data:`MAX_REMEMBERED` most recent)."""
        return json.dumps(dict(list(self._by_source.items())[-MAX_REMEMBERED:]))

    def restore(self, remembered):
        """Take :meth:`remembered`'s JSON back (anything else is ignored)."""
        try:
            value = json.loads(remembered or "{}")
        except ValueError:
            value = {}
        if isinstance(value, dict):
            self._by_source = {str(k): str(v) for k, v in value.items()}
        self._source = None
        self.set_raster(self.raster)
