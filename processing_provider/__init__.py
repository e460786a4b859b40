"""Processing provider and algorithms: QGIS parameters in, core calls, layers out."""
