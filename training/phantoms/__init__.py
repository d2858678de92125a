"""Synthetic chest CT phantoms with lobe references (issue 3).

``generate_case(seed, options)`` makes one case; ``write_dataset`` writes a batch as
``images/NAME.mha``, ``labels/NAME.mha`` and ``cases.csv``; ``python -m training phantoms`` is the
command line. Everything is drawn from the seed: same seed and options, same bytes.
"""

from .config import PATHOLOGIES, PhantomOptions
from .generate import PhantomCase, generate_case

__all__ = ["PATHOLOGIES", "PhantomCase", "PhantomOptions", "generate_case", "write_dataset"]


def __getattr__(name: str):
    if name == "write_dataset":  # lazy: keeps ``import training.phantoms`` light
        from .dataset import write_dataset

        return write_dataset
    raise AttributeError(name)
