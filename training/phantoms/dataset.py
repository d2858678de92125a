"""Write a batch of phantoms: ``images/NAME.mha`` (int16), ``labels/NAME.mha`` (uint8), ``cases.csv``.

Every file is written under a temporary name and renamed into place, so an interrupted run never
leaves a truncated image under a final name.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import SimpleITK as sitk
from tqdm import tqdm

from algorithm.io.atomic import atomic_path

from .config import PhantomOptions, stream
from .generate import generate_case


def _atomic_image(image: sitk.Image, path: Path) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def _atomic_csv(rows: list[dict], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def case_options(
    seed: int, options: PhantomOptions, pathologies: Sequence[str] | None, index: int | None = None
) -> PhantomOptions:
    """The options of one case when the batch allows several pathologies: chosen from the seed,
    or, given the case's ``index`` in the batch, taken in turn."""
    if not pathologies:
        return options
    kinds = list(pathologies)
    pick = index % len(kinds) if index is not None else int(stream(seed, "batch-pathology").integers(len(kinds)))
    return replace(options, pathology=kinds[pick])


def write_dataset(
    out_dir: str | os.PathLike,
    seeds: Iterable[int],
    options: PhantomOptions | None = None,
    names: Sequence[str] | None = None,
    pathologies: Sequence[str] | None = None,
    progress: bool = True,
    cycle_pathologies: bool = False,
    image_dir: str = "images",
    label_dir: str = "labels",
) -> list[dict]:
    """Generate one case per seed into ``out_dir``; returns the cases.csv rows.

    ``pathologies``: the kinds allowed in the batch, drawn per case from its seed, or taken in turn
    with ``cycle_pathologies``. ``image_dir``/``label_dir``: the sub-folders (images/, labels/).
    """
    options = options or PhantomOptions()
    seeds = list(seeds)
    if names is not None and len(names) != len(seeds):
        raise ValueError(f"{len(names)} names for {len(seeds)} seeds")
    out = Path(out_dir)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    (out / label_dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, seed in enumerate(tqdm(seeds, desc="phantoms", unit="case", disable=not progress)):
        name = names[i] if names is not None else f"phantom-{seed:06d}"
        opts = case_options(seed, options, pathologies, i if cycle_pathologies else None)
        case = generate_case(seed, opts, name=name)
        _atomic_image(case.image, out / image_dir / f"{name}.mha")
        _atomic_image(case.label, out / label_dir / f"{name}.mha")
        rows.append(case.meta)
    _atomic_csv(rows, out / "cases.csv")
    return rows
