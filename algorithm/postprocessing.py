"""Clean-up of the lobe labels (paper IV.D, and the authors' container).

One connected component per lobe; islands and holes inside the lungs are given to the nearest
lobe; lung pieces far too small to be a lung are dropped. Runs on the network grid (cheaper than
the input grid and the same for every scan), inside the lungs' bounding box, and once more on the
input grid when that grid is coarser than the network's on some axis (thick slices), where
nearest-neighbour resampling can cut a thin lobe tip off.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import LOBES
from algorithm.preprocessing import PreprocessedScan, canonical_to_input_image, labels_to_canonical, skips_network_voxels

MIN_LUNG_PIECE_SHARE = 0.01  # of all lung voxels: smaller detached lung pieces are noise
DETACHED_PIECE_MAX_SHARE = 0.05  # a piece of no lobe's main body, touching none, below this: not lung


def clean_labels(labels: np.ndarray) -> np.ndarray:
    """Return a cleaned copy of a (Z, Y, X) uint8 lobe label array."""
    out = np.zeros_like(labels)
    lung = labels > 0
    if not lung.any():
        return out
    box = _bounding_box(lung, margin=1, shape=labels.shape)
    out[box] = _clean_box(labels[box])
    return out


def to_input_mask(cleaned_zyx: np.ndarray, scan: PreprocessedScan, reference: sitk.Image) -> sitk.Image:
    """Cleaned network-grid labels -> the lobe mask with the geometry of ``reference``."""
    canonical = labels_to_canonical(cleaned_zyx, scan)
    if skips_network_voxels(scan):  # a lobe can come apart on a coarser input grid: clean again there
        canonical = clean_labels(canonical)
    return canonical_to_input_image(canonical, scan, reference)


def _clean_box(labels: np.ndarray) -> np.ndarray:
    lung = _drop_small_pieces(labels > 0)
    lung = ndimage.binary_fill_holes(lung)
    kept = np.zeros_like(labels)
    for lobe in LOBES:
        component = _largest_component(labels == lobe)
        kept[component] = lobe
    lung &= ~_detached_small_pieces(lung & (kept == 0), kept > 0, lung.sum())
    unassigned = lung & (kept == 0)
    if unassigned.any() and (kept > 0).any():
        # each unassigned lung voxel (island, hole) takes the label of the nearest kept lobe voxel
        _, nearest = ndimage.distance_transform_edt(kept == 0, return_indices=True)
        kept[unassigned] = kept[tuple(axis[unassigned] for axis in nearest)]
    kept[~lung] = 0
    _merge_stray_pieces(kept)
    return kept


def _merge_stray_pieces(labels: np.ndarray, rounds: int = 3) -> None:
    """In place: a lobe's pieces other than its largest join the lobe they share most surface with.

    Nearest-voxel assignment can leave a lobe in two pieces (a piece whose nearest kept voxel lies
    across another lobe); a piece that touches no other lobe (lung cut apart by the field of
    view) keeps its label.
    """
    full = np.ones((3, 3, 3), bool)
    for _ in range(rounds):
        changed = False
        for lobe in LOBES:
            components, count = ndimage.label(labels == lobe, structure=full)
            if count <= 1:
                continue
            main = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
            for index, box in enumerate(ndimage.find_objects(components), start=1):
                if index == main or box is None:
                    continue
                grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
                piece = components[grown] == index
                ring = ndimage.binary_dilation(piece, structure=full) & ~piece
                around = labels[grown][ring]
                around = around[(around > 0) & (around != lobe)]
                if around.size:
                    labels[grown][piece] = np.bincount(around).argmax()
                    changed = True
        if not changed:
            return


def _detached_small_pieces(unassigned: np.ndarray, lobes: np.ndarray, lung_voxels: int) -> np.ndarray:
    """Unassigned pieces that touch no kept lobe and hold under DETACHED_PIECE_MAX_SHARE of the lung.

    Such a piece (an airway, a stray second piece of a lobe) would become a second, separate
    piece of whichever lobe is nearest across the gap. Larger detached pieces are lung cut apart
    by the field of view and keep the nearest lobe's label.
    """
    components, count = ndimage.label(unassigned, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return np.zeros_like(unassigned)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    touching = np.unique(components[ndimage.binary_dilation(lobes, structure=np.ones((3, 3, 3), bool))])
    drop = sizes < DETACHED_PIECE_MAX_SHARE * lung_voxels
    drop[touching] = False
    drop[0] = False
    return drop[components]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _drop_small_pieces(lung: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(lung, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return lung
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= MIN_LUNG_PIECE_SHARE * sizes.sum()
    keep[0] = False
    return keep[components]


def _bounding_box(mask: np.ndarray, margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        nonzero = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(nonzero[0] - margin, 0), min(nonzero[-1] + margin + 1, shape[axis])))
    return tuple(box)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of a mask (with a margin, clipped), or None if empty."""
    if not mask.any():
        return None
    return _bounding_box(mask, margin, mask.shape)
