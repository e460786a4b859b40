"""segexplainer:explain_regions: explain every feature of a layer of regions, on Dask.

The work is one call of ``core.regions.explain_regions``: a local Dask cluster by default,
an existing one given its scheduler address, or this process (``SCHEDULER=serial``). The
summary layer (``<OUTPUT_FOLDER>/regions.gpkg``) loads coloured by the share of the excitation
that lies inside each region: its own signature, or context.
"""

import os

from qgis.core import (QgsGeometry, QgsProcessing, QgsProcessingAlgorithm,
                       QgsProcessingContext, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingOutputLayerDefinition,
                       QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination, QgsProperty,
                       QgsRuleBasedRenderer, QgsSymbol, QgsWkbTypes)

from .common import (RasterInputParameter, band_numbers, bands_parameter, feedback_callbacks,
                     forget_outputs, layer_file, model_parameter, raster_input, run_guarded)
from .compat import (ADVANCED, NUMBER_INTEGER, SOURCE_ANY_GEOMETRY, SOURCE_POINT,
                     SOURCE_POLYGON, enum_value)
from .parameters import (EXPLAIN_METHODS, check_values, definition, for_algorithm, form_value,
                         help_html)

_ALIVE = []   # post-processors must outlive the run

#: (label, expression, colour) of the summary layer's classes, drawn in this order.
SHARE_CLASSES = (
    ("Own signature (most excitation inside the region)",
     "\"status\" = 'done' AND \"own_share\" >= 0.6", "#2c7bb6"),
    ("Mixed", "\"status\" = 'done' AND \"own_share\" >= 0.4 AND \"own_share\" < 0.6",
     "#ffffbf"),
    ("Context (most excitation outside the region)",
     "\"status\" = 'done' AND (\"own_share\" < 0.4 OR \"own_share\" IS NULL)", "#d7191c"),
    ("Failed (see message)", "\"status\" <> 'done'", "#969696"),
)


def all_method_parameters():
    """The declarations of every explanation method's parameters, each once, in form order."""
    seen, out = set(), []
    for method in EXPLAIN_METHODS:
        for decl in for_algorithm(method):
            if decl.name not in seen:
                seen.add(decl.name)
                out.append(decl)
    return out


class ExplainRegionsAlgorithm(QgsProcessingAlgorithm):
    """Explain every region of a layer, locally or on a Dask cluster."""

    REGIONS = "REGIONS"
    INPUT = "INPUT"
    RASTER_FIELD = "RASTER_FIELD"
    BANDS = "BANDS"
    MODEL = "MODEL"
    CLASS = "CLASS"
    METHOD = "METHOD"
    FAITHFULNESS = "FAITHFULNESS"
    REPORTS = "REPORTS"
    SCHEDULER = "SCHEDULER"
    WORKERS = "WORKERS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT = "OUTPUT"

    def name(self):
        return "explain_regions"

    def displayName(self):  # noqa: N802
        return "Explain many regions (local or Dask cluster)"

    def group(self):
        return "Explain many regions"

    def groupId(self):  # noqa: N802
        return "explain_many"

    def createInstance(self):  # noqa: N802
        return ExplainRegionsAlgorithm()

    def shortHelpString(self):  # noqa: N802
        return (
            "<p>Explains every feature of REGIONS (polygons or points; each one separately) "
            "with one METHOD, exactly as the single-region algorithms do for the same "
            "parameters and seed. Each feature's raster is INPUT, or the file named in its "
            "RASTER_FIELD (for detections across many scenes).</p>"
            "<p>Writes OUTPUT_FOLDER/regions.gpkg (or the GeoPackage OUTPUT names), one feature "
            "per region: scene, status and "
            "message, prediction, base value, sum of contributions (SHAP), own_share (the share "
            "of the excitation inside the region: near 1 the region's own signature, near 0 "
            "context such as a ship or a wind shadow), the strongest excitation and "
            "inhibition cells, deletion/insertion AUC (FAITHFULNESS steps, 0 = off), "
            "evaluations, seconds and the paths of its rasters, then the region's own fields "
            "(a name the summary has gets the prefix input_). Each region's rasters and cells "
            "are in OUTPUT_FOLDER/regions/&lt;id&gt;-&lt;key&gt;/.</p>"
            "<p>A failing region is recorded with its message; the others go on. Re-running with "
            "the same parameters skips the regions already complete. Cancel keeps the complete "
            "regions.</p>"
            "<p>SCHEDULER: empty = a local Dask cluster, one worker process per core; "
            "tcp://host:8786 = an existing Dask cluster (its workers need numpy, GDAL, "
            "onnxruntime and shapely, not QGIS; they must read the rasters and OUTPUT_FOLDER "
            "at the same paths); 'serial' = this process, without Dask. Dask is optional: "
            "pip install dask distributed.</p>" + help_html_all())

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            method = EXPLAIN_METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
            ok, message = check_values(self, method, parameters, context)
        return ok, message

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REGIONS, "Regions (polygons or points, each explained)",
            [SOURCE_POLYGON, SOURCE_POINT]))
        self.addParameter(RasterInputParameter(
            self.INPUT, "Raster (for every region without a raster field)", optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.RASTER_FIELD, "Field with each region's raster file", None, self.REGIONS,
            optional=True))
        self.addParameter(bands_parameter(self.BANDS, self.INPUT))
        self.addParameter(model_parameter(self.MODEL))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS, "Class to explain (name or index from the model's metadata)"))
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, "Method", options=["Kernel SHAP (hexagons)", "RISE",
                                            "Multi-scale occlusion"], defaultValue=0))
        for decl in all_method_parameters():
            self.addParameter(definition(decl))
        self.addParameter(QgsProcessingParameterNumber(
            self.FAITHFULNESS, "Deletion/insertion AUC steps (0 = off)", NUMBER_INTEGER,
            defaultValue=0, minValue=0, maxValue=1000))
        reports = QgsProcessingParameterBoolean(self.REPORTS, "Report figure per region",
                                                defaultValue=False)
        reports.setFlags(reports.flags() | ADVANCED)
        self.addParameter(reports)
        self.addParameter(QgsProcessingParameterString(
            self.SCHEDULER, "Dask scheduler (empty = local cluster; tcp://host:8786; serial)",
            optional=True))
        workers = QgsProcessingParameterNumber(
            self.WORKERS, "Local workers (0 = one per core)", NUMBER_INTEGER, defaultValue=0,
            minValue=0)
        workers.setFlags(workers.flags() | ADVANCED)
        self.addParameter(workers)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Output folder"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Summary of the regions (GeoPackage; temporary or empty: regions.gpkg "
            "in the output folder)", SOURCE_ANY_GEOMETRY, optional=True, createByDefault=True))
        for key, label in [("N_DONE", "Regions explained"), ("N_FAILED", "Regions failed"),
                           ("N_SKIPPED", "Regions already complete")]:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    # -- main thread: copy the regions out of the layer ---------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.regions import Region

        source = self.parameterAsSource(parameters, self.REGIONS, context)
        if source is None:
            raise QgsProcessingException("REGIONS: no region layer was given. Choose a polygon "
                                         "or point layer.")
        self._raster = raster_input(self, parameters, context)[0] \
            if parameters.get(self.INPUT) else None
        field = self.parameterAsString(parameters, self.RASTER_FIELD, context)
        if not field and self._raster is None:
            raise QgsProcessingException("INPUT: give a raster, or a RASTER_FIELD naming each "
                                         "region's raster file.")
        self._crs = source.sourceCrs().toWkt(
            enum_value("Qgis.CrsWktVariant.Preferred",
                       "QgsCoordinateReferenceSystem.WktVariant.WKT_PREFERRED"))
        self._regions, self._no_geometry = [], []
        self._regions_path = layer_file(self.parameterAsVectorLayer(parameters, self.REGIONS,
                                                                    context))
        names = source.fields().names()
        for feature in source.getFeatures():
            geom = feature.geometry()
            if geom.isNull() or geom.isEmpty():
                self._no_geometry.append(int(feature.id()))
                continue
            if QgsWkbTypes.isCurvedType(geom.wkbType()):      # arcs: as their segments
                geom = QgsGeometry(geom.constGet().segmentize())
            raster = str(feature[field] or "") if field else None
            self._regions.append(Region(
                id=int(feature.id()), wkb=bytes(geom.asWkb()), raster=raster,
                attributes=tuple(zip(names, map(field_value, feature.attributes())))))
        if not self._regions:
            raise QgsProcessingException("REGIONS: the layer has no features with a geometry "
                                         "(or none are selected).")
        self._bands = band_numbers(self, parameters, context, self.BANDS)
        self._summary, self._load_summary = self._summary_destination(parameters, context)
        return True

    def _summary_destination(self, parameters, context):
        """``(path or None, load)``: the summary's file when OUTPUT names one (None: the
        output folder's regions.gpkg), and whether QGIS should load it when the run ends
        (not when OUTPUT comes without a project to load into: the batch dialog's "Load
        layers on completion" or the dialog's "Open output file" unchecked)."""
        raw = parameters.get(self.OUTPUT)
        load = not (isinstance(raw, QgsProcessingOutputLayerDefinition)
                    and raw.destinationProject is None)
        sink = raw.sink if isinstance(raw, QgsProcessingOutputLayerDefinition) else raw
        if isinstance(sink, QgsProperty) and sink.propertyType() == enum_value(
                "Qgis.PropertyType.Static", "QgsProperty.Type.StaticProperty"):
            sink = sink.staticValue()
        if sink is None or (isinstance(sink, str) and sink.strip() in (
                "", QgsProcessing.TEMPORARY_OUTPUT)):
            return None, load
        path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        forget_outputs(context, [path])        # loaded (or not) by _explain, styled
        return path or None, load

    # -- worker thread --------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        return run_guarded(lambda: self._explain(parameters, context, feedback, folder),
                           context, feedback, [], noun="Explanation of the regions",
                           memory_message="Not enough memory. Lower WINDOW or BATCH_SIZE, or "
                                          "use fewer WORKERS.")

    def _explain(self, parameters, context, feedback, folder):
        from ..core.regions import explain_regions, method_parameters

        method = EXPLAIN_METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        values = {decl.name: decl.from_form(form_value(self, decl, parameters, context))
                  for decl in for_algorithm(method)}
        n_threads = values.pop("n_threads")
        window = values.pop("window")
        params = {k: v for k, v in values.items() if k in method_parameters(method)}
        scheduler = self.parameterAsString(parameters, self.SCHEDULER, context).strip() or None
        model = self.parameterAsFile(parameters, self.MODEL, context)
        progress, cancel = feedback_callbacks(feedback)
        if self._no_geometry:
            ids = ", ".join(str(i) for i in self._no_geometry[:10])
            more = ", ..." if len(self._no_geometry) > 10 else ""
            feedback.pushWarning(f"{len(self._no_geometry)} feature(s) of REGIONS have no "
                                 f"geometry and are left out (feature id {ids}{more}).")
        run = explain_regions(
            self._regions, model, self.parameterAsString(parameters, self.CLASS, context),
            method, folder, raster=self._raster, crs_wkt=self._crs, bands=self._bands,
            window=window, faithfulness=self.parameterAsInt(parameters, self.FAITHFULNESS,
                                                            context),
            report=self.parameterAsBoolean(parameters, self.REPORTS, context),
            n_threads=n_threads, scheduler=scheduler,
            n_workers=self.parameterAsInt(parameters, self.WORKERS, context) or None,
            progress=progress, cancel=cancel,
            log=lambda kind, text: (feedback.pushWarning if kind == "warning"
                                    else feedback.pushInfo)(text),
            regions_path=self._regions_path, summary_path=self._summary, **params)
        feedback.pushInfo(f"{run.n_done} region(s) explained, {run.n_failed} failed, "
                          f"{run.n_skipped} already complete, in {run.seconds:.1f} s on "
                          f"{run.n_workers} worker(s). Summary: {run.summary_path}")
        if run.cancelled:
            from ..core.interrupt import requested

            complete = (f"{len(run.records)} of {len(self._regions)} regions are complete; run "
                        "again with the same parameters to explain the others.")
            if requested():       # qgis_process got SIGINT/SIGTERM: the run fails
                raise QgsProcessingException(
                    f"Explanation of the regions stopped by {requested()}: {complete}")
            feedback.reportError(f"Cancelled: {complete}")
        elif run.n_failed and not run.n_done and not run.n_skipped:
            first = next(r for r in run.records if r.get("status") != "done")
            raise QgsProcessingException(
                f"No region could be explained: all {run.n_failed} failed. The first (feature "
                f"{first.get('region_id')}): {first.get('message')} The summary "
                f"{run.summary_path} gives each region's message.")
        if self._load_summary:
            details = QgsProcessingContext.LayerDetails(
                f"Regions: {method}", context.project(), self.OUTPUT)
            processor = RegionsStyle()
            _ALIVE.append(processor)
            del _ALIVE[:-64]
            details.setPostProcessor(processor)
            context.addLayerToLoadOnCompletion(run.summary_path, details)
        return {self.OUTPUT: run.summary_path, self.OUTPUT_FOLDER: folder,
                "N_DONE": run.n_done, "N_FAILED": run.n_failed, "N_SKIPPED": run.n_skipped}


def field_value(value):
    """A QGIS attribute value as the summary stores it (:func:`~..core.regions.plain_value`):
    NULL as None, dates and times as ISO 8601 text."""
    from qgis.PyQt.QtCore import QDate, QDateTime, Qt, QTime, QVariant

    from ..core.regions import plain_value

    if isinstance(value, QVariant):
        value = None if value.isNull() else value.value()
    if isinstance(value, (QDate, QDateTime, QTime)):
        value = value.toString(Qt.DateFormat.ISODate) if value.isValid() else None
    return plain_value(value)


def help_html_all():
    """Every method's parameters, for the help panel."""
    return "".join(f"<p><b>{method}</b></p>{help_html(method)}" for method in EXPLAIN_METHODS)


def share_renderer(geometry_type):
    """Rule-based renderer of the summary layer: :data:`SHARE_CLASSES`."""
    from qgis.PyQt.QtGui import QColor

    root = QgsRuleBasedRenderer.Rule(None)
    for label, expression, colour in SHARE_CLASSES:
        symbol = QgsSymbol.defaultSymbol(geometry_type)
        symbol.setColor(QColor(colour))
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expression, label))
    return QgsRuleBasedRenderer(root)


class RegionsStyle(QgsProcessingLayerPostProcessorInterface):
    """Colours the summary layer by own_share when QGIS loads it (main thread)."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        layer.setRenderer(share_renderer(layer.geometryType()))
        folder = os.path.dirname(layer.source().split("|")[0])
        layer.setName(f"Regions explained ({os.path.basename(folder)})")
        layer.triggerRepaint()
