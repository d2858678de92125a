"""CTSU-Net pulmonary lobe segmentation: the inference runtime.

    from algorithm import LobeSegmenter
    result = LobeSegmenter()(image)   # image: a SimpleITK CT in HU -> result.mask, result.report

This package never imports ``training``; it owns the network, the label map and the
preprocessing constants that training reuses.
"""

from algorithm.version import __version__

__all__ = ["LobeSegmenter", "SegmentationResult", "__version__"]


def __getattr__(name: str):
    # imported on first use: ``import algorithm.labels`` (and the console's --help) stay light
    if name in {"LobeSegmenter", "SegmentationResult"}:
        from algorithm import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'algorithm' has no attribute {name!r}")
