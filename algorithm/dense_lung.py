"""Dense lung between the aerated lung and the chest wall joins its lobe (issue 31).

The lung step (lung_extent.py) keeps dense lung only where the network labelled it or where the
aerated lung encloses it within a slice. A subpleural consolidation, the typical COVID-19 lesion,
is neither: it lies between the aerated lung and the chest wall, and on real scans the network
leaves it out (the issue's probe kept 0.6 % of it; benchmarks/consolidation_real.py 0.2 % on A0001). Its HU (-100...+50) is the chest wall's and
the mediastinum's, so the scan's density cannot tell it apart; its *place* can:

1. **In a dent of the lung's own envelope.** A lesion dents the lung's convex outer surface: per
   axial slice and side, a ray from the side's centre whose lung edge lies inside the lung's convex
   hull crosses a dent. A pleural effusion does not dent: the compressed lung keeps a convex
   surface and the fluid lies outside its hull (reported, kept out).
2. **Inside the rib cage, on the costal side.** Along a dent ray, the lesion lies beyond the lung's
   edge and before the inner surface of the ribs (the first bone further out, the ribs of the
   slices just above and below included; across an intercostal gap or a costal cartilage the
   wall is interpolated from the neighbouring rays; the spine walls the paravertebral gutter).
   Rays that meet the spine, the other lung or contrast-filled vessels first, rays that point
   inward, and the rows between the two lungs in front of the spine are the mediastinum: hilum,
   heart, aorta and the anterior junction never join a lobe. A lesion against the mediastinum is
   therefore not recovered; the report's dense share says what the lobes hold.
3. **Thick and connected to the lung in 3D**, denser than aerated lung and below bone.

Recovered voxels take the lobe the fissure surfaces give them, not the nearest aerated voxel: each
fissure is a height field z(y, x) over the columns that hold both of its lobes, continued into
the lesion's columns by normalised Gaussian smoothing (``fissure_heights``).

All arrays are (Z, Y, X) on the canonical (LPS) grid, spacings in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from algorithm.boxes import bounding_box
from algorithm.image_ops import dilate_face_neighbours
from algorithm.labels import LEFT_LOBES, RIGHT_LOBES, Lobe
from algorithm.postprocessing import AIR_MAX_HU

SIDE_LOBES = {"left": LEFT_LOBES, "right": RIGHT_LOBES}


@dataclass(frozen=True)
class DenseLungSettings:
    """Where dense tissue next to the lung is lung; recorded in docs/design.md (Dense lung)."""

    work_spacing_mm: float = 2.0  # in-plane work grid (z stays the scan's)
    dense_min_hu: float = AIR_MAX_HU  # denser than aerated lung (air pieces are the lung step's)
    dense_max_hu: float = 150.0  # consolidation and fluid reach +50; bone and contrast lie above
    bone_min_hu: float = 250.0  # a work pixel whose densest voxel is above this is bone or contrast
    rib_span_mm: float = 10.0  # bone this close above or below a slice counts in it (rib gaps)
    vessel_radius_mm: float = 6.0  # bright regions holding a disc this wide are vessels or heart, not ribs
    rays: int = 360  # angular bins per slice and side
    rib_reach_mm: float = 40.0  # the deepest lesion recovered: a wall further than this is not the lung's
    max_gap_deg: float = 45.0  # intercostal gaps and cartilage: rib radius interpolated across this
    wall_margin_mm: float = 3.0  # stay this far inside the ribs' inner surface (intercostal muscle)
    max_outward_deg: float = 125.0  # rays further than this from outward cross to the mediastinum
    hull_slack_mm: float = 6.0  # the pleura bulges this far past the chord across a dent's mouth
    wall_gap_max_mm: float = 15.0  # ribs this close to the lung's envelope are its wall
    dent_min_mm: float = 3.0  # a ray's lung edge this far inside the lung's hull: a dent
    midline_band_mm: float = 22.0  # bone this close to the midline is the spine or the sternum
    min_slice_area_mm2: float = 150.0  # a side's lung smaller than this in a slice casts no rays
    grow_steps: int = 2  # work pixels the recovered region grows within the hull's dense voxels
    height_sigma_mm: float = 12.0  # smoothing that continues a fissure into the lesion's columns
    effusion_hu: tuple[float, float] = (-10.0, 25.0)  # fluid (0-20 HU) outside the lung's hull; muscle is denser
    min_effusion_ml: float = 5.0  # smaller fluid pieces are not reported


@dataclass(frozen=True)
class DenseLung:
    """The lobes with their dense lung and what the step found (the report's "dense_lung" section)."""

    labels: np.ndarray  # uint8 (Z, Y, X) lobes, recovered dense lung included
    recovered_ml: dict[str, float]  # per lobe: dense lung this step added
    effusion_ml: dict[str, float]  # per side: fluid outside the lungs' envelope, kept out


# ---------------------------------------------------------------- work grid


def _block_reduce(values: np.ndarray, block: tuple[int, int], how: str) -> np.ndarray:
    """Per in-plane block of ``block`` voxels, ``how`` ("mean": float32, or "max": the input's
    type) over the block; a partial last block repeats its edge."""
    by, bx = block
    if by == bx == 1:
        return values.astype(np.float32) if how == "mean" else values
    nz, ny, nx = values.shape
    pad = ((0, 0), (0, -ny % by), (0, -nx % bx))
    padded = np.pad(values, pad, mode="edge") if any(p[1] for p in pad) else values
    shaped = padded.reshape(nz, padded.shape[1] // by, by, padded.shape[2] // bx, bx)
    if how == "mean":
        return shaped.sum(axis=(2, 4), dtype=np.float32) / np.float32(by * bx)
    return shaped.max(axis=(2, 4))


def _to_work(mask: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """A scan-grid mask on the work grid: a pixel is set where half its block or more is."""
    return _block_reduce(mask.view(np.uint8), block, "mean") >= 0.5


def _to_scan(mask: np.ndarray, block: tuple[int, int], shape) -> np.ndarray:
    by, bx = block
    return np.repeat(np.repeat(mask, by, axis=1), bx, axis=2)[:, : shape[1], : shape[2]]


# ---------------------------------------------------------------- one slice, one side: rays


@dataclass(frozen=True)
class _Slice:
    lung: np.ndarray  # bool (Y, X): this side's lung
    body: np.ndarray  # bool: the lung opened in plane (its body, without strands and specks)
    other: np.ndarray  # bool: the other side's lung
    dense: np.ndarray  # bool: dense, not bone
    bone: np.ndarray  # bool
    bright: np.ndarray  # bool: thick bright regions (contrast-filled heart and vessels, vertebral bodies)
    effusion_hu: np.ndarray  # bool: in the effusion's HU range
    spacing_mm: tuple[float, float]
    midline_x_mm: float
    body_centre: tuple[float, float]  # (y, x) pixels: between the lungs (outward points away from it)


def _polar(mask: np.ndarray, centre: tuple[float, float], spacing, rays: int):
    """Angle bin and radius (mm) of every set pixel of ``mask`` around ``centre`` (pixel units)."""
    y, x = np.nonzero(mask)
    dy, dx = (y - centre[0]) * spacing[0], (x - centre[1]) * spacing[1]
    angle = np.floor((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * rays).astype(np.int64) % rays
    return y, x, angle, np.hypot(dy, dx)


def _bin_extreme(angle: np.ndarray, radius: np.ndarray, rays: int, maximum: bool) -> np.ndarray:
    out = np.full(rays, -np.inf if maximum else np.inf)
    (np.maximum if maximum else np.minimum).at(out, angle, radius)
    return out


def _first_beyond(points, edge_mm: np.ndarray, rays: int) -> np.ndarray:
    """Per ray, the smallest radius of ``points`` beyond the lung's edge on that ray."""
    _, _, angle, radius = points
    beyond = radius > edge_mm[angle]
    return _bin_extreme(angle[beyond], radius[beyond], rays, maximum=False)


def _fill_gaps(values: np.ndarray, known: np.ndarray, blocked: np.ndarray, max_gap: int) -> np.ndarray:
    """``values`` on a circle with the unknown runs between two known bins (at most ``max_gap``
    long, none blocked) filled linearly; elsewhere unknown is -inf (no wall, nothing recovered)."""
    out = np.where(known, values, -np.inf)
    n = len(values)
    idx = np.flatnonzero(known)
    if idx.size == 0:
        return out
    for a, b in zip(idx, np.roll(idx, -1)):
        gap = (b - a) % n - 1
        if gap <= 0 or gap > max_gap:
            continue
        run = (a + 1 + np.arange(gap)) % n
        if blocked[run].any():
            continue
        t = (np.arange(1, gap + 1)) / (gap + 1)
        out[run] = values[a] + t * (values[b] - values[a])
    return out


def _cavity_limits(s: _Slice, centre, hull_edge: np.ndarray, settings: DenseLungSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ray: the lung's edge (mm from the centre) and the cavity's outer limit (the ribs' inner
    surface less the margin; -inf where the ray crosses the mediastinum or finds no wall), and the
    fluid's limit (the first rib however far, for an effusion deeper than a lesion).
    ``hull_edge``: per ray, the edge of the lung's convex hull."""
    rays = settings.rays
    lung = _polar(s.lung, centre, s.spacing_mm, rays)
    edge = _bin_extreme(lung[2], lung[3], rays, maximum=True)
    bone = _polar(s.bone, centre, s.spacing_mm, rays)
    # the spine is mediastinal; the sternum, anterior of the side's centre, is chest wall
    spine = (np.abs(bone[1] * s.spacing_mm[1] - s.midline_x_mm) <= settings.midline_band_mm) & (bone[0] > centre[0])
    rib = _first_beyond(tuple(a[~spine] for a in bone), edge, rays)
    axial = _first_beyond(tuple(a[spine] for a in bone), edge, rays)
    # the spine where it lies against the lung's envelope walls the paravertebral gutter
    gutter = axial - hull_edge <= settings.wall_gap_max_mm
    rib = np.where(gutter, np.minimum(rib, axial), rib)
    axial = np.where(gutter, np.inf, axial)
    other = _first_beyond(_polar(s.other, centre, s.spacing_mm, rays), edge, rays)
    bright = _first_beyond(_polar(s.bright, centre, s.spacing_mm, rays), edge, rays)
    # the mediastinum: the ray meets the spine, the other lung or contrast-filled vessels before a
    # rib (the heart and the stomach lie inward: ``_outward``); a ray whose rib lies further than a
    # lesion is deep passed an intercostal gap: its wall is interpolated from its neighbours
    mediastinal = (axial < rib) | (other < rib) | (bright < rib - settings.wall_margin_mm)
    known = np.isfinite(edge) & ~mediastinal & (rib - edge <= settings.rib_reach_mm)
    blocked = mediastinal | ~np.isfinite(edge)
    max_gap = int(round(settings.max_gap_deg / 360.0 * rays))
    wall = _fill_gaps(rib, known, blocked, max_gap) - settings.wall_margin_mm
    wall[blocked] = -np.inf
    fluid_wall = np.where(blocked | ~np.isfinite(rib), -np.inf, rib - settings.wall_margin_mm)
    return edge, wall, fluid_wall


def _outward(centre, s: _Slice, settings: DenseLungSettings) -> np.ndarray:
    """Per ray: within ``max_outward_deg`` of the direction from the body's centre to the side's
    centre. A costal lesion lies outward of its lung; the heart, the stomach under a lung's base
    and the mediastinum lie inward."""
    oy = (centre[0] - s.body_centre[0]) * s.spacing_mm[0]
    ox = (centre[1] - s.body_centre[1]) * s.spacing_mm[1]
    out_angle = np.arctan2(oy, ox)
    ray_angle = (np.arange(settings.rays) + 0.5) / settings.rays * 2 * np.pi - np.pi
    difference = np.abs(np.angle(np.exp(1j * (ray_angle - out_angle))))
    return difference <= np.radians(settings.max_outward_deg)


def _slice_candidates(s: _Slice, settings: DenseLungSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dense lung to recover, effusion, the lung's hull) in one slice of one side. A ray whose lung edge lies
    inside the lung's convex hull by ``dent_min_mm`` or more crosses a dent: its dense voxels out
    to the wall are lung. On the other rays, fluid between the lung and the wall is effusion."""
    none = np.zeros_like(s.lung)
    lung = s.lung
    area_mm2 = np.count_nonzero(s.lung) * s.spacing_mm[0] * s.spacing_mm[1]
    if area_mm2 < settings.min_slice_area_mm2:
        return none, none, none
    # the lung's body (opened before the loop): an air bronchogram inside a lesion, or a strand of
    # lung air, is no edge
    if not s.body.any():
        return none, none, none
    s = replace(s, lung=s.body)
    centre = ndimage.center_of_mass(s.lung)
    hull_mask = _hull(s.lung)
    hull = _polar(hull_mask, centre, s.spacing_mm, settings.rays)
    hull_edge = _bin_extreme(hull[2], hull[3], settings.rays, maximum=True)
    edge, wall, fluid_wall = _cavity_limits(s, centre, hull_edge, settings)
    dent_min_mm = max(settings.dent_min_mm, 1.5 * max(s.spacing_mm))  # a pixel's step is no dent
    dent = np.isfinite(edge) & (hull_edge - np.where(np.isfinite(edge), edge, 0.0) >= dent_min_mm)
    y, x, angle, radius = _polar(~lung & ~s.other & (s.dense | s.effusion_hu), centre, s.spacing_mm, settings.rays)
    within = (radius > edge[angle]) & (radius <= wall[angle])
    recover, effusion = none.copy(), none.copy()
    # a dent reaches the ribs where the lung's envelope lies against them; where the lung draws back
    # from the ribs (its base above the liver and spleen) it reaches the envelope, not the ribs
    with np.errstate(invalid="ignore"):  # rays without a wall or a hull: -inf - -inf
        wall_near = (wall - hull_edge)[angle] <= settings.wall_gap_max_mm
    near_hull = wall_near | (radius <= hull_edge[angle] + settings.hull_slack_mm)
    take = within & near_hull & dent[angle] & s.dense[y, x] & _outward(centre, s, settings)[angle]
    recover[y[take], x[take]] = True
    outward = _outward(centre, s, settings)[angle]
    fluid = (radius > edge[angle]) & (radius <= fluid_wall[angle]) & ~dent[angle] & outward & s.effusion_hu[y, x]
    effusion[y[fluid], x[fluid]] = True
    return recover, effusion, hull_mask


# ---------------------------------------------------------------- 3D


def _touching(candidates: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """The 3D pieces of ``candidates`` that touch ``lung`` (face neighbours)."""
    pieces, count = ndimage.label(candidates)
    if count == 0:
        return candidates
    touch = np.unique(pieces[dilate_face_neighbours(lung) & candidates])
    keep = np.zeros(count + 1, bool)
    keep[touch] = True
    keep[0] = False
    return keep[pieces]


def _thick_in_plane(mask: np.ndarray, radius_mm: float, spacing_yx) -> np.ndarray:
    """What of ``mask`` a disc of ``radius_mm`` fits in, per slice, grown back by one pixel
    (ribs are thinner; the heart's chambers, the aorta and the vertebral bodies are not)."""
    ry, rx = (max(1, int(round(radius_mm / s))) for s in spacing_yx)
    yy, xx = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    disc = ((yy / ry) ** 2 + (xx / rx) ** 2 <= 1.0)[None]
    opened = ndimage.binary_opening(mask, structure=disc)
    return ndimage.binary_dilation(opened, structure=np.ones((1, 3, 3), bool)) & mask


def _opened_in_plane(mask: np.ndarray) -> np.ndarray:
    """``mask`` opened by a 3 x 3 square in each slice (separable: two passes of min and max)."""
    eroded = ndimage.minimum_filter(mask.view(np.uint8), size=(1, 3, 3), mode="constant", cval=0)
    return ndimage.maximum_filter(eroded, size=(1, 3, 3), mode="constant", cval=0).view(bool) & mask


def _hull(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a slice's mask, computed in its bounding box (the full slice costs more)."""
    box = bounding_box(mask)
    out = np.zeros_like(mask)
    if box is not None:
        out[box] = convex_hull_image(mask[box])
    return out


def _between_lungs(sides: dict[str, np.ndarray], vertebra: np.ndarray) -> np.ndarray:
    """The mediastinum in front of the spine: per slice and row, the pixels between the right
    lung's medial edge and the left lung's (LPS: the left lung at larger x), anterior of the
    vertebral body (``vertebra``: its pixels). The paravertebral gutters behind the body's front
    stay open: a posterior lesion lies there."""
    right, left = sides["right"], sides["left"]
    nz, ny, nx = right.shape
    x = np.arange(nx)
    right_edge = np.where(right, x, -1).max(axis=2)  # (Z, Y)
    left_edge = np.where(left, x, nx).min(axis=2)
    out = (x[None, None] > right_edge[..., None]) & (x[None, None] < left_edge[..., None])
    out &= ((right_edge >= 0) & (left_edge < nx))[..., None]
    y = np.arange(ny)
    lung_y = np.where(right | left, y[None, :, None], 0).sum(axis=(1, 2)) / np.maximum((right | left).sum(axis=(1, 2)), 1)
    behind = vertebra & (y[None, :, None] > lung_y[:, None, None])
    front = np.where(behind, y[None, :, None], ny).min(axis=(1, 2))  # (Z,): the body's anterior edge
    return out & (y[None, :, None] < front[:, None, None])


def _lungs_y(sides: dict[str, np.ndarray], k: int) -> float:
    """The mean row of both lungs in slice ``k`` (pixels)."""
    rows = np.nonzero(sides["left"][k] | sides["right"][k])[0]
    return float(rows.mean()) if rows.size else 0.0


def _side_masks(work_labels: np.ndarray) -> dict[str, np.ndarray]:
    return {side: np.isin(work_labels, [int(v) for v in lobes]) for side, lobes in SIDE_LOBES.items()}


def _midline_x_mm(sides: dict[str, np.ndarray], spacing_x_mm: float) -> float:
    """Half-way between the right lung's medial edge and the left lung's (LPS: left is +x)."""
    right_x = np.nonzero(sides["right"].any(axis=(0, 1)))[0]
    left_x = np.nonzero(sides["left"].any(axis=(0, 1)))[0]
    if right_x.size and left_x.size:
        return 0.5 * (np.percentile(np.nonzero(sides["right"])[2], 99) + np.percentile(np.nonzero(sides["left"])[2], 1)) * spacing_x_mm
    lung_x = right_x if right_x.size else left_x
    return 0.5 * (lung_x[0] + lung_x[-1]) * spacing_x_mm if lung_x.size else 0.0


# ---------------------------------------------------------------- lobes of the recovered voxels


def fissure_heights(labels: np.ndarray, lower: tuple[int, ...], upper: tuple[int, ...], sigma_px: tuple[float, float]) -> np.ndarray:
    """The border between ``lower`` and ``upper`` lobes as a height field (z index, float) over
    every column (Y, X). Where a column holds both, half-way between the top of ``lower`` and the
    bottom of ``upper``; elsewhere continued by normalised Gaussian smoothing of those heights;
    held above a column's ``lower`` lung and below its ``upper`` lung, so that every voxel already
    labelled keeps its side of the border."""
    z = np.arange(labels.shape[0])[:, None, None]
    is_lower, is_upper = np.isin(labels, lower), np.isin(labels, upper)
    top_lower = np.where(is_lower, z, -1).max(axis=0).astype(np.float32)
    bottom_upper = np.where(is_upper, z, labels.shape[0]).min(axis=0).astype(np.float32)
    both = (top_lower >= 0) & (bottom_upper < labels.shape[0])
    height = np.where(both, 0.5 * (top_lower + bottom_upper), 0.0).astype(np.float32)
    if both.any():
        weight = ndimage.gaussian_filter(both.astype(np.float32), sigma_px, mode="nearest")
        smooth = ndimage.gaussian_filter(height, sigma_px, mode="nearest") / np.maximum(weight, 1e-6)
        known = weight > 1e-3
        if not known.all():  # columns far from every border: the nearest continued height
            _, nearest = ndimage.distance_transform_edt(~known, return_indices=True)
            smooth = smooth[tuple(nearest)]
        height = np.where(both, height, smooth)
    else:
        height[:] = labels.shape[0] / 2.0
    height = np.maximum(height, top_lower + 0.5)  # a column's lower-lobe lung stays below
    return np.minimum(height, bottom_upper - 0.5)  # and its upper-lobe lung above


def lobes_by_fissures(labels: np.ndarray, where: np.ndarray, spacing_mm_zyx, sigma_mm: float, side_of: np.ndarray,
                      column_mm: float = 2.0) -> np.ndarray:
    """The lobe of each voxel of ``where`` from the fissure height fields of ``labels``;
    ``side_of`` (bool, same shape) is True on the left side. The heights are found on every k-th
    column (about ``column_mm`` apart: a fissure is smooth) and read at each voxel's nearest one."""
    step = tuple(max(1, int(round(column_mm / s))) for s in spacing_mm_zyx[1:])
    columns = labels[:, :: step[0], :: step[1]]
    sigma_px = tuple(sigma_mm / (s * k) for s, k in zip(spacing_mm_zyx[1:], step))
    z, y, x = np.nonzero(where)
    yx = (np.minimum(y // step[0], columns.shape[1] - 1), np.minimum(x // step[1], columns.shape[2] - 1))
    out = np.zeros(z.size, np.uint8)
    left = side_of[where]
    if left.any():
        h = fissure_heights(columns, (int(Lobe.LLL),), (int(Lobe.LUL),), sigma_px)[yx]
        out[left] = np.where(z[left] < h[left], int(Lobe.LLL), int(Lobe.LUL))
    right = ~left
    if right.any():
        oblique = fissure_heights(columns, (int(Lobe.RLL),), (int(Lobe.RUL), int(Lobe.RML)), sigma_px)[yx]
        upper = np.where(columns == int(Lobe.RLL), 0, columns)
        horizontal = fissure_heights(upper, (int(Lobe.RML),), (int(Lobe.RUL),), sigma_px)[yx]
        below_h = (z < horizontal) if np.any(columns == int(Lobe.RML)) else np.zeros(z.size, bool)
        lobe = np.where(z < oblique, int(Lobe.RLL), np.where(below_h, int(Lobe.RML), int(Lobe.RUL)))
        out[right] = lobe[right]
    return out


# ---------------------------------------------------------------- the step


def recover_dense_lung(
    hu: np.ndarray, labels: np.ndarray, spacing_mm_zyx: tuple[float, float, float], settings: DenseLungSettings | None = None
) -> DenseLung:
    """``labels`` (uint8 lobes on the grid of ``hu``) with the dense lung between the aerated lung
    and the chest wall added to the lobes; the pleural effusion measured and kept out. Works in the
    lungs' box grown by the ribs' reach (the rest of the scan cannot change)."""
    settings = settings or DenseLungSettings()
    block = tuple(max(1, int(round(settings.work_spacing_mm / s))) for s in spacing_mm_zyx[1:])
    empty = DenseLung(labels, {Lobe(v).name: 0.0 for v in (*LEFT_LOBES, *RIGHT_LOBES)}, {"left": 0.0, "right": 0.0})
    margin_mm = (settings.rib_span_mm, settings.rib_reach_mm + 20.0, settings.rib_reach_mm + 20.0)
    box = bounding_box(labels > 0)
    if box is None:
        return empty
    grow = [int(np.ceil(m / s)) for m, s in zip(margin_mm, spacing_mm_zyx)]
    box = tuple(slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(box, grow, labels.shape))
    # whole work blocks from the box's start, so that the work grid is the same wherever it lies
    box = (box[0],) + tuple(slice(b.start - b.start % k, b.stop) for b, k in zip(box[1:], block))
    work = _WorkSlices.of(np.asarray(hu[box]), np.asarray(labels[box]), spacing_mm_zyx, block, settings)
    found = {side: _side_pass(work, side, settings) for side in ("left", "right")}
    sub = np.asarray(labels[box])
    new_left = found["left"][0] & (sub == 0) & (np.asarray(hu[box]) <= settings.dense_max_hu)
    new_right = found["right"][0] & (sub == 0) & (np.asarray(hu[box]) <= settings.dense_max_hu) & ~new_left
    new = new_left | new_right
    out = labels.copy()
    voxel_ml = float(np.prod(spacing_mm_zyx)) / 1000.0
    if new.any():
        sub_out = sub.copy()
        sub_out[new] = lobes_by_fissures(sub, new, spacing_mm_zyx, settings.height_sigma_mm, new_left)
        out[box] = sub_out
    recovered = out[box][new]
    recovered_ml = {Lobe(v).name: round(float(np.count_nonzero(recovered == int(v))) * voxel_ml, 1)
                    for v in (*LEFT_LOBES, *RIGHT_LOBES)}
    effusion_ml = {}
    for side in ("left", "right"):
        fluid_ml = float(np.count_nonzero(found[side][1] & (sub == 0))) * voxel_ml
        effusion_ml[side] = round(fluid_ml, 1) if fluid_ml >= settings.min_effusion_ml else 0.0
    return DenseLung(out, recovered_ml, effusion_ml)


@dataclass(frozen=True)
class _WorkSlices:
    """The work grid of the lungs' box: what every slice's rays read."""

    sides: dict[str, np.ndarray]  # bool (Z, Y, X) per side: the lung (half a block or more)
    bodies: dict[str, np.ndarray]  # the same opened in plane by a 3 x 3 square
    dense: np.ndarray
    bone: np.ndarray  # ribs, sternum and spine, with the ribs of the slices just above and below
    bright: np.ndarray
    fluid: np.ndarray
    mediastinum: np.ndarray
    spacing_yx: tuple[float, float]
    midline_x_mm: float
    block: tuple[int, int]
    scan_shape: tuple[int, int, int]

    @classmethod
    def of(cls, hu: np.ndarray, labels: np.ndarray, spacing_mm_zyx, block, settings: DenseLungSettings) -> _WorkSlices:
        spacing_yx = tuple(s * b for s, b in zip(spacing_mm_zyx[1:], block))
        # a work pixel is lung where half its block is (scattered air voxels inside a lesion are not)
        work_labels = np.where(_to_work(labels > 0, block), _block_reduce(labels, block, "max"), 0).astype(np.uint8)
        mean_hu = _block_reduce(hu, block, "mean")
        bone = _block_reduce(hu, block, "max") > settings.bone_min_hu
        bright = _thick_in_plane(bone, settings.vessel_radius_mm, spacing_yx)  # contrast-filled heart and vessels
        # ribs run obliquely: a slice meets one in some directions only; the ribs of the slices close
        # above and below close the gaps (the cage, not this slice's cut through it, is the wall)
        reach_z = int(np.ceil(settings.rib_span_mm / spacing_mm_zyx[0]))
        bone = ndimage.maximum_filter1d((bone & ~bright).view(np.uint8), 2 * reach_z + 1, axis=0).view(bool) & ~bright
        dense = (mean_hu > settings.dense_min_hu) & (mean_hu <= settings.dense_max_hu) & ~bone
        smooth_hu = ndimage.uniform_filter(mean_hu, size=(1, 3, 3))  # fluid is uniform; noise is not
        fluid = (smooth_hu >= settings.effusion_hu[0]) & (smooth_hu <= settings.effusion_hu[1]) & ~bone
        sides = _side_masks(work_labels)
        midline = _midline_x_mm(sides, spacing_yx[1])
        band = np.abs(np.arange(work_labels.shape[2]) * spacing_yx[1] - midline) <= settings.midline_band_mm
        mediastinum = _between_lungs(sides, (bright | bone) & band[None, None, :])
        bodies = {side: _opened_in_plane(lung) for side, lung in sides.items()}
        return cls(sides, bodies, dense, bone, bright, fluid, mediastinum, spacing_yx, midline, block, hu.shape)

    def slice(self, side: str, k: int) -> _Slice:
        other = "right" if side == "left" else "left"
        centre = (_lungs_y(self.sides, k), self.midline_x_mm / self.spacing_yx[1])
        return _Slice(self.sides[side][k], self.bodies[side][k], self.sides[other][k], self.dense[k], self.bone[k],
                      self.bright[k], self.fluid[k], self.spacing_yx, self.midline_x_mm, centre)


def _side_pass(work: _WorkSlices, side: str, settings: DenseLungSettings) -> tuple[np.ndarray, np.ndarray]:
    """(dense lung to add, effusion) of one side, on the scan grid of the box."""
    lung = work.sides[side]
    other = work.sides["right" if side == "left" else "left"]
    recover, effusion, hull = (np.zeros(lung.shape, bool) for _ in range(3))
    for k in np.flatnonzero(lung.any(axis=(1, 2))):
        recover[k], effusion[k], hull[k] = _slice_candidates(work.slice(side, k), settings)
    # a lesion is thick; the partial-volume rim of a pleura one pixel thin is not
    recover = _touching(_opened_in_plane(recover & ~work.mediastinum), lung)
    within = hull & work.dense & ~lung & ~other & ~work.mediastinum  # dent edges: grown within the hull
    for _ in range(settings.grow_steps):
        recover |= dilate_face_neighbours(recover) & within
    effusion = _touching(effusion & ~recover, dilate_face_neighbours(dilate_face_neighbours(lung | recover)))
    return _to_scan(recover, work.block, work.scan_shape), _to_scan(effusion, work.block, work.scan_shape)
