"""Clean-up of the lobe labels (paper IV.D, and the authors' container).

One connected component per lobe; islands and holes inside the lungs are given to the nearest
lobe; lung pieces far too small to be a lung are dropped, and so are pieces of air around the
body that the network took for lung (given the scan's intensities). The rules only: where the
pipeline applies them is algorithm/pipeline/clean_up.py (on the network grid, cheaper than the
input grid and the same for every scan, inside the lungs' bounding box; once more on the input
grid when that grid is coarser than the network's on some axis; ``merge_stray_pieces`` on the
scan grid after the lung step and the fissure fit).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from algorithm.boxes import bounding_box, grown_by_one
from algorithm.constants import AIR_LUNG_CUT_HU
from algorithm.labels import LOBES
from algorithm.preprocessing import normalize_hu

MIN_LUNG_PIECE_SHARE = 0.01  # of all lung voxels: smaller detached lung pieces are noise
DETACHED_PIECE_MAX_SHARE = 0.05  # a piece of no lobe's main body, touching none, below this: not lung
# Stray lobe pieces on the scan grid (merge_stray_pieces): a cluster this large (share of the lung)
# is left as the network labelled it; smaller ones join the lobe they touch most.
STRAY_CLUSTER_MAX_SHARE = 0.02
SPECK_MAX_SHARE = 0.001  # a stray cluster touching no lobe and under this share of the lung: not lung
# Air outside the body: below AIR_MAX_HU, connected within its axial slice to the slice's edge. A
# lung piece whose median is below EMPTY_AIR_MEDIAN_HU holds no parenchyma (lung, even severely
# emphysematous, has a median near -850...-930 HU from its vessels and walls).
AIR_MAX_HU = AIR_LUNG_CUT_HU
EMPTY_AIR_MEDIAN_HU = -970.0


def clean_labels(labels: np.ndarray, scan_normalized: np.ndarray | None = None) -> np.ndarray:
    """Return a cleaned copy of a (Z, Y, X) uint8 lobe label array.

    ``scan_normalized``: the network-grid scan (``normalize_hu`` units) the labels were predicted
    from; with it, lung pieces that are air outside the body are dropped first (a phantom-trained
    network labels the air between a patient's chest and a blanket as lung, and the clean-up would
    otherwise keep that piece as a whole lobe).
    """
    out = np.zeros_like(labels)
    if scan_normalized is not None:
        labels = _drop_outside_air_pieces(labels, scan_normalized)
    lung = labels > 0
    if not lung.any():
        return out
    box = bounding_box(lung, margin=1)
    out[box] = _clean_box(labels[box])
    return out


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


def outside_air(scan_normalized: np.ndarray) -> np.ndarray:
    """Air connected, within its axial slice, to the slice's edge: the air around the body."""
    return air_around_body(scan_normalized < _normalized(AIR_MAX_HU))


def air_around_body(air: np.ndarray) -> np.ndarray:
    """The voxels of a (Z, Y, X) air mask connected, within their axial slice, to the slice's edge."""
    components, at_edge = slice_edge_pieces(air)
    return at_edge[components]


def slice_edge_pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected pieces of a (Z, Y, X) mask within each axial slice (never across slices),
    labelled, and per label whether the piece reaches its slice's edge (False for label 0)."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    components, count = ndimage.label(mask, structure=in_plane)
    edge = np.concatenate([components[:, [0, -1], :].ravel(), components[:, :, [0, -1]].ravel()])
    at_edge = np.zeros(count + 1, bool)
    at_edge[np.unique(edge)] = True
    at_edge[0] = False
    return components, at_edge


def _drop_outside_air_pieces(labels: np.ndarray, scan_normalized: np.ndarray) -> np.ndarray:
    """Lung pieces (never the largest) that lie mostly in air around the body and hold no
    parenchyma become background. Both tests are needed: a lung cut by the field of view also
    reaches the slice edge, but it has vessels; a bulla is empty but inside the body."""
    pieces, count = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return labels
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    around_body = outside_air(scan_normalized)
    out = labels.copy()
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        if index == largest or box is None:
            continue
        piece = pieces[box] == index
        empty = np.median(scan_normalized[box][piece]) < _normalized(EMPTY_AIR_MEDIAN_HU)
        if empty and around_body[box][piece].mean() > 0.5:
            out[box][piece] = 0
    return out


def _normalized(hu: float) -> float:
    return float(normalize_hu(np.array([hu]))[0])


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
                grown = grown_by_one(box)
                piece = components[grown] == index
                ring = ndimage.binary_dilation(piece, structure=full) & ~piece
                around = labels[grown][ring]
                around = around[(around > 0) & (around != lobe)]
                if around.size:
                    labels[grown][piece] = np.bincount(around).argmax()
                    changed = True
        if not changed:
            return


def merge_stray_pieces(labels: np.ndarray, max_share: float = STRAY_CLUSTER_MAX_SHARE) -> int:
    """In place, on the scan grid: lung that is not the main body of its lobe, taken in clusters
    (26-connected, whatever their labels), joins the main lobe it shares the most surface with.

    The lung step labels lung the network missed with the nearest network lobe, which can lie
    across the mediastinum (retrocardiac left lung taking a right lobe's label) or across a
    fissure; the fissure fit can cut a sliver off. Such pieces touch the lobe they belong to.
    Taken one label at a time they would first merge into each other; as one cluster they go to
    the lobe around them. Clusters over ``max_share`` of the lung, and clusters touching no main
    lobe (lung cut apart by the field of view), keep their labels, except specks touching nothing
    (under SPECK_MAX_SHARE of the lung), which are not lung. Returns the voxels changed.
    """
    box = bounding_box(labels > 0, margin=1)
    if box is None:
        return 0
    sub = labels[box]
    main = np.zeros(sub.shape, bool)
    for lobe in LOBES:
        main |= _largest_component(sub == lobe)
    full = np.ones((3, 3, 3), bool)
    clusters, count = ndimage.label((sub > 0) & ~main, structure=full)
    if count == 0:
        return 0
    lung_voxels = np.count_nonzero(sub)
    limit, speck = max_share * lung_voxels, SPECK_MAX_SHARE * lung_voxels
    sizes = np.bincount(clusters.ravel())
    changed = 0
    for index, piece_box in enumerate(ndimage.find_objects(clusters), start=1):
        if sizes[index] > limit:
            continue
        grown = grown_by_one(piece_box)
        piece = clusters[grown] == index
        ring = ndimage.binary_dilation(piece, structure=full) & ~piece & main[grown]
        if ring.any():
            sub[grown][piece] = np.bincount(sub[grown][ring]).argmax()
        elif sizes[index] < speck:
            sub[grown][piece] = 0
        else:
            continue
        changed += int(sizes[index])
    return changed


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
