"""The "Draw region of interest" map tool.

Left click adds a vertex (the rubber band follows the mouse), right click finishes, Esc
cancels, Backspace removes the last vertex. Finishing after a single click gives a point
(one pixel); after two clicks, the rectangle with those corners; after three or more, the
polygon. Pressing, dragging and releasing before any vertex is placed draws a rectangle.

The region is emitted in the canvas CRS together with that CRS; :func:`geometry_in_crs`
reprojects it (the algorithms reproject it to the raster's CRS themselves).
"""

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry,
                       QgsPointXY, QgsProject, QgsRectangle)
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QPoint, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from ..processing_provider.compat import GEOMETRY_POINT, GEOMETRY_POLYGON

#: Screen pixels the mouse may move between press and release and still count as a click.
CLICK_TOLERANCE_PX = 4
OUTLINE = QColor(255, 0, 255)
FILL = QColor(255, 0, 255, 40)


def geometry_in_crs(geometry, source_crs, target_crs, project=None):
    """A copy of ``geometry`` reprojected from ``source_crs`` to ``target_crs``."""
    geom = QgsGeometry(geometry)
    if source_crs.isValid() and target_crs.isValid() and source_crs != target_crs:
        context = (project or QgsProject.instance()).transformContext()
        geom.transform(QgsCoordinateTransform(source_crs, target_crs, context))
    return geom


class RegionMapTool(QgsMapTool):
    """Draws a region of interest (polygon, rectangle or point) on the map canvas.

    Signals
    -------
    regionDrawn(QgsGeometry, QgsCoordinateReferenceSystem)
        The finished region, in the canvas CRS (also passed).
    drawingCancelled()
        Esc was pressed; the region being drawn is discarded.
    """

    regionDrawn = pyqtSignal(QgsGeometry, QgsCoordinateReferenceSystem)
    drawingCancelled = pyqtSignal()

    def __init__(self, canvas):
        super().__init__(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.points = []
        self._press_pos = None
        self._dragging = False
        self.band = self._new_band(GEOMETRY_POLYGON)
        self.result_band = None
        self.geometry = None
        self.crs = QgsCoordinateReferenceSystem()

    # -- rubber bands -------------------------------------------------------------------------
    def _new_band(self, geometry_type):
        band = QgsRubberBand(self.canvas(), geometry_type)
        band.setStrokeColor(OUTLINE)
        band.setFillColor(FILL)
        band.setWidth(2)
        if geometry_type == GEOMETRY_POINT:
            band.setIcon(QgsRubberBand.IconType.ICON_CROSS)
            band.setIconSize(14)
        return band

    def _redraw(self, hover=None):
        points = list(self.points) + ([hover] if hover is not None else [])
        self.band.reset(GEOMETRY_POLYGON)
        for i, point in enumerate(points):
            self.band.addPoint(point, i == len(points) - 1)

    def _show_result(self, geometry, crs=None):
        self._remove_result_band()
        self.result_band = self._new_band(geometry.type())
        if crs is not None and crs.isValid():
            self.result_band.setToGeometry(geometry, crs)  # reprojected to the canvas CRS
        else:
            self.result_band.setToGeometry(geometry)

    def show_region(self, geometry, crs):
        """Outline ``geometry`` (in ``crs``) as the finished region, e.g. one set by code."""
        self.geometry = QgsGeometry(geometry)
        self.crs = crs
        self._show_result(geometry, crs)

    def _remove_result_band(self):
        if self.result_band is not None:
            self.canvas().scene().removeItem(self.result_band)
            self.result_band = None

    # -- state --------------------------------------------------------------------------------
    def reset(self):
        """Forget the region being drawn (the finished region stays on the map)."""
        self.points = []
        self._press_pos = None
        self._dragging = False
        self.band.reset(GEOMETRY_POLYGON)

    def clear(self):
        """Forget everything, including the finished region and its outline."""
        self.reset()
        self._remove_result_band()
        self.geometry = None

    def remove_bands(self):
        """Take the rubber bands off the canvas for good (plugin unload)."""
        self.clear()
        if self.band is not None:
            self.canvas().scene().removeItem(self.band)
            self.band = None

    def finish(self, geometry=None):
        """End the drawing with ``geometry`` (default: from the clicked vertices)."""
        if geometry is None:
            geometry = self.geometry_from_points(self.points)
        self.reset()
        if geometry is None or geometry.isEmpty():
            return None
        self.geometry = geometry
        self.crs = self.canvas().mapSettings().destinationCrs()
        self._show_result(geometry)
        self.regionDrawn.emit(QgsGeometry(geometry), self.crs)
        return geometry

    @staticmethod
    def geometry_from_points(points):
        """One point: that point; two: their rectangle; more: the polygon; none: None."""
        if not points:
            return None
        if len(points) == 1:
            return QgsGeometry.fromPointXY(QgsPointXY(points[0]))
        if len(points) == 2:
            rect = QgsRectangle(points[0], points[1])
            if rect.isEmpty():
                return QgsGeometry.fromPointXY(QgsPointXY(points[0]))
            return QgsGeometry.fromRect(rect)
        polygon = QgsGeometry.fromPolygonXY([[QgsPointXY(p) for p in points]])
        if not polygon.isGeosValid():
            polygon = polygon.makeValid()
        return polygon

    # -- events -------------------------------------------------------------------------------
    def _is_click(self, pos):
        if self._press_pos is None:
            return True
        delta = pos - self._press_pos
        return abs(delta.x()) + abs(delta.y()) <= CLICK_TOLERANCE_PX

    def canvasPressEvent(self, event):  # noqa: N802 (QGIS API)
        if event.button() == Qt.MouseButton.LeftButton:
            self._press_pos = QPoint(event.pos())
            self._dragging = False

    def canvasMoveEvent(self, event):  # noqa: N802
        point = self.toMapCoordinates(event.pos())
        left_down = bool(event.buttons() & Qt.MouseButton.LeftButton)
        if left_down and not self.points and self._press_pos is not None \
                and not self._is_click(event.pos()):
            self._dragging = True
            start = self.toMapCoordinates(self._press_pos)
            self.band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(start, point)))
        elif self.points:
            self._redraw(hover=point)

    def canvasReleaseEvent(self, event):  # noqa: N802
        point = self.toMapCoordinates(event.pos())
        if event.button() == Qt.MouseButton.RightButton:
            self.finish()
        elif event.button() == Qt.MouseButton.LeftButton:
            if self._dragging and not self._is_click(event.pos()):
                start = self.toMapCoordinates(self._press_pos)
                self.finish(QgsGeometry.fromRect(QgsRectangle(start, point)))
                return
            self._press_pos = None
            self._dragging = False
            self.points.append(QgsPointXY(point))
            self._redraw()

    def keyPressEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.reset()
            self.drawingCancelled.emit()
            event.accept()
        elif event.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete) and self.points:
            self.points.pop()
            self._redraw()
            event.accept()
        else:
            event.ignore()

    def deactivate(self):
        self.reset()
        super().deactivate()
