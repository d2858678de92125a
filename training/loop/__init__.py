"""The training loop: the model's steps and losses (``steps``, ``losses``, ``ohem``), the run
(``train``: checkpoints, validation, curves), and a checkpoint's ways out (``export`` to the shipped
format, ``infer``/``predict`` through the shipped pipeline).

Everything that holds a model being trained; reads ``training.data`` and scores with
``training.evaluation``.
"""
