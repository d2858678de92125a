"""Datasets and import: labelled cases and their splits (``cases``), the public data sets' layouts
and their import (``dataset_layouts``, ``import_case``, ``import_dataset``, ``label_maps``,
``case_selection``, ``layout_writers``), and the training sample stream (``samples``: the
preprocessed cache, augmentation, ``scanner_sim``, the border reference of ``borders``).

Depends on ``algorithm`` and ``training.config`` only; the loop, evaluation and realism build on it.
"""
