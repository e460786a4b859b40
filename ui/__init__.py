"""Widgets: the dock and the region-of-interest map tool. They run the Processing algorithms."""
