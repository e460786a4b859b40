"""A small Sentinel-1 GRD product in SAFE layout, made from the sample scene's sigma0.

Real GRD products are hundreds of megabytes; this one is a few hundred pixels, enough for
GDAL's SAFE driver to identify and open it, and for the plugin to calibrate it back::

    S1A_IW_GRDH_1SDV_<...>.SAFE/
        manifest.safe                                  XFDU manifest (what GDAL reads first)
        measurement/s1a-iw-grd-vv-<...>-001.tiff       uint16 DN, GCPs in EPSG:4326
        annotation/s1a-iw-grd-vv-<...>-001.xml         image size, geolocation grid (GCPs)
        annotation/calibration/calibration-s1a-iw-grd-vv-<...>-001.xml
                                                       sigmaNought, betaNought, gamma, dn LUTs

The calibration vectors hold ``A(pixel, line) = a + b*pixel + c*line + d*pixel*line`` (so
bilinear interpolation of the vectors gives ``A`` exactly at every pixel), and the digital
numbers are ``DN = round(A * sqrt(sigma0))``: calibrating back, ``sigma0 = DN^2 / A^2``, gives
the scene's sigma0 up to the rounding of DN. DN 0 is nodata (the scene's nodata frame).

The scene lies on the sample's UTM 31N grid (10 m pixels); the GCPs are that grid's pixel
corners in WGS 84 longitude and latitude, so warping the product back to UTM 31N puts each
pixel where the scene has it.

Examples
--------
>>> from seg_explainer.resources.sample import safe_product
>>> product = safe_product.write_safe("/tmp/s1", size=300)            # doctest: +SKIP
>>> product["folder"], product["manifest"], product["zip"]           # doctest: +SKIP
"""

import os
import zipfile

import numpy as np

#: LUT coefficients (a, b, c, d) of ``A = a + b*pixel + c*line + d*pixel*line`` per LUT;
#: sigmaNought grows across the swath as real products' do (lower incidence, larger A).
LUTS = {"sigmaNought": (1200.0, 1.5, 0.4, 0.002), "betaNought": (1100.0, 0.0, 0.0, 0.0),
        "gamma": (1000.0, 1.2, 0.3, 0.0015), "dn": (1100.0, 0.0, 0.0, 0.0)}
PRODUCT = "S1A_IW_GRDH_1SDV_20240101T060000_20240101T060025_051234_0ABCDE_1A2B.SAFE"
STEM = "s1a-iw-grd-{pol}-20240101t060000-20240101t060025-051234-0abcde-{n:03d}"


def lut_value(name, pixel, line):
    """``A(pixel, line)`` of the LUT ``name`` (any broadcastable arrays)."""
    a, b, c, d = LUTS[name]
    return a + b * np.asarray(pixel, float) + c * np.asarray(line, float) \
        + d * np.asarray(pixel, float) * np.asarray(line, float)


def digital_numbers(sigma0_db, valid):
    """uint16 DN of a sigma0 (dB) image: ``round(A * sqrt(sigma0))``; 0 where not ``valid``."""
    lines, pixels = np.mgrid[0:sigma0_db.shape[0], 0:sigma0_db.shape[1]]
    linear = np.power(10.0, np.where(valid, sigma0_db, -30.0).astype(np.float64) / 10.0)
    dn = np.round(lut_value("sigmaNought", pixels, lines) * np.sqrt(linear))
    dn = np.clip(dn, 1, 65535).astype(np.uint16)   # a valid pixel is never 0
    dn[~valid] = 0
    return dn


def sigma0_from_dn(dn):
    """sigma0 (linear) of ``dn`` with this product's LUT; NaN where DN is 0."""
    lines, pixels = np.mgrid[0:dn.shape[0], 0:dn.shape[1]]
    a = lut_value("sigmaNought", pixels, lines)
    out = dn.astype(np.float64) ** 2 / a ** 2
    return np.where(dn > 0, out, np.nan)


def _lonlat(scene, rows, cols):
    """WGS 84 (lon, lat) of pixel corners (rows, cols) of the scene's UTM grid."""
    from osgeo import osr

    x0, dx, _, y0, _, dy = scene["geotransform"]
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(scene["epsg"])
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(utm, wgs)
    pts = [(x0 + c * dx, y0 + r * dy) for r, c in zip(np.ravel(rows), np.ravel(cols))]
    return np.array(ct.TransformPoints(pts))[:, :2]


def geolocation_grid(scene, height, width, n=5):
    """``[(line, pixel, lon, lat)]``: an n x n grid of GCPs over the image, corners included."""
    lines, pixels = np.meshgrid(np.linspace(0, height, n), np.linspace(0, width, n),
                                indexing="ij")
    lonlat = _lonlat(scene, lines, pixels)
    return [(float(li), float(pi), float(lo), float(la))
            for li, pi, (lo, la) in zip(lines.ravel(), pixels.ravel(), lonlat)]


def _annotation(pol, n, height, width, gcps):
    points = "\n".join(
        f"      <geolocationGridPoint><azimuthTime>2024-01-01T06:00:{10 + li / height * 10:09.6f}"
        f"</azimuthTime><slantRangeTime>5.3e-03</slantRangeTime><line>{li:.0f}</line>"
        f"<pixel>{pi:.0f}</pixel><latitude>{la:.9f}</latitude><longitude>{lo:.9f}</longitude>"
        "<height>0</height><incidenceAngle>35</incidenceAngle><elevationAngle>31"
        "</elevationAngle></geolocationGridPoint>" for li, pi, lo, la in gcps)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<product>
  <adsHeader><missionId>S1A</missionId><productType>GRD</productType>
    <polarisation>{pol.upper()}</polarisation><mode>IW</mode><swath>IW</swath>
    <startTime>2024-01-01T06:00:00.000000</startTime><stopTime>2024-01-01T06:00:25.000000</stopTime>
    <absoluteOrbitNumber>51234</absoluteOrbitNumber><imageNumber>{n:03d}</imageNumber>
  </adsHeader>
  <imageAnnotation>
    <imageInformation>
      <rangePixelSpacing>1.000000e+01</rangePixelSpacing>
      <azimuthPixelSpacing>1.000000e+01</azimuthPixelSpacing>
      <numberOfSamples>{width}</numberOfSamples><numberOfLines>{height}</numberOfLines>
      <outputPixels>16 bit Unsigned Integer</outputPixels>
    </imageInformation>
    <processingInformation><ellipsoidName>WGS84</ellipsoidName>
      <ellipsoidSemiMajorAxis>6.378137e+06</ellipsoidSemiMajorAxis>
      <ellipsoidSemiMinorAxis>6.356752314245179e+06</ellipsoidSemiMinorAxis>
    </processingInformation>
  </imageAnnotation>
  <geolocationGrid><geolocationGridPointList count="{len(gcps)}">
{points}
  </geolocationGridPointList></geolocationGrid>
</product>
"""


def _calibration(pol, n, height, width, step=40, line_step=50):
    """Calibration vectors every ``line_step`` lines (one before the first line and one past
    the last, as real products have) at pixels 0, step, ..., width - 1."""
    pixels = np.unique(np.r_[np.arange(0, width, step), width - 1])
    lines = np.r_[np.arange(-line_step // 2, height, line_step), height + line_step // 2]
    vectors = []
    for line in lines:
        luts = "".join(
            f"<{name} count=\"{len(pixels)}\">"
            + " ".join(f"{v:.6e}" for v in lut_value(name, pixels, line)) + f"</{name}>"
            for name in LUTS)
        vectors.append(
            f"    <calibrationVector><azimuthTime>2024-01-01T06:00:10.000000</azimuthTime>"
            f"<line>{line}</line><pixel count=\"{len(pixels)}\">"
            + " ".join(str(p) for p in pixels) + f"</pixel>{luts}</calibrationVector>")
    body = "\n".join(vectors)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<calibration>
  <adsHeader><missionId>S1A</missionId><productType>GRD</productType>
    <polarisation>{pol.upper()}</polarisation><mode>IW</mode><swath>IW</swath>
    <startTime>2024-01-01T06:00:00.000000</startTime><stopTime>2024-01-01T06:00:25.000000</stopTime>
    <imageNumber>{n:03d}</imageNumber></adsHeader>
  <calibrationInformation><absoluteCalibrationConstant>1.0</absoluteCalibrationConstant>
  </calibrationInformation>
  <calibrationVectorList count="{len(lines)}">
{body}
  </calibrationVectorList>
</calibration>
"""


def _manifest(units):
    """XFDU manifest: one Measurement Data Unit per (pol, stem), with its annotation and
    calibration metadata objects, as GDAL's SAFE driver follows them."""
    content, metadata, data = [], [], []
    for pol, stem in units:
        key = stem.replace("-", "")
        content.append(
            f'      <xfdu:contentUnit unitType="Measurement Data Unit" '
            f'repID="s1Level1MeasurementSchema" dmdID="product{key} calibration{key}">\n'
            f'        <dataObjectPointer dataObjectID="{key}"/>\n      </xfdu:contentUnit>')
        for kind in ("product", "calibration"):
            metadata.append(
                f'    <metadataObject ID="{kind}{key}" classification="DESCRIPTION" '
                f'category="DMD"><dataObjectPointer dataObjectID="{kind}{key}"/>'
                "</metadataObject>")
        files = (("product", "s1Level1ProductSchema", f"annotation/{stem}.xml", "text/xml"),
                 ("calibration", "s1Level1CalibrationSchema",
                  f"annotation/calibration/calibration-{stem}.xml", "text/xml"),
                 ("", "s1Level1MeasurementSchema", f"measurement/{stem}.tiff",
                  "application/octet-stream"))
        for kind, rep, href, mime in files:
            data.append(
                f'    <dataObject ID="{kind}{key}" repID="{rep}"><byteStream mimeType="{mime}">'
                f'<fileLocation locatorType="URL" href="./{href}"/></byteStream></dataObject>')
    nl = "\n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1"
  xmlns:safe="http://www.esa.int/safe/sentinel-1.0"
  xmlns:s1="http://www.esa.int/safe/sentinel-1.0/sentinel-1"
  xmlns:s1sarl1="http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1"
  version="esa/safe/sentinel-1.0/sentinel-1/sar/level-1/standard">
  <informationPackageMap>
    <xfdu:contentUnit unitType="SAFE Archive Information Package" ID="packageUnit">
{nl.join(content)}
    </xfdu:contentUnit>
  </informationPackageMap>
  <metadataSection>
{nl.join(metadata)}
    <metadataObject ID="platform" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Platform Description">
        <xmlData><safe:platform><safe:familyName>SENTINEL-1</safe:familyName>
          <safe:number>A</safe:number><safe:instrument>
          <safe:familyName abbreviation="SAR">Synthetic Aperture Radar</safe:familyName>
          <safe:extension><s1sarl1:instrumentMode><s1sarl1:mode>IW</s1sarl1:mode>
          <s1sarl1:swath>IW</s1sarl1:swath></s1sarl1:instrumentMode></safe:extension>
          </safe:instrument></safe:platform></xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="acquisitionPeriod" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Acquisition Period">
        <xmlData><safe:acquisitionPeriod><safe:startTime>2024-01-01T06:00:00.000000</safe:startTime>
          <safe:stopTime>2024-01-01T06:00:25.000000</safe:stopTime></safe:acquisitionPeriod></xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="processing" classification="PROVENANCE" category="PDI">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Processing">
        <xmlData><safe:processing name="seg_explainer sample"><safe:facility name="seg_explainer"/>
        </safe:processing></xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="measurementOrbitReference" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Orbit Reference">
        <xmlData><safe:orbitReference><safe:orbitNumber type="start">51234</safe:orbitNumber>
          <safe:extension><s1:orbitProperties><s1:pass>DESCENDING</s1:pass></s1:orbitProperties>
          </safe:extension></safe:orbitReference></xmlData>
      </metadataWrap>
    </metadataObject>
  </metadataSection>
  <dataObjectSection>
{nl.join(data)}
  </dataObjectSection>
</xfdu:XFDU>
"""


def _write_measurement(path, dn, gcps):
    from osgeo import gdal, osr

    gdal.UseExceptions()
    ds = gdal.GetDriverByName("GTiff").Create(path, dn.shape[1], dn.shape[0], 1,
                                              gdal.GDT_UInt16)
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    ds.SetGCPs([gdal.GCP(lo, la, 0.0, pi, li, "", str(i + 1))
                for i, (li, pi, lo, la) in enumerate(gcps)], wgs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(dn)
    ds = None


def write_safe(out_dir, seed=None, size=300, polarisations=("vv",), zip_it=True):
    """Write a SAFE-like GRD product of the sample scene (and a .zip of it).

    Parameters
    ----------
    out_dir : str or path-like
        Folder that receives the ``.SAFE`` folder and the ``.zip``.
    seed : int, optional
        Scene seed (default the sample's, :data:`.scene.DEFAULT_SEED`).
    size : int
        Scene edge in pixels.
    polarisations : sequence of str
        One measurement per polarisation (``"vv"``, ``"vh"``...). The first is the scene's
        sigma0; every further one is the scene 6 dB darker (a cross-polarisation stand-in).
    zip_it : bool
        Also write ``<product>.zip`` holding the ``.SAFE`` folder, as products are downloaded.

    Returns
    -------
    dict
        ``"folder"``, ``"manifest"``, ``"zip"`` (None without ``zip_it``): paths;
        ``"sigma0_db"``: ``{pol: float32 [H, W]}`` the sigma0 each measurement was made from
        (NaN = nodata); ``"dn"``: ``{pol: uint16 [H, W]}``; ``"scene"``: the scene dict
        (:func:`.scene.generate_scene`); ``"gcps"``: ``[(line, pixel, lon, lat)]``.
    """
    from . import scene as scene_module

    seed = scene_module.DEFAULT_SEED if seed is None else int(seed)
    scene = scene_module.generate_scene(seed, size)
    valid = scene["valid"]
    folder = os.path.join(os.fspath(out_dir), PRODUCT)
    for sub in ("measurement", "annotation/calibration"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    height, width = valid.shape
    gcps = geolocation_grid(scene, height, width)
    units, sigma0, dns = [], {}, {}
    for n, pol in enumerate(polarisations, start=1):
        pol = pol.lower()
        stem = STEM.format(pol=pol, n=n)
        db = scene["sigma0_db"] - (0.0 if n == 1 else 6.0)
        dn = digital_numbers(db, valid)
        sigma0[pol] = np.where(valid, db, np.nan).astype(np.float32)
        dns[pol] = dn
        _write_measurement(os.path.join(folder, "measurement", f"{stem}.tiff"), dn, gcps)
        with open(os.path.join(folder, "annotation", f"{stem}.xml"), "w") as f:
            f.write(_annotation(pol, n, height, width, gcps))
        with open(os.path.join(folder, "annotation", "calibration",
                               f"calibration-{stem}.xml"), "w") as f:
            f.write(_calibration(pol, n, height, width))
        units.append((pol, stem))
    manifest = os.path.join(folder, "manifest.safe")
    with open(manifest, "w") as f:
        f.write(_manifest(units))
    archive = None
    if zip_it:
        archive = folder[:-len(".SAFE")] + ".zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for root, _, names in os.walk(folder):
                for name in sorted(names):
                    full = os.path.join(root, name)
                    z.write(full, os.path.relpath(full, os.path.dirname(folder)))
    return {"folder": folder, "manifest": manifest, "zip": archive, "sigma0_db": sigma0,
            "dn": dns, "scene": scene, "gcps": gcps}
