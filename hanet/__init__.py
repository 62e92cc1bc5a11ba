"""hanet: Height-driven Attention Networks (HANet, CVPR 2020) for urban-scene segmentation."""
__version__ = "0.1.0"
