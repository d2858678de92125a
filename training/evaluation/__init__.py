"""Evaluation: per-lobe IoU and HD95 (``metrics``) and the ``training evaluate`` report of
predicted masks against references (``evaluate``).

No model and no torch: benchmarks and the training loop's validation import the metrics from here.
"""
