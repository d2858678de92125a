"""Realism: how close the phantoms are to real CT scans.

``real_scans`` is the one loader of the real scans (and defines ``REAL_DIR``); ``classifier`` is the
real-against-phantom classifier (``python -m training.realism.classifier``); ``report`` writes the
side-by-side study (``python -m training.realism``).
"""
