"""shapely's bundled GEOS against the GEOS QGIS already loaded: the combination that crashed
qgis_process (shapely 2.1 / GEOS 3.13 beside QGIS 3.40's GEOS 3.11) is refused with a message,
and set-up installs the shapely that matches."""

import re

import pytest
import shapely

from seg_explainer.core.errors import DependencyError
from seg_explainer.core.shapely_geos import (import_shapely, loaded_geos_version,
                                             shapely_range_for_geos)
from seg_explainer.ui.pip_rules import constraints_text


def test_a_different_geos_in_the_process_is_refused_with_the_fix():
    other = (3, 13) if tuple(shapely.geos_version[:2]) != (3, 13) else (3, 11)
    wanted = re.escape(f"'shapely{shapely_range_for_geos(other)}'")
    pattern = rf"already uses GEOS {other[0]}\.{other[1]}.*{wanted}"
    with pytest.raises(DependencyError, match=pattern):
        import_shapely(loaded=other)


def test_an_unknown_geos_points_to_the_distribution_package():
    with pytest.raises(DependencyError, match="python3-shapely"):
        import_shapely(loaded=(9, 1))


def test_the_same_geos_passes():
    assert import_shapely(loaded=tuple(shapely.geos_version[:2])) is shapely


def test_the_geos_qgis_loaded_is_seen_and_matches_the_installed_shapely(qgis_app):
    """Set-up installed the shapely whose GEOS is QGIS's. (Under pytest QGIS is a Python
    extension, so its GEOS is not global; in the QGIS and qgis_process binaries it is.)"""
    from qgis.core import Qgis

    qgis_geos = tuple(int(p) for p in Qgis.geosVersion().split(".")[:2])
    assert loaded_geos_version() in (None, qgis_geos)
    assert import_shapely() is shapely
    assert shapely.geos_version[:2] == qgis_geos


@pytest.mark.parametrize("geos,line", [((3, 11), "shapely>=2.0,<2.1"),
                                       ((3, 13), "shapely>=2.1,<2.2"),
                                       ((3, 14), "shapely>=2.2,<2.3")])
def test_constraints_hold_shapely_to_the_system_geos(geos, line, monkeypatch):
    from seg_explainer.ui import pip_rules

    monkeypatch.setattr(pip_rules, "system_provided", set)     # no shapely on the system
    assert shapely_range_for_geos(geos) == line[len("shapely"):]
    assert line in constraints_text(lambda name: "1.0", geos=geos).splitlines()


def test_a_system_shapely_2_is_left_to_the_system(monkeypatch):
    """Debian's python3-shapely 2 (trixie, sid) is built on the system GEOS: pip is not asked
    for shapely at all, neither as a requirement nor as a constraint."""
    from seg_explainer.ui import pip_rules

    monkeypatch.setattr(pip_rules, "system_provided", lambda: {"shapely"})
    lines = constraints_text(lambda name: "2.1.1", geos=(3, 15)).splitlines()
    assert "numpy==2.1.1" in lines
    assert not any(line.startswith("shapely") for line in lines)
