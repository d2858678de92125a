"""The lung's extent from the scan, the lobe identity from the network (issue 16).

The network runs on a coarse grid (about 4 mm with the shipped weights); its argmax, upsampled by
nearest neighbour, misses lung at every pleural surface and, on scans unlike its training data,
whole regions. This step takes the lung from the scan on the scan's own (reoriented) grid and asks
the network only which lobe each lung voxel belongs to:

1. Topology on a *work grid* of blocks of about ``work_spacing_mm`` (the input grid itself when it
   is coarser): per block the share of air (below ``air_max_hu``) and of empty air (below
   ``EMPTY_AIR_MEDIAN_HU``); air around the body (connected within its axial slice to the slice
   edge, unless it is lung cut by the field of view); the trachea and main bronchi, followed slice
   by slice down from the top of the scan as small air regions outside the network's lung; the
   air-filled lung = the 3D pieces of the remaining air that overlap the network's lung; vessels
   and airways enclosed by it in an axial slice (per side, so the mediastinum is never enclosed);
   and the network's lung minus a one-voxel rim (its own grid): dense lung that only the network
   can tell from chest wall or fluid.
2. On the scan grid, in z-slabs: a voxel is lung when it is air (``air_max_hu``) within one work
   block of that lung (so the boundary follows the pleura at the scan's resolution), or lies in
   the lung's interior (vessels), or in the network's dense core.
3. Every lung voxel takes the lobe of the network: the argmax of its lobe probabilities
   interpolated trilinearly (exactly, and only in network cells whose corners disagree), where
   the network said background the nearest lobe. The nearest lobe can lie across the mediastinum
   or a fissure: lung left apart from its lobe's main body then joins the lobe around it
   (``postprocessing.merge_stray_pieces``).

All functions take numpy arrays in (Z, Y, X) and spacings in mm; nothing here knows SimpleITK.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from algorithm.labels import LEFT_LOBES, LOBES
from algorithm.image_ops import dilate_face_neighbours as _dilate_face_neighbours  # one source: six shifted ORs
from algorithm.postprocessing import AIR_MAX_HU, EMPTY_AIR_MEDIAN_HU, bounding_box, merge_stray_pieces, slice_edge_pieces

MIXED = 255  # a network cell whose corners carry different lobes: interpolate there

# bits of the work-grid code, read per scan voxel
_SHELL = 1  # air here is lung (within one block of the lung, away from airways and outside air)
_CORE = 2  # every voxel here is lung (interior: vessels, enclosed airways)
_NETWORK_CORE = 4  # every voxel here is lung (the network's lung where the scan cannot judge: dense lung)


@dataclass(frozen=True)
class LungExtentSettings:
    """Where the scan may add lung to the network's; recorded in docs/design.md."""

    air_max_hu: float = AIR_MAX_HU  # half-way between aerated lung (-850) and soft tissue (+40)
    work_spacing_mm: float = 2.0  # topology grid; the boundary itself is found on the scan grid
    airway_max_area_mm2: float = 800.0  # trachea and main bronchi cross-sections stay below this
    airway_seed_band_mm: float = 35.0  # the trachea starts this close to the lungs' midline
    airway_max_gap_mm: float = 6.0  # slices without airway before the tracking stops
    airway_below_carina_mm: float = 25.0  # main bronchi inside the network's lung: the right one's length
    airway_reach_mm: float = 4.0  # the tracked airway grows this far along its air (rim, bronchus ends)
    min_network_overlap: float = 0.2  # an air piece is lung when this share of it is network lung
    max_hole_area_mm2: float = 2500.0  # enclosed non-air regions up to this are lung (vessels, nodules)
    dense_thick_blocks: int = 3  # network dense lung this thick (work blocks, odd) keeps its rim
    slab_slices: int = 32  # scan-grid slices processed at a time (times the block depth)


@dataclass
class NetworkLobes:
    """The network's answer on its own grid, covering the same extent as the scan grid."""

    labels: np.ndarray  # uint8 (Z, Y, X): cleaned lobe labels (0 background)
    probabilities: np.ndarray | None = None  # float16 (6, Z, Y, X) softmax; None: one-hot of labels


@dataclass
class LungExtent:
    """The lobes on the scan grid and what the step found."""

    labels: np.ndarray  # uint8 (Z, Y, X) lobes on the scan grid
    aerated_lung_ml: float  # air-filled lung (below air_max_hu) inside the lung mask
    network_unlabelled_share: float  # of that, the share the network had left background
    airway_ml: float  # trachea and main bronchi kept out (work grid)
    work_block_zyx: tuple[int, int, int]
    stray_relabelled_ml: float = 0.0  # lung apart from its lobe's body, given to the lobe around it


# ---------------------------------------------------------------- grids


def work_blocks(spacing_mm_zyx: tuple[float, float, float], work_spacing_mm: float) -> tuple[int, int, int]:
    """Scan voxels per work-grid block along each axis (1 where the scan is already coarse; at
    most 6, so that a block's voxel count fits a uint8)."""
    return tuple(min(6, max(1, int(round(work_spacing_mm / s)))) for s in spacing_mm_zyx)


def nearest_source_indices(n_source: int, n_scan: int, block: int = 1) -> np.ndarray:
    """For each block of ``block`` scan voxels (of ``n_scan``; the last block may be partial), the
    nearest voxel of a grid of ``n_source`` voxels over the same extent (voxel-edge aligned, as
    ``preprocessing.resample_array``'s nearest-exact)."""
    centres = np.arange(-(-n_scan // block)) * block + 0.5 * block  # in scan voxel widths
    return np.minimum((centres * n_source / n_scan).astype(np.int64), n_source - 1)


def _network_to_grid(array: np.ndarray, scan_shape_zyx, block) -> np.ndarray:
    """A network-grid array, nearest neighbour, on the work grid (the scan grid for block 1s)."""
    index = [nearest_source_indices(n_src, n_scan, b) for n_src, n_scan, b in zip(array.shape, scan_shape_zyx, block)]
    return array[np.ix_(*index)]


def below(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """``hu < threshold_hu`` without a float64 copy of an integer scan (for integers, x < t is
    x < ceil(t))."""
    if np.issubdtype(hu.dtype, np.integer):
        info = np.iinfo(hu.dtype)
        return hu < np.clip(np.ceil(threshold_hu), info.min, info.max).astype(hu.dtype)
    return hu < np.asarray(threshold_hu, dtype=hu.dtype)


def _block_counts(mask: np.ndarray, block) -> np.ndarray:
    """Per work block, how many voxels of ``mask`` are set (uint8: blocks hold at most 216)."""
    counts = mask.view(np.uint8)
    for axis, size in enumerate(block):
        if size == 1:
            continue
        pad = -counts.shape[axis] % size
        if pad:
            widths = [(0, 0)] * 3
            widths[axis] = (0, pad)
            counts = np.pad(counts, widths)
        index = [slice(None)] * 3
        index[axis] = slice(0, None, size)
        total = counts[tuple(index)].copy()
        for offset in range(1, size):
            index[axis] = slice(offset, None, size)
            total += counts[tuple(index)]
        counts = total
    return counts


def _dilated(mask: np.ndarray, size=3) -> np.ndarray:
    """Binary dilation by a box (separable, so far cheaper than a 3 x 3 x 3 structure)."""
    return ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0).view(bool)


def _eroded(mask: np.ndarray, size=3) -> np.ndarray:
    """Binary erosion by a box; outside the array counts as background (as binary_erosion)."""
    return ndimage.minimum_filter(mask.view(np.uint8), size=size, mode="constant", cval=0).view(bool)


# ---------------------------------------------------------------- work grid: topology


@dataclass
class _WorkStats:
    airway_ml: float  # trachea and main bronchi kept out
    aerated_voxels: int  # air-filled lung (half the block or more below air_max_hu)
    unlabelled_voxels: int  # of which the network had left background


@dataclass
class _WorkGrid:
    air: np.ndarray  # bool: at least half the block is air
    empty: np.ndarray  # bool: at least half the block is empty air (below EMPTY_AIR_MEDIAN_HU)
    spacing_mm: tuple[float, float, float]


def _work_grid(hu: np.ndarray, block, spacing_mm_zyx, settings: LungExtentSettings) -> _WorkGrid:
    nz = hu.shape[0]
    bz = block[0]
    shape = tuple(-(-n // b) for n, b in zip(hu.shape, block))
    air = np.zeros(shape, bool)
    empty = np.zeros(shape, bool)
    full = np.prod(block)
    step = settings.slab_slices * bz
    for z0 in range(0, nz, step):
        slab = hu[z0 : z0 + step]
        if slab.shape[0] % bz:  # the last blocks: pad with soft tissue
            slab = np.concatenate([slab, np.zeros((bz - slab.shape[0] % bz,) + slab.shape[1:], slab.dtype)])
        zc = slice(z0 // bz, z0 // bz + slab.shape[0] // bz)
        air[zc] = 2 * _block_counts(below(slab, settings.air_max_hu), block).astype(np.uint16) >= full
        empty[zc] = 2 * _block_counts(below(slab, EMPTY_AIR_MEDIAN_HU), block).astype(np.uint16) >= full
    spacing = tuple(s * b for s, b in zip(spacing_mm_zyx, block))
    return _WorkGrid(air, empty, spacing)


def _outside_air(work: _WorkGrid, network_lung: np.ndarray, settings: LungExtentSettings) -> np.ndarray:
    """Air around the body. A lung cut by the field of view also reaches the slice edge, but it is
    mostly network lung and not empty air (the clean-up's rule for network pieces), judged in its
    slice or, where the network missed the lung in that slice (an apex or a recess at the edge of a
    crop), over its whole 3D air piece: outside air is never joined in 3D to the lungs' air.

    Pieces are judged on the air eroded by one block in the slice and grown back by one: a chest
    wall thinner than a block (a thin, sharp-kernel wall under the arms) lets the lung's air touch
    the air around the body on the work grid, and the joined piece would take the lung outside."""
    in_plane = (1, 3, 3)
    # the field of view's edge is not a wall: air at the edge stays at the edge
    core = ndimage.minimum_filter(work.air.view(np.uint8), size=in_plane, mode="nearest").view(bool)
    pieces, at_edge = slice_edge_pieces(core)
    outside = at_edge & ~_mostly_network_lung(pieces, at_edge.size, network_lung, work.empty)
    pieces_3d, count_3d = ndimage.label(core)
    lung_3d = _mostly_network_lung(pieces_3d, count_3d + 1, network_lung, work.empty)
    piece_3d = np.zeros(at_edge.size, np.int64)
    piece_3d[pieces.ravel()] = pieces_3d.ravel()  # every slice piece lies in one 3D piece
    outside &= ~lung_3d[piece_3d]
    outside[0] = False
    grown = _dilated(outside[pieces], size=in_plane) & work.air
    # air at the edge too thin to survive the erosion (a layer under a blanket) is judged whole
    thin_pieces, thin_at_edge = slice_edge_pieces(work.air & ~_dilated(core, size=in_plane))
    thin = thin_at_edge & ~_mostly_network_lung(thin_pieces, thin_at_edge.size, network_lung, work.empty)
    thin[0] = False
    return grown | thin[thin_pieces]


def _mostly_network_lung(pieces: np.ndarray, count: int, network_lung: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Per labelled piece: at least half of it is network lung and under half of it empty air."""
    flat = pieces.ravel()
    size = np.bincount(flat, minlength=count)
    lung = np.bincount(flat[network_lung.ravel()], minlength=count)
    empty_blocks = np.bincount(flat[empty.ravel()], minlength=count)
    return (lung >= 0.5 * size) & (2 * empty_blocks < size)


def _airway(candidates: np.ndarray, network_lung: np.ndarray, spacing_mm, settings: LungExtentSettings) -> np.ndarray:
    """Trachea and main bronchi: small air regions followed down from the first central one outside
    the network's lung near the top of the scan (LPS: the last slice is the most superior).

    Below the seed, a small piece that overlaps the airway of the slice above continues it, outside
    the network's lung or inside it: a network may label the distal trachea as lung (the v2 weights
    do on the real A0001 scan). Inside the network's lung the airway is followed at most
    ``airway_below_carina_mm`` below the carina (where it first splits in two), so that the lobar
    and segmental bronchi, which are lung, are never followed."""
    sz, sy, sx = spacing_mm
    max_area = settings.airway_max_area_mm2 / (sy * sx)
    min_area = 30.0 / (sy * sx)  # under 6 mm across: no trachea
    max_gap = max(1, int(round(settings.airway_max_gap_mm / sz)))
    below_carina = max(1, int(round(settings.airway_below_carina_mm / sz)))
    airway = np.zeros_like(candidates)
    lung_x = np.flatnonzero(network_lung.any(axis=(0, 1)))
    if lung_x.size == 0:
        return airway
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    # 2D pieces with unique ids, outside the network's lung and inside it apart: an airway the
    # network labelled is joined in its slice to the lung's air only where the lung is
    outside_pieces, count_outside = ndimage.label(candidates & ~network_lung, structure=in_plane)
    inside_pieces, count_inside = ndimage.label(candidates & network_lung, structure=in_plane)
    count = count_outside + count_inside
    if count == 0:
        return airway
    pieces = np.where(inside_pieces > 0, inside_pieces + count_outside, outside_pieces)
    flat = pieces.ravel()
    area = np.bincount(flat, minlength=count + 1)
    inside = np.arange(count + 1) > count_outside
    # a thin strip along (not inside) the network's lung is lung the network fell short of, not airway
    along = (_dilated(network_lung, size=(1, 3, 3)) & ~network_lung).ravel()
    strip = 2 * np.bincount(flat[along], minlength=count + 1) > area
    fits = (area <= max_area) & ~strip
    fits[0] = False
    seed_fits = fits & ~inside & (area >= min_area)
    midline_x = 0.5 * (lung_x[0] + lung_x[-1])
    footprint, gap, carina = None, 0, None
    for k in range(candidates.shape[0] - 1, -1, -1):
        if footprint is None:
            ids = np.unique(pieces[k])
            ids = ids[seed_fits[ids]]
            if ids.size:  # central pieces only; the largest of them: the trachea
                x_index = np.broadcast_to(np.arange(pieces.shape[2]), pieces[k].shape)
                centre_x = ndimage.mean(x_index, pieces[k], ids)
                ids = ids[np.abs(np.asarray(centre_x) - midline_x) <= settings.airway_seed_band_mm / sx]
            chosen = ids[np.argsort(-area[ids])][:1]
        else:
            ids = np.unique(pieces[k][footprint])
            past_carina = carina is not None and carina - k > below_carina
            chosen = ids[fits[ids] & ~(inside[ids] & past_carina)]
        if chosen.size:
            airway[k] = np.isin(pieces[k], chosen)
            footprint, gap = airway[k], 0
            if carina is None and chosen.size >= 2:
                carina = k
        elif footprint is not None:
            gap += 1
            if gap > max_gap:
                break
    return airway


def _lung_pieces(candidates: np.ndarray, network_lung: np.ndarray, empty: np.ndarray, settings: LungExtentSettings) -> np.ndarray:
    """The 3D pieces of air that are lung: a set share of each is network lung, and it is not empty
    air (gas in the stomach or bowel, which a 4 mm network lung reaches over, is; lung holds vessels
    and walls) unless the network calls most of it lung (a bulla walled off from the rest).

    The pieces are found on the air eroded by one block, so that a wall thinner than the work
    grid's blocks (a thin diaphragm between lung and stomach gas) still separates them, and grown
    back by two blocks within the air."""
    core = candidates & ~_dilate_face_neighbours(~candidates)
    pieces, count = ndimage.label(core)
    if count == 0:
        return core
    size = np.bincount(pieces.ravel(), minlength=count + 1)
    overlap = np.bincount(pieces[network_lung], minlength=count + 1)
    empty_blocks = np.bincount(pieces[empty], minlength=count + 1)
    keep = (overlap >= settings.min_network_overlap * size) & ((2 * empty_blocks < size) | (2 * overlap >= size))
    keep[0] = False
    lung = keep[pieces]
    for _ in range(2):
        lung = _dilate_face_neighbours(lung) & candidates
    return lung


def _fill_enclosed(lung: np.ndarray, left: np.ndarray, spacing_mm, settings: LungExtentSettings) -> np.ndarray:
    """Add what the lung encloses within an axial slice (vessels, bronchi, nodules), each side on
    its own so that the mediastinum between the lungs is never enclosed."""
    max_area = settings.max_hole_area_mm2 / (spacing_mm[1] * spacing_mm[2])
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1, 1, :] = in_plane[1, :, 1] = True  # 4-connected background within a slice
    out = lung.copy()
    for side in (lung & left, lung & ~left):
        box = bounding_box(side, margin=1)
        if box is None:
            continue  # an enclosed hole lies inside its side's box; what touches the box's edge is not one
        holes, count = ndimage.label(~side[box], structure=in_plane)
        edge = np.unique(np.concatenate([holes[:, [0, -1], :].ravel(), holes[:, :, [0, -1]].ravel()]))
        size = np.bincount(holes.ravel(), minlength=count + 1)
        fill = size <= max_area
        fill[edge] = False
        fill[0] = False
        out[box] |= fill[holes]
    return out


def _airway_reach(airway: np.ndarray, candidates: np.ndarray, spacing_mm, settings: LungExtentSettings) -> np.ndarray:
    """The tracked airway grown along its own air by ``airway_reach_mm``: the lumen's rim, and the
    last millimetres of a main bronchus that the network's coarse lung reaches over."""
    steps = max(1, int(np.ceil(settings.airway_reach_mm / min(spacing_mm))))
    for _ in range(steps):
        airway = _dilate_face_neighbours(airway) & candidates
    return airway


def _network_dense_lung(
    network_lung: np.ndarray,
    network_core: np.ndarray,
    aerated: np.ndarray,
    air: np.ndarray,
    reach_vox: tuple[int, int, int],
    thick_blocks: int,
) -> np.ndarray:
    """The network's lung that the scan cannot judge: all of it except a thin dense layer where,
    within one network voxel of aerated lung, it reaches past that lung (the coarse grid
    overshooting an aerated pleura into chest wall, mediastinum or fluid). Always kept: its core
    (one network voxel in), and every part of its dense (non-air) lung that a box of
    ``thick_blocks`` work blocks fits in, rim included: consolidation at the pleura and large
    vessels at the hilum are thicker than the overshoot, which is at most one network voxel."""
    near_air = _dilated(aerated, size=tuple(2 * r + 1 for r in reach_vox))
    dense = network_lung & ~air
    thick = _dilated(_eroded(dense, size=thick_blocks), size=thick_blocks)  # an opening: within dense
    return network_core | (network_lung & ~near_air) | thick


def _work_code(
    hu: np.ndarray, spacing_mm_zyx, network: NetworkLobes, nearest_lobe: np.ndarray, settings: LungExtentSettings
) -> tuple[np.ndarray, tuple[int, int, int], "_WorkStats"]:
    """The work-grid code (bits _SHELL, _CORE, _NETWORK_CORE), the block, and what was found."""
    block = work_blocks(spacing_mm_zyx, settings.work_spacing_mm)
    work = _work_grid(hu, block, spacing_mm_zyx, settings)
    network_lung = _network_to_grid(network.labels > 0, hu.shape, block)
    network_core = _network_to_grid(_eroded(network.labels > 0), hu.shape, block)
    left = np.isin(_network_to_grid(nearest_lobe, hu.shape, block), LEFT_LOBES)
    outside = _outside_air(work, network_lung, settings)
    candidates = work.air & ~outside
    airway = _airway(candidates, network_lung, work.spacing_mm, settings)
    airway = _airway_reach(airway, candidates, work.spacing_mm, settings)
    aerated = _lung_pieces(candidates & ~airway, network_lung, work.empty, settings)
    network_mm = [n * s / m for n, s, m in zip(hu.shape, spacing_mm_zyx, network.labels.shape)]
    reach = tuple(max(1, int(np.ceil(n / w))) for n, w in zip(network_mm, work.spacing_mm))
    code = np.zeros(work.air.shape, np.uint8)
    voxel_ml = float(np.prod(work.spacing_mm)) / 1000.0
    box = bounding_box(aerated | network_lung, margin=max(reach) + 2)
    if box is None:
        return code, block, _WorkStats(float(airway.sum()) * voxel_ml, 0, 0)
    # from here on, only the lung's box (with room for the dilations) can change
    rejected = (candidates & ~airway & ~aerated)[box]  # air pieces that are not lung: stomach, bowel gas
    aerated, network_lung, airway, outside = aerated[box], network_lung[box], airway[box], outside[box]
    # where the scan has judged air not to be lung, the network's lung does not overrule it
    dense = _network_dense_lung(
        network_lung, network_core[box], aerated, work.air[box], reach, settings.dense_thick_blocks
    )
    dense &= ~rejected & ~outside & ~airway
    lung = _fill_enclosed(aerated | dense, left[box], work.spacing_mm, settings) & ~airway
    part = (_dilated(lung) & ~_dilated(airway) & ~outside & ~rejected).view(np.uint8) * np.uint8(_SHELL)
    part |= _eroded(lung).view(np.uint8) * np.uint8(_CORE)
    part |= dense.view(np.uint8) * np.uint8(_NETWORK_CORE)
    code[box] = part
    aerated_lung = lung & work.air[box]
    stats = _WorkStats(
        airway_ml=float(airway.sum()) * voxel_ml,
        aerated_voxels=int(np.count_nonzero(aerated_lung)),
        unlabelled_voxels=int(np.count_nonzero(aerated_lung & ~network_lung)),
    )
    return code, block, stats


# ---------------------------------------------------------------- network: lobes


def nearest_lobe_labels(labels: np.ndarray) -> np.ndarray:
    """Every voxel of the network grid takes its own lobe or, if background, the nearest lobe's."""
    lung = labels > 0
    if not lung.any() or lung.all():
        return labels.copy()
    _, nearest = ndimage.distance_transform_edt(~lung, return_indices=True)
    return labels[tuple(nearest)]


def lobe_scores(network: NetworkLobes, nearest: np.ndarray) -> np.ndarray:
    """float32 (5, Z, Y, X) per-lobe scores whose argmax is ``nearest`` on every network voxel.

    Inside the network's lung: the lobe probabilities (their ratios are what trilinear
    interpolation blends); where the clean-up changed the argmax, and outside the lung, one-hot.
    """
    one_hot = (nearest[None] == np.array(LOBES, np.uint8)[:, None, None, None]).astype(np.float32)
    if network.probabilities is None:
        return one_hot
    lobes = network.probabilities[1:].astype(np.float32)
    total = lobes.sum(axis=0, keepdims=True)
    lobes /= np.maximum(total, 1e-6)
    agrees = (network.labels > 0) & (np.argmax(lobes, axis=0) + 1 == network.labels)
    return np.where(agrees[None], lobes, one_hot)


def _cell_axes(n_net: int, n_scan: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trilinear interpolation along one axis (align_corners=False, edges clamped): the lower
    network index, the upper one and the weight of the upper one, per scan voxel."""
    position = (np.arange(n_scan) + 0.5) * n_net / n_scan - 0.5
    position = np.clip(position, 0.0, n_net - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), max(n_net - 2, 0))
    upper = np.minimum(lower + 1, n_net - 1)
    return lower, upper, (position - lower).astype(np.float32)


def _cell_labels(nearest: np.ndarray) -> np.ndarray:
    """Per network cell (its lower corner), the lobe all eight corners share, or MIXED."""
    padded = np.pad(nearest, ((0, 1), (0, 1), (0, 1)), mode="edge")
    cell = nearest.copy()
    mixed = np.zeros(nearest.shape, bool)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                corner = padded[dz : dz + nearest.shape[0], dy : dy + nearest.shape[1], dx : dx + nearest.shape[2]]
                mixed |= corner != nearest
    cell[mixed] = MIXED
    return cell


def _interpolated_lobes(scores: np.ndarray, axes, where: tuple[np.ndarray, ...]) -> np.ndarray:
    """Argmax of the trilinearly interpolated scores at the scan voxels ``where`` (index arrays)."""
    total = np.zeros((scores.shape[0], where[0].size), np.float32)
    lower_upper = [(a[0][w], a[1][w], a[2][w]) for a, w in zip(axes, where)]
    (z0, z1, wz), (y0, y1, wy), (x0, x1, wx) = lower_upper
    for iz, fz in ((z0, 1 - wz), (z1, wz)):
        for iy, fy in ((y0, 1 - wy), (y1, wy)):
            for ix, fx in ((x0, 1 - wx), (x1, wx)):
                total += scores[:, iz, iy, ix] * (fz * fy * fx)
    return np.asarray(LOBES, np.uint8)[np.argmax(total, axis=0)]


# ---------------------------------------------------------------- the step


def scan_lung_mask(
    hu: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    network_labels: np.ndarray,
    settings: LungExtentSettings | None = None,
) -> np.ndarray:
    """The lung on the scan grid (bool (Z, Y, X)) from the scan's HU and the network's cleaned lobe
    labels on its own grid (same extent). The union of the lobes of ``lung_extent`` is this mask."""
    settings = settings or LungExtentSettings()
    nearest = nearest_lobe_labels(network_labels)
    code, block, _ = _work_code(hu, spacing_mm_zyx, NetworkLobes(network_labels), nearest, settings)
    mask = np.zeros(hu.shape, bool)
    for z0, z1 in _slabs(hu.shape[0], block, settings):
        mask[z0:z1] = _lung_from_code(below(hu[z0:z1], settings.air_max_hu), _code_on_scan(code, block, hu.shape, z0, z1))
    return mask


def lung_extent(
    hu: np.ndarray,
    spacing_mm_zyx: tuple[float, float, float],
    network: NetworkLobes,
    settings: LungExtentSettings | None = None,
) -> LungExtent:
    """Lobe labels on the scan grid: the lung from ``hu`` (in HU, (Z, Y, X), spacing in mm), each
    lung voxel's lobe from ``network`` (on the network grid over the same extent)."""
    settings = settings or LungExtentSettings()
    nearest = nearest_lobe_labels(network.labels)
    code, block, stats = _work_code(hu, spacing_mm_zyx, network, nearest, settings)
    scores = lobe_scores(network, nearest)
    cells = _cell_labels(nearest)
    axes = [_cell_axes(n_net, n_scan) for n_net, n_scan in zip(nearest.shape, hu.shape)]
    labels = np.zeros(hu.shape, np.uint8)
    aerated = 0
    for z0, z1 in _slabs(hu.shape[0], block, settings):
        air = below(hu[z0:z1], settings.air_max_hu)
        lung = _lung_from_code(air, _code_on_scan(code, block, hu.shape, z0, z1))
        aerated += int(np.count_nonzero(lung & air))
        slab = labels[z0:z1]
        slab[...] = np.take(np.take(cells[axes[0][0][z0:z1]], axes[1][0], axis=1), axes[2][0], axis=2)
        slab *= lung.view(np.uint8)
        mixed = np.flatnonzero(slab == MIXED)
        if mixed.size:
            where = np.unravel_index(mixed, slab.shape)
            slab.ravel()[mixed] = _interpolated_lobes(scores, axes, (where[0] + z0, where[1], where[2]))
    voxel_ml = float(np.prod(spacing_mm_zyx)) / 1000.0
    stray_voxels = merge_stray_pieces(labels)
    return LungExtent(
        labels=labels,
        aerated_lung_ml=aerated * voxel_ml,
        network_unlabelled_share=stats.unlabelled_voxels / stats.aerated_voxels if stats.aerated_voxels else 0.0,
        airway_ml=stats.airway_ml,
        work_block_zyx=block,
        stray_relabelled_ml=stray_voxels * voxel_ml,
    )


def _slabs(n_slices: int, block, settings: LungExtentSettings):
    """(z0, z1) of the scan slabs, each a whole number of work blocks deep."""
    step = settings.slab_slices * block[0]
    for z0 in range(0, n_slices, step):
        yield z0, min(z0 + step, n_slices)


def _code_on_scan(code: np.ndarray, block, scan_shape, z0: int, z1: int) -> np.ndarray:
    """The work code, nearest neighbour, on scan slices z0:z1 (z0 on a block boundary)."""
    bz, by, bx = block
    part = code[z0 // bz : -(-z1 // bz)]
    part = np.repeat(part, bz, axis=0)[: z1 - z0] if bz > 1 else part
    part = np.repeat(part, by, axis=1)[:, : scan_shape[1]] if by > 1 else part
    return np.repeat(part, bx, axis=2)[:, :, : scan_shape[2]] if bx > 1 else part


def _lung_from_code(air: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Lung where the code says so: air in the shell, anything in the cores."""
    counted = air.view(np.uint8) * np.uint8(_SHELL)
    counted |= np.uint8(_CORE | _NETWORK_CORE)
    counted &= code
    return counted > 0
