"""What is reported beside the mask: lobe volumes (``volumes``), per-lobe density measures
(``density``), quality flags (``quality_flags``) and the preview image (``preview``)."""
