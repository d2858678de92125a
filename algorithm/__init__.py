"""CTSU-Net pulmonary lobe segmentation: the inference runtime.

This package never imports ``training``; it owns the network, the label map and the
preprocessing constants that training reuses.
"""

__version__ = "0.1.0"
