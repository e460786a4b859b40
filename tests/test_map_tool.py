"""The "Draw region of interest" map tool on a real map canvas in another CRS than the raster."""

import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                       QgsProject, QgsRectangle)
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent
from qgis.PyQt.QtTest import QTest
from seg_explainer.processing_provider.compat import GEOMETRY_POINT, GEOMETRY_POLYGON

RASTER_CRS = QgsCoordinateReferenceSystem("EPSG:32631")
CANVAS_CRS = QgsCoordinateReferenceSystem("EPSG:3857")
# A 1280 m x 1280 m area of the North Sea in UTM 31N (the sample scene's corner).
AREA = QgsRectangle(480000.0, 5888720.0, 481280.0, 5890000.0)


def _to_canvas(point):
    transform = QgsCoordinateTransform(RASTER_CRS, CANVAS_CRS, QgsProject.instance())
    return transform.transform(point)


@pytest.fixture()
def canvas(qgis_canvas, qgis_parent, qgis_new_project):
    qgis_parent.show()
    qgis_canvas.show()
    qgis_canvas.resize(600, 600)
    QTest.qWait(10)
    qgis_canvas.setDestinationCrs(CANVAS_CRS)
    transform = QgsCoordinateTransform(RASTER_CRS, CANVAS_CRS, QgsProject.instance())
    qgis_canvas.setExtent(transform.transformBoundingBox(AREA))
    qgis_canvas.refresh()
    yield qgis_canvas
    qgis_canvas.unsetMapTool(qgis_canvas.mapTool())


@pytest.fixture()
def tool(canvas):
    from seg_explainer.ui.map_tool import RegionMapTool

    tool = RegionMapTool(canvas)
    canvas.setMapTool(tool)
    drawn = []
    tool.regionDrawn.connect(lambda geom, crs: drawn.append((geom, crs)))
    tool.drawn = drawn
    yield tool
    canvas.unsetMapTool(tool)
    tool.remove_bands()


def _screen(canvas, point_utm):
    """Screen position (viewport pixels) of a UTM point."""
    p = canvas.getCoordinateTransform().transform(_to_canvas(point_utm))
    return QPoint(round(p.x()), round(p.y()))


def _click(canvas, pos, button=Qt.MouseButton.LeftButton):
    QTest.mouseClick(canvas.viewport(), button, Qt.KeyboardModifier.NoModifier, pos)


def _in_raster_crs(geom, crs):
    from seg_explainer.ui.map_tool import geometry_in_crs

    return geometry_in_crs(geom, crs, RASTER_CRS)


def _tolerance(canvas):
    """One screen pixel in metres on the ground (Web Mercator is ~1.6 x stretched here)."""
    return 2.0 * canvas.mapUnitsPerPixel()


def test_clicks_give_the_polygon_in_the_rasters_crs(tool, canvas):
    corners = [QgsPointXY(480200, 5889800), QgsPointXY(480900, 5889700),
               QgsPointXY(480800, 5889100), QgsPointXY(480300, 5889200)]
    for corner in corners:
        _click(canvas, _screen(canvas, corner))
    assert len(tool.points) == 4 and not tool.drawn
    _click(canvas, _screen(canvas, corners[-1]), Qt.MouseButton.RightButton)
    assert len(tool.drawn) == 1
    geom, crs = tool.drawn[0]
    assert crs.authid() == "EPSG:3857"
    assert geom.type() == GEOMETRY_POLYGON
    utm = _in_raster_crs(geom, crs)
    vertices = utm.asPolygon()[0][:-1]
    assert len(vertices) == 4
    tol = _tolerance(canvas)
    for got, want in zip(vertices, corners):
        assert got.distance(want) < tol, (got, want, tol)
    # 0.36 km2 in UTM (shoelace of the corners); in Web Mercator it is ~2.6 x larger.
    assert utm.area() == pytest.approx(360000, rel=0.02)
    assert geom.area() > 2.4 * utm.area()
    assert tool.result_band is not None and not tool.points


def test_single_click_is_one_point(tool, canvas):
    target = QgsPointXY(480640, 5889360)
    _click(canvas, _screen(canvas, target))
    _click(canvas, _screen(canvas, target), Qt.MouseButton.RightButton)
    geom, crs = tool.drawn[-1]
    assert geom.type() == GEOMETRY_POINT
    assert _in_raster_crs(geom, crs).asPoint().distance(target) < _tolerance(canvas)


def test_two_clicks_give_their_rectangle(tool, canvas):
    a, b = QgsPointXY(480100, 5889900), QgsPointXY(480500, 5889500)
    _click(canvas, _screen(canvas, a))
    _click(canvas, _screen(canvas, b))
    _click(canvas, _screen(canvas, b), Qt.MouseButton.RightButton)
    geom, crs = tool.drawn[-1]
    box = _in_raster_crs(geom, crs).boundingBox()
    tol = _tolerance(canvas)
    assert abs(box.xMinimum() - a.x()) < tol and abs(box.xMaximum() - b.x()) < tol
    assert abs(box.yMinimum() - b.y()) < tol and abs(box.yMaximum() - a.y()) < tol


def test_press_drag_release_draws_a_rectangle(tool, canvas):
    a, b = _screen(canvas, QgsPointXY(480200, 5889800)), _screen(canvas, QgsPointXY(480600,
                                                                                    5889400))
    viewport = canvas.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    from qgis.PyQt.QtGui import QMouseEvent

    move = QMouseEvent(QEvent.Type.MouseMove, b, Qt.MouseButton.NoButton,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    canvas.mouseMoveEvent(move)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    geom, crs = tool.drawn[-1]
    utm = _in_raster_crs(geom, crs)
    assert utm.type() == GEOMETRY_POLYGON
    assert utm.area() == pytest.approx(400 * 400, rel=0.03)


def test_escape_cancels_the_drawing(tool, canvas):
    cancelled = []
    tool.drawingCancelled.connect(lambda: cancelled.append(True))
    _click(canvas, _screen(canvas, QgsPointXY(480200, 5889800)))
    _click(canvas, _screen(canvas, QgsPointXY(480900, 5889700)))
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape,
                                 Qt.KeyboardModifier.NoModifier))
    assert cancelled == [True]
    assert tool.points == [] and tool.drawn == []
    # Right click after Esc has nothing to finish.
    _click(canvas, _screen(canvas, QgsPointXY(480300, 5889300)), Qt.MouseButton.RightButton)
    assert tool.drawn == []


def test_backspace_removes_the_last_vertex(tool, canvas):
    for p in [QgsPointXY(480200, 5889800), QgsPointXY(480900, 5889700),
              QgsPointXY(480800, 5889100)]:
        _click(canvas, _screen(canvas, p))
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Backspace,
                                 Qt.KeyboardModifier.NoModifier))
    assert len(tool.points) == 2
