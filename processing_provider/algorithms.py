"""The list of algorithms the provider offers."""


def all_algorithms():
    """Return a fresh instance of every algorithm of the provider."""
    from .explain import ExplainOcclusionAlgorithm, ExplainRiseAlgorithm, ExplainShapAlgorithm
    from .explain_regions import ExplainRegionsAlgorithm
    from .segment import SegmentAlgorithm

    return [SegmentAlgorithm(), ExplainShapAlgorithm(), ExplainRiseAlgorithm(),
            ExplainOcclusionAlgorithm(), ExplainRegionsAlgorithm()]
