"""The preprocessed cache and the training sample stream.

* Label values of other conventions are remapped to the paper's (``training.data.label_maps``).
* Preprocessing (``algorithm.preprocessing``) runs once per scan and setting; the result is
  stored as ``.npy`` files opened as memory maps, keyed by the sha256 of the image and label file
  bytes plus the settings. Writes are atomic, so ranks and workers can share one cache.
* The sample of global step ``s`` on rank ``r`` (scan index and augmentation) is a pure function
  of (seed, s, r): data order survives a restart without saving sampler state.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from algorithm.io.atomic import atomic_path, atomic_write_bytes
from algorithm.preprocessing import preprocess, preprocess_labels
from training.config import AugmentConfig
from training.data import scanner_sim
from training.data.borders import lobe_borders
from training.data.cases import Case
from training.data.label_maps import LABEL_REMAPS, remap_labels, resolve_label_map

CACHE_VERSION = 1  # bump when preprocessing changes the arrays it produces


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".tmp.npy") as tmp:
        np.save(tmp, array)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedScan:
    """A preprocessed case opened from the cache (arrays are read-only memory maps)."""

    name: str
    image: np.ndarray  # float16 (Z, Y, X) in [0, 1]
    labels: np.ndarray  # uint8 (Z, Y, X), paper label values
    spacing_mm_zyx: tuple[float, float, float]


class PreprocessedCache:
    """Preprocessed scans stored once per (file bytes, settings) as memory-mappable .npy files."""

    def __init__(self, folder: str | Path, inplane_size: int, label_remap: str | dict[int, int]) -> None:
        self.folder = Path(folder)
        self.inplane_size = inplane_size
        self.label_remap = label_remap
        self.folder.mkdir(parents=True, exist_ok=True)

    def key(self, case: Case) -> str:
        """sha256 over both files' bytes and the settings; file hashes are memoised by
        (path, size, mtime) so that a large data set is hashed once."""
        parts = [self._file_hash(case.image), self._file_hash(case.label)]
        settings = json.dumps(
            {"inplane": self.inplane_size, "remap": self._remap_key(), "v": CACHE_VERSION}, sort_keys=True, default=str
        )
        return hashlib.sha256("|".join(parts + [settings]).encode()).hexdigest()[:32]

    def _remap_key(self) -> str | dict[int, int]:
        """A named map by its name; a YAML file by its content (an edited file must not reuse the cache)."""
        is_name = isinstance(self.label_remap, str) and self.label_remap in LABEL_REMAPS
        return self.label_remap if is_name else resolve_label_map(self.label_remap)

    def _file_hash(self, path: Path) -> str:
        stat = path.stat()
        memo_id = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
        memo = self.folder / "hashes" / memo_id
        if memo.is_file():
            return memo.read_text().strip()
        digest = file_sha256(path)
        atomic_write_bytes(memo, digest.encode())
        return digest

    def paths(self, key: str) -> tuple[Path, Path, Path]:
        return (self.folder / f"{key}_image.npy", self.folder / f"{key}_labels.npy", self.folder / f"{key}.json")

    def ensure(self, case: Case) -> str:
        """Preprocess ``case`` unless cached; returns its key."""
        key = self.key(case)
        image_path, label_path, meta_path = self.paths(key)
        if meta_path.is_file():  # written last: its presence means the arrays are complete
            return key
        scan = preprocess(sitk.ReadImage(str(case.image)), self.inplane_size)
        label_image = sitk.ReadImage(str(case.label))
        remapped = remap_labels(sitk.GetArrayFromImage(label_image), self.label_remap)
        remapped_image = sitk.GetImageFromArray(remapped)
        remapped_image.CopyInformation(label_image)
        labels = preprocess_labels(remapped_image, scan.array.shape)
        _atomic_save_npy(image_path, scan.array.astype(np.float16))
        _atomic_save_npy(label_path, labels.astype(np.uint8))
        meta = {"name": case.name, "spacing_mm_zyx": list(scan.spacing_mm_zyx), "shape_zyx": list(scan.array.shape)}
        atomic_write_bytes(meta_path, json.dumps(meta).encode())
        return key

    def open(self, key: str) -> CachedScan:
        image_path, label_path, meta_path = self.paths(key)
        meta = json.loads(meta_path.read_text())
        return CachedScan(
            name=meta["name"],
            image=np.load(image_path, mmap_mode="r"),
            labels=np.load(label_path, mmap_mode="r"),
            spacing_mm_zyx=tuple(meta["spacing_mm_zyx"]),
        )


def step_generator(seed: int, step: int, rank: int, purpose: int) -> np.random.Generator:
    """Independent, reproducible randomness for one (step, rank, purpose)."""
    return np.random.default_rng([seed, step, rank, purpose])


def case_index_for_step(step: int, rank: int, world_size: int, num_cases: int, seed: int) -> int:
    """Global sample ``step * world + rank`` walks seeded per-epoch permutations of the cases."""
    sample = step * world_size + rank
    epoch, position = divmod(sample, num_cases)
    return int(np.random.default_rng([seed, epoch, 7919]).permutation(num_cases)[position])


def augment(
    image: torch.Tensor,
    labels: torch.Tensor,
    config: AugmentConfig,
    rng: np.random.Generator,
    spacing_z_mm: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random small rotation, isotropic scaling and translation (no mirroring: the affine's
    determinant is always positive, so left stays left), the scanner's effects where configured
    (``simulate_scanner``), then intensity scale, shift and noise.

    image: float32 (Z, Y, X) in [0, 1]; labels: uint8 (Z, Y, X). Voxels coming from outside are
    air (0) and background. ``spacing_z_mm``: the grid's slice spacing (for the slab thickness;
    the default is about the 96-in-plane grid's, which training always passes explicitly).
    """
    if not config.enabled:
        return image, labels
    if rng.random() < config.probability:
        theta = random_affine(config, rng)
        grid = F.affine_grid(theta[None], [1, 1, *image.shape], align_corners=False)
        image = F.grid_sample(image[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
        labels = F.grid_sample(labels[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
        labels = labels.round().to(torch.uint8)
    image = simulate_scanner(image, config, rng, spacing_z_mm)
    scale = 1.0 + rng.uniform(-config.intensity_scale, config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    noise_std = rng.uniform(0.0, config.noise_std_max)
    noise = torch.from_numpy(rng.standard_normal(image.shape).astype(np.float32)) * noise_std
    image = (image * scale + shift + noise).clamp(0.0, 1.0)
    return image, labels


def simulate_scanner(
    image: torch.Tensor, config: AugmentConfig, rng: np.random.Generator, spacing_z_mm: float
) -> torch.Tensor:
    """Thick slices, a smooth or sharp kernel and a random tissue-intensity curve, each with
    ``config.scanner_probability``; an effect configured 0 draws nothing from ``rng``."""
    p = config.scanner_probability
    if config.slice_thickness_mm_max > 0.0 and rng.random() < p:
        thickness_mm = rng.uniform(spacing_z_mm, max(spacing_z_mm, config.slice_thickness_mm_max))
        image = scanner_sim.thick_slices(image, spacing_z_mm, thickness_mm)
    if config.kernel_sigma_vox_max > 0.0 and rng.random() < p:
        sigma_vox = rng.uniform(0.3, max(0.3, config.kernel_sigma_vox_max))
        sharpen = rng.uniform(0.0, config.sharpen_max) if rng.random() < 0.5 else 0.0
        image = scanner_sim.kernel(image, sigma_vox, sharpen).clamp(0.0, 1.0)
    if config.intensity_curve_hu > 0.0 and rng.random() < p:
        image = scanner_sim.intensity_curve(image, rng, config.intensity_curve_hu)
    return image


def random_affine(config: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """(3, 4) affine_grid matrix (x, y, z order) of a rotation-scale-translation, det > 0."""
    angles = [math.radians(rng.uniform(-a, a)) for a in config.rotate_deg]  # about z, y, x
    rz, ry, rx = angles

    def rot(axis: int, a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        m = np.eye(3)
        i, j = [(1, 2), (0, 2), (0, 1)][axis]  # in (x, y, z): rotation about x, y, z
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        return m

    rotation = rot(2, rz) @ rot(1, ry) @ rot(0, rx)
    scale = rng.uniform(*config.scale_range)
    translate = rng.uniform(-config.translate_fraction, config.translate_fraction, size=3) * 2.0
    matrix = np.concatenate([rotation / scale, translate[:, None]], axis=1)
    return torch.from_numpy(matrix.astype(np.float32))


class TrainSamples(Dataset):
    """Item i is the sample of global step ``start_step + i`` on this rank (a pure function of the
    seed, the step and the rank, so the stream restarts exactly after a crash)."""

    def __init__(
        self,
        cache: PreprocessedCache,
        keys: list[str],
        augment_config: AugmentConfig,
        seed: int,
        rank: int,
        world_size: int,
        start_step: int,
        end_step: int,
        border_include_background: bool = False,
    ) -> None:
        if not keys:
            raise ValueError("no training cases")
        self.cache, self.keys, self.augment_config = cache, keys, augment_config
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_step, self.end_step = start_step, end_step
        self.border_include_background = border_include_background

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __getitem__(self, index: int) -> dict:
        step = self.start_step + index
        case_index = case_index_for_step(step, self.rank, self.world_size, len(self.keys), self.seed)
        scan = self.cache.open(self.keys[case_index])
        image = torch.from_numpy(np.asarray(scan.image, dtype=np.float32))
        labels = torch.from_numpy(np.array(scan.labels, dtype=np.uint8))
        rng = step_generator(self.seed, step, self.rank, 1)
        image, labels = augment(image, labels, self.augment_config, rng, spacing_z_mm=scan.spacing_mm_zyx[0])
        border = lobe_borders(labels, self.border_include_background)
        return {"step": step, "name": scan.name, "image": image[None], "labels": labels, "border": border}


def identity_collate(items: list[dict]) -> dict:
    """Batch of one scan per rank and step (scans differ in size)."""
    if len(items) != 1:
        raise ValueError("the training stream yields one scan per step")
    return items[0]
