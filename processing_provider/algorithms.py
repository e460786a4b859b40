"""The list of algorithms the provider offers."""


def all_algorithms():
    """Return a fresh instance of every algorithm of the provider."""
    from .segment import SegmentAlgorithm

    return [SegmentAlgorithm()]
