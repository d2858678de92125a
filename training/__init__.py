"""Training, fine-tuning, evaluation and phantom generation for CTSU-Net.

Imports the network, the label map and the preprocessing constants from ``algorithm``.
"""
