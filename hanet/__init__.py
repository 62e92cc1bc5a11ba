"""hanet: Height-driven Attention Networks (HANet, CVPR 2020) for urban-scene segmentation."""
__version__ = "0.1.0"

__all__ = ["Segmenter", "SegmentationResult"]


def __getattr__(name):
    # Lazy: `import hanet` stays light (no torch import); hanet.Segmenter loads on first use.
    if name in ("Segmenter", "SegmentationResult"):
        from hanet import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'hanet' has no attribute {name!r}")
