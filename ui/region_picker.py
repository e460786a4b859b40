"""The dock's "Region of interest" box: a region drawn on the map (the RoI map tool) or the
features of a polygon or point layer."""

from qgis.core import (QgsFeature, QgsGeometry, QgsProcessingFeatureSourceDefinition,
                       QgsProject, QgsVectorLayer)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QGroupBox, QLabel, QPushButton,
                                 QRadioButton, QVBoxLayout)

from ..processing_provider.compat import FILTER_POINT, FILTER_POLYGON, GEOMETRY_POINT, \
    layer_filters

DRAW_HINT = ("Draw a region of interest (toolbar: 'Draw region of interest'; left click adds "
             "vertices, right click finishes, Esc cancels, one click = one pixel), or choose a "
             "layer's features.")


class RegionPicker(QGroupBox):
    """Drawn region or a layer's features.

    ``canvas`` is a callable giving the map canvas (None without a GUI); ``draw_action`` the
    toolbar action the map tool checks while it is active.

    Signals
    -------
    changed()
        The choice or the region changed.
    """

    changed = pyqtSignal()

    def __init__(self, canvas, parent=None):
        super().__init__("Region of interest", parent)
        self.canvas = canvas
        self.geometry = None
        self.crs = None
        self.map_tool = None
        self.draw_action = None
        box = QVBoxLayout(self)
        self.drawn_radio = QRadioButton("Drawn region")
        self.layer_radio = QRadioButton("Features of a layer")
        self.buttons = QButtonGroup(self)
        self.buttons.addButton(self.drawn_radio, 0)
        self.buttons.addButton(self.layer_radio, 1)
        self.drawn_radio.setChecked(True)
        self.drawn_radio.toggled.connect(self.changed)
        box.addWidget(self.drawn_radio)
        self.draw_button = QPushButton("Draw region of interest")
        self.draw_button.setToolTip("Left click adds a vertex, right click finishes, Esc "
                                    "cancels. A single click gives one pixel; two clicks, a "
                                    "rectangle; or press, drag and release for a rectangle.")
        self.draw_button.clicked.connect(self.start_drawing)
        box.addWidget(self.draw_button)
        self.label = QLabel("No region drawn yet.")
        self.label.setWordWrap(True)
        box.addWidget(self.label)
        box.addWidget(self.layer_radio)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(layer_filters(FILTER_POLYGON, FILTER_POINT))
        self.layer_combo.setToolTip("A polygon or point layer: the union of its features is "
                                    "the region (reprojected to the raster's CRS).")
        self.layer_combo.layerChanged.connect(self.changed)
        self.layer_combo.activated.connect(self._layer_chosen)
        box.addWidget(self.layer_combo, 1)
        self.selected_only = QCheckBox("Selected features only")
        self.selected_only.toggled.connect(self.changed)
        box.addWidget(self.selected_only)

    # -- drawing --------------------------------------------------------------------------------
    def ensure_map_tool(self):
        """The "Draw region of interest" map tool (created on first use)."""
        if self.map_tool is None:
            canvas = self.canvas()
            if canvas is None:
                return None
            from .map_tool import RegionMapTool

            self.map_tool = RegionMapTool(canvas)
            self.map_tool.regionDrawn.connect(self.set_region)
            self.map_tool.drawingCancelled.connect(
                lambda: self.label.setText(self.text() + " (drawing cancelled)"))
            if self.draw_action is not None:
                self.map_tool.setAction(self.draw_action)
        return self.map_tool

    def start_drawing(self):
        tool = self.ensure_map_tool()
        if tool is None:
            return None
        self.drawn_radio.setChecked(True)
        self.canvas().setMapTool(tool)
        self.canvas().setFocus()
        return tool

    def set_region(self, geometry, crs):
        """Use ``geometry`` (in ``crs``) as the drawn region of interest."""
        self.geometry = QgsGeometry(geometry)
        self.crs = crs
        tool = self.map_tool
        if tool is not None and (tool.geometry is None or not tool.geometry.equals(geometry)):
            tool.show_region(geometry, crs)  # a region set by code: outline it too
        self.drawn_radio.setChecked(True)
        self.label.setText(self.text())
        self.changed.emit()

    def remove_map_tool(self):
        """Take the map tool off the canvas and delete it (plugin unload)."""
        if self.map_tool is None:
            return
        canvas = self.canvas()
        if canvas is not None and canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)
        self.map_tool.remove_bands()
        self.map_tool.deleteLater()
        self.map_tool = None

    def text(self):
        """The drawn region in words."""
        geom = self.geometry
        if geom is None or geom.isEmpty():
            return "No region drawn yet."
        authid = self.crs.authid() if self.crs else ""
        if geom.type() == GEOMETRY_POINT:
            p = geom.asPoint()
            return f"Drawn point (one pixel) at {p.x():.1f}, {p.y():.1f} ({authid})."
        return f"Drawn polygon of {area_text(geom, self.crs)} ({authid})."

    def _layer_chosen(self, _index):
        """The user picked a region layer (not a layer added to the project): use it."""
        if self.layer_combo.currentLayer() is not None:
            self.layer_radio.setChecked(True)
        self.changed.emit()

    # -- the value ------------------------------------------------------------------------------
    def problem(self):
        """What stops a run, as a sentence (None when a region is chosen)."""
        if self.drawn_radio.isChecked():
            return DRAW_HINT if self.geometry is None else None
        layer = self.layer_combo.currentLayer()
        if layer is None:
            return "Choose a polygon or point layer for the region of interest."
        if self.selected_only.isChecked() and layer.selectedFeatureCount() == 0:
            return "No feature of the region layer is selected."
        return None

    def outline(self):
        """``(geometry, CRS)`` of the region as it stands (drawn, or the layer's chosen
        features united), or None."""
        if self.drawn_radio.isChecked():
            if self.geometry is None or self.geometry.isEmpty():
                return None
            return QgsGeometry(self.geometry), self.crs
        layer = self.layer_combo.currentLayer()
        if layer is None:
            return None
        selected = self.selected_only.isChecked()
        features = layer.getSelectedFeatures() if selected else layer.getFeatures()
        geoms = [QgsGeometry(f.geometry()) for f in features if f.hasGeometry()]
        return (QgsGeometry.unaryUnion(geoms), layer.crs()) if geoms else None

    def parameter(self):
        """``(ROI parameter value, (outline geometry, its CRS), problem)``. A drawn region is
        handed to the algorithm as a memory layer only the run holds; a layer's features by
        the layer's id (the run copies them when it starts)."""
        if self.drawn_radio.isChecked():
            if self.geometry is None or self.geometry.isEmpty():
                return None, None, ("Draw a region of interest (toolbar button 'Draw region of "
                                    "interest': left click adds vertices, right click "
                                    "finishes; one click = one pixel), or choose a layer's "
                                    "features.")
            layer = region_memory_layer(self.geometry, self.crs)
            return layer, self.outline(), None
        layer = self.layer_combo.currentLayer()
        if layer is None:
            return None, None, "Choose a polygon or point layer for the region of interest."
        selected = self.selected_only.isChecked()
        if selected and layer.selectedFeatureCount() == 0:
            return None, None, (f"No feature of '{layer.name()}' is selected; select some, or "
                                "untick 'Selected features only'.")
        outline = self.outline()
        if outline is None:
            return None, None, f"The layer '{layer.name()}' has no features with a geometry."
        return QgsProcessingFeatureSourceDefinition(layer.id(), selected), outline, None


def region_memory_layer(geometry, crs, name="region of interest"):
    """A memory layer holding ``geometry`` (polygon or point) in ``crs``: a drawn region as
    the algorithm's ROI (never added to the project; the outline written with the results
    is)."""
    is_point = geometry.type() == GEOMETRY_POINT
    kind = "MultiPoint" if is_point and geometry.isMultipart() else \
        "Point" if is_point else "MultiPolygon"
    layer = QgsVectorLayer(kind, name, "memory")
    if crs is not None:
        layer.setCrs(crs)
    geom = QgsGeometry(geometry)
    if not is_point:
        geom.convertToMultiType()
    feature = QgsFeature()
    feature.setGeometry(geom)
    layer.dataProvider().addFeatures([feature])
    layer.updateExtents()
    return layer


def area_text(geometry, crs):
    """The area of ``geometry`` (in ``crs``) on the ellipsoid: "3 200 m2", "1.25 km2"."""
    from qgis.core import QgsDistanceArea

    measure = QgsDistanceArea()
    if crs is not None and crs.isValid():
        measure.setSourceCrs(crs, QgsProject.instance().transformContext())
        measure.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
    area = measure.measureArea(geometry)
    if area >= 1e6:
        return f"{area / 1e6:.3g} km\u00b2"
    return f"{area:,.0f} m\u00b2"
