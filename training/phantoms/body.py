"""Torso, chest wall, bones, mediastinum, upper abdomen and the table.

All shapes are implicit functions of the patient coordinates X (left), Y (posterior), Z
(superior) in mm, evaluated on the model grid with numpy. ``Thorax`` holds the derived geometry
that the lungs, airways and vessels share (where the lungs, the spine, the heart, the hila are).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import BodyParams
from .fields import polyline_points, smooth_field, splat_spheres
from .grid import Grid, PatientFrame

AIR_HU = -1000.0
# The myocardium is the outer shell of the heart's measure (<1 inside): 1 - sqrt(0.72) = 15 % of
# each semi-axis, 6-11 mm (left ventricular wall about 10 mm, right 3-5 mm).
MYOCARDIUM_INNER = 0.72
RIB_END_PHI = 0.85 * np.pi  # the bony ribs end here (0 posterior, pi anterior), the cartilages begin
CARTILAGE_RISE = 0.6  # rib periods a costal cartilage rises from its rib's end to the sternum
STERNUM_HALF_WIDTH_MM = 14.0


@dataclass(frozen=True)
class Thorax:
    """Geometry derived from ``BodyParams`` (all mm, patient frame)."""

    p: BodyParams

    # Lungs: each an ellipse per axial slice, shrinking towards the apex.
    @property
    def cy(self) -> float:
        return 0.0

    @property
    def cage_half_width(self) -> float:
        return self.p.lung_center_x_mm + self.p.lung_half_width_mm + 5.0

    @property
    def marrow_hu(self) -> float:
        """HU of cancellous bone (v1: 0.3 x the cortical value)."""
        return 0.3 * self.p.bone_hu if self.p.cancellous_hu is None else self.p.cancellous_hu

    @property
    def posterior_element_hu(self) -> float:
        """HU of the vertebral arches and processes (v1: solid cortex)."""
        return self.p.bone_hu

    @property
    def cage_half_depth(self) -> float:
        return self.p.lung_half_depth_mm + 4.0

    @property
    def spine_y(self) -> float:
        return self.cy + self.cage_half_depth - 1.5 * self.p.spine_radius_mm

    @property
    def carina_z(self) -> float:
        return 0.52 * self.p.apex_height_mm

    @property
    def trachea_y(self) -> float:
        return self.spine_y - self.p.spine_radius_mm - 24.0

    def hilum(self, side: int) -> np.ndarray:
        """End of the main bronchus of the left (+1) or right (-1) lung."""
        if side > 0:
            return np.array([36.0, self.trachea_y + 10.0, self.carina_z - 38.0])
        return np.array([-32.0, self.trachea_y + 6.0, self.carina_z - 22.0])

    def width_scale(self, z: np.ndarray) -> np.ndarray:
        """Cross-section scale of the lungs at height z: 1 at the base, 0 at the apex."""
        apex = self.p.apex_height_mm
        u = np.clip((z - 0.1 * apex) / (0.9 * apex), 0.0, 1.0)
        return np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0)) * (1.0 + 0.06 * (1 - u))

    def lung_ellipse(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, side: int) -> np.ndarray:
        """Normalised squared radius of the lung ellipse of one side (<1 inside)."""
        s = np.maximum(self.width_scale(z), 1e-3)
        apex_frac = np.clip(z / self.p.apex_height_mm, 0.0, 1.0)
        cx = side * self.p.lung_center_x_mm * (1.0 - 0.15 * apex_frac)
        cy = self.cy + 0.25 * self.p.lung_half_depth_mm * apex_frac  # the apex sits posteriorly
        # A superellipse (exponent 2.5, computed as u^2 sqrt(u) for speed) fills the cage better.
        u = np.abs((x - cx) / (self.p.lung_half_width_mm * s))
        v = np.abs((y - cy) / (self.p.lung_half_depth_mm * s))
        return u * u * np.sqrt(u) + v * v * np.sqrt(v)

    cage_exponent = 3.0  # the cage measure is homogeneous of this degree in (x, y - cy)
    # v2: muscle (intercostals, serratus) fills this many mm outside the cage under the
    # subcutaneous fat, so the ribs lie in muscle; 0 (v1): the fat reaches the ribs where the wall
    # is thin, and the ribs are cut away there.
    rib_muscle_mm = 0.0

    def cage(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """Superellipse measure of the inner rib cage (<1 inside); the same at every height z."""
        u = np.abs(x / self.cage_half_width)
        v = np.abs((y - self.cy) / self.cage_half_depth)
        return u * u * u + v * v * v

    def dome(self, x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
        """Height of the hemidiaphragm under the lung of ``side``: a dome, deepest posteriorly."""
        cx = side * self.p.lung_center_x_mm
        q = ((x - cx) / (self.p.lung_half_width_mm * 1.05)) ** 2 + (
            (y - self.cy + 0.15 * self.p.lung_half_depth_mm) / (self.p.lung_half_depth_mm * 1.1)
        ) ** 2
        top = 0.0 if side < 0 else -self.p.left_dome_drop_mm
        posterior = np.clip((y - self.cy) / self.p.lung_half_depth_mm, 0.0, 1.0)
        q = np.clip(q, 0.0, 1.6)
        return top - self.p.recess_depth_mm * q * np.sqrt(np.sqrt(q)) - self.p.recess_posterior_mm * posterior**2

    def heart(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Ellipsoid measure of the heart (<1 inside), long axis to the left, front and down."""
        k = self.p.heart_scale
        xc, yc, zc = 20.0 * k, self.cy - 0.4 * self.p.lung_half_depth_mm, 38.0 * k - 0.5 * self.p.left_dome_drop_mm
        c, s = np.cos(np.radians(-35)), np.sin(np.radians(-35))
        u = c * (x - xc) - s * (y - yc)
        v = s * (x - xc) + c * (y - yc)
        return (u / (60 * k)) ** 2 + (v / (42 * k)) ** 2 + ((z - zc) / (55 * k)) ** 2

    def mediastinum(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Where the lungs may not go: midline, great vessels, hila, spine and heart."""
        d = self.p.lung_half_depth_mm
        hilum_bulge = 14.0 * np.exp(-(((z - self.carina_z + 28.0) / 28.0) ** 2))
        upper = ((x - 4.0) / (24.0 + hilum_bulge)) ** 2 + ((y - self.cy - 0.05 * d) / (0.7 * d)) ** 2 < 1.0
        band = np.abs(x - 3.0) < 5.0
        r = self.p.spine_radius_mm
        spine = (x / (r + 12.0)) ** 2 + ((y - self.spine_y - 0.8 * r) / (1.9 * r)) ** 2 < 1.0
        return upper | band | spine | (self.heart(x, y, z) < 1.0)

    def aorta_path(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre line (mm) and radius of the ascending aorta, the arch and the descending aorta."""
        d = self.p.lung_half_depth_mm
        ys, r = self.spine_y, self.p.spine_radius_mm
        zc = self.carina_z
        nodes = np.array(
            [
                [2.0, self.cy - 0.3 * d, 45.0],
                [0.0, self.cy - 0.35 * d, zc + 5.0],
                [8.0, self.trachea_y - 12.0, zc + 25.0],
                [20.0, self.trachea_y + 8.0, zc + 22.0],
                [r + 6.0, ys - 0.3 * r, zc + 2.0],
                [r + 4.0, ys - 0.4 * r, -40.0],
                [6.0, ys - r - 8.0, -150.0],
            ]
        )
        radius = np.array([15.0, 14.0, 13.0, 12.5, 12.0, 11.0, 10.0])
        return nodes, radius

    def vessels_mediastinum(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Other mediastinal tubes: pulmonary trunk and arteries, superior vena cava, oesophagus."""
        d = self.p.lung_half_depth_mm
        zc = self.carina_z
        pa_root = np.array([18.0, self.cy - 0.4 * d, 55.0])
        bif = np.array([10.0, self.cy - 0.1 * d, zc - 12.0])
        left = self.hilum(+1) + np.array([6.0, -8.0, 12.0])
        right = self.hilum(-1) + np.array([-4.0, -12.0, -6.0])
        svc = np.array([[-22.0, self.cy - 0.3 * d, self.p.apex_height_mm], [-20.0, self.cy - 0.3 * d, 50.0]])
        eso = np.array(
            [[2.0, self.trachea_y + 15.0, self.p.apex_height_mm + 60], [10.0, self.spine_y - self.p.spine_radius_mm - 8, -40.0]]
        )
        return [
            (np.stack([pa_root, bif, left]), np.array([14.0, 12.0, 10.0])),
            (np.stack([bif, right]), np.array([11.0, 9.5])),
            (svc, np.array([10.0, 11.0])),
            (eso, np.array([7.0, 7.0])),
        ]

    def torso(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, inset_mm) -> np.ndarray:
        """Measure of the body outline shrunk by ``inset_mm`` (<1 inside)."""
        return _torso(self, x, y, inset_mm)

    def paraspinal(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """Where muscle fills the space behind the vertebral bodies (v1: nowhere)."""
        return None

    def under_the_back(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """Where the vertebrae's posterior elements may be drawn (v1: anywhere)."""
        return True

    def fat_inset_mm(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """Subcutaneous fat thickness (mm) at each point of the outline: uniform in v1."""
        return self.p.fat_mm

    def draw_limbs(self, hu: np.ndarray, x, y, z, body: np.ndarray) -> np.ndarray:
        """Draw what lies outside the torso but belongs to the patient; returns the body mask."""
        return body

    def texture_tissue(self, hu: np.ndarray, body: np.ndarray, grid: Grid) -> None:
        """Structure inside fat and muscle (v2 only; v1 tissue is uniform but for a faint drift)."""

    def draw_surroundings(self, hu: np.ndarray, grid: Grid, frame: PatientFrame, body: np.ndarray, x, y, z) -> None:
        """Draw the table (and in v2 cushions and blankets) where the patient is not."""
        shell, core = _table(grid, frame, self, self.p.table_kind)
        table_free = ~body
        hu[table_free & shell] = 250.0
        hu[table_free & core] = -850.0 if self.p.table_kind else -400.0


def tubes_density(
    grid: Grid, frame: PatientFrame, tubes: list[tuple[np.ndarray, np.ndarray]], extra_mm: float = 0.0
) -> np.ndarray:
    """Occupancy (0..1) of tubes given as (nodes mm (N,3), radii mm (N,)), optionally widened."""
    out = np.zeros(grid.shape_zyx, dtype=np.float32)
    spacing_zyx = np.array(grid.spacing_mm[::-1])
    step = 0.5 * float(min(grid.spacing_mm))
    for nodes, radii in tubes:
        r = radii + extra_mm
        pts, rad = polyline_points(nodes, r, max(step, 0.3 * float(r.min())))
        splat_spheres(grid.shape_zyx, frame.to_index(pts, grid), rad, spacing_zyx, out)
    return out


def _torso(th: Thorax, x: np.ndarray, y: np.ndarray, inset_mm: float) -> np.ndarray:
    """Superellipse measure of the body outline shrunk by ``inset_mm`` (<1 inside); flat back."""
    p = th.p
    half_w = th.cage_half_width + 9.0 + 0.6 * p.muscle_mm + p.fat_mm - inset_mm
    front = th.cage_half_depth + 5.0 + 0.6 * p.muscle_mm + 0.6 * p.fat_mm - inset_mm
    back = th.cage_half_depth + 14.0 + 0.8 * p.muscle_mm + 0.4 * p.fat_mm - inset_mm
    dy = y - th.cy
    u = np.abs(x / half_w)
    # Rounder front (exponent 2), flatter back on the table (exponent 3).
    return np.where(dy < 0, u * u + (dy / front) ** 2, u * u * u + np.abs(dy / back) ** 3)


def _ribs_and_scapulae(th: Thorax, x, y, z, cage: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of rib cortex, rib marrow and scapula: twelve rib pairs sloping down to the front.

    Evaluated only in the chest-wall shell just outside the cage (a small share of the grid).
    """
    p = th.p
    idx, px, pz, wall_mm, phi = _chest_wall_shell(th, x, y, z, cage)
    k, e = _rib_tube(p, wall_mm, pz, phi, p.rib_period_mm * (1.0 - np.cos(phi)))
    ok = (k >= 0) & (k <= 11) & (np.abs(px) > 20.0) & (phi < RIB_END_PHI)
    top, bottom = p.apex_height_mm - 5.0, 0.4 * p.apex_height_mm
    scapula = (np.abs(wall_mm - 16.0) < 2.0) & (phi > 0.2 * np.pi) & (phi < 0.42 * np.pi) & (pz < top) & (pz > bottom)
    return idx[ok & (e < 1.0) & (e >= 0.45)], idx[ok & (e < 0.45)], idx[scapula]


def _chest_wall_shell(th: Thorax, x, y, z, cage: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flat indices of the shell just outside the cage with each point's z, distance outside the
    cage (mm) and angle around the body (0 posterior, pi anterior)."""
    idx = np.flatnonzero((cage >= 1.0) & (cage < 1.9))
    px, py, pz, pc = x.flat[idx], y.flat[idx], z.flat[idx], cage.flat[idx]
    rho = np.sqrt(px**2 + (py - th.cy) ** 2)
    # Radial distance outside the cage: the measure is homogeneous, so p / pc^(1/n) lies on it.
    inv = 1.0 / np.cbrt(pc) if th.cage_exponent == 3.0 else pc ** (-1.0 / th.cage_exponent)
    return idx, px, pz, rho * (1.0 - inv), np.arctan2(np.abs(px), py - th.cy)


def _rib_tube(p: BodyParams, wall_mm, pz, phi, drop) -> tuple[np.ndarray, np.ndarray]:
    """(rib number from the top, elliptical measure of the rib's cross-section (<1 inside)) of each
    point, for ribs that lie ``drop`` mm below the first rib's posterior level at angle ``phi``."""
    first = p.apex_height_mm - 12.0
    k = np.round((first - drop - pz) / p.rib_period_mm)
    dz = pz - (first - drop - k * p.rib_period_mm)
    half_h = 0.2 * p.rib_period_mm * (1.0 + 0.3 * (phi / np.pi))
    return k, ((wall_mm - 5.0) / 3.5) ** 2 + (dz / half_h) ** 2


def _costal_cartilages(th: Thorax, x, y, z, cage: np.ndarray) -> np.ndarray:
    """Flat indices of the costal cartilages of ribs 1-7: from each rib's anterior end, rising by
    ``CARTILAGE_RISE`` rib periods to the sternum's edge."""
    p = th.p
    idx, px, pz, wall_mm, phi = _chest_wall_shell(th, x, y, z, cage)
    along = np.clip((phi - RIB_END_PHI) / (np.pi - RIB_END_PHI), 0.0, 1.0)
    drop = p.rib_period_mm * (1.0 - np.cos(RIB_END_PHI) - CARTILAGE_RISE * along)
    k, e = _rib_tube(p, wall_mm, pz, phi, drop)
    ok = (k >= 0) & (k <= 6) & (phi >= RIB_END_PHI) & (np.abs(px) > STERNUM_HALF_WIDTH_MM) & (e < 1.0)
    return idx[ok]


def _spine(th: Thorax, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cortex of the bodies, posterior elements, marrow, canal) of vertebrae with discs every rib period."""
    r = th.p.spine_radius_mm
    ys = th.spine_y
    period = th.p.rib_period_mm
    disc = np.abs(((z - 7.0) % period) - period / 2) > period / 2 - 2.5
    body = (x / r) ** 2 + ((y - ys) / (0.9 * r)) ** 2
    canal_y = ys + 0.9 * r + 8.0
    canal = (x / 8.0) ** 2 + ((y - canal_y) / 7.5) ** 2
    arch = (canal < 2.6) & (canal >= 1.0)
    spinous = (np.abs(x) < 3.5) & (y > canal_y) & (y < canal_y + 32.0)
    transverse = (np.abs(y - canal_y + 2) < 4.0) & (np.abs(x) < 32.0) & (np.abs(x) > 8.0)
    cortex = (body < 1.0) & (body >= 0.72) & ~disc
    marrow = (body < 0.72) & ~disc
    return cortex, arch | spinous | transverse, marrow, canal < 1.0


def _sternum(th: Thorax, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    front = th.cy - th.cage_half_depth - 8.0
    e = (x / STERNUM_HALF_WIDTH_MM) ** 2 + ((y - front) / 6.5) ** 2
    zr = (z < th.p.apex_height_mm - 25.0) & (z > 5.0)
    return zr & (e < 1.0) & (e >= 0.5), zr & (e < 0.5)


def _abdomen(th: Thorax, x, y, z, domes: dict[int, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Liver, spleen, stomach (with its gas bubble) under the diaphragm."""
    p = th.p
    below_r = z < domes[-1] - 4.0
    below_l = z < domes[+1] - 4.0
    liver = below_r & (x < 25.0 - 0.6 * (y - th.cy)) | (below_r & below_l & (x < 10.0))
    spleen = below_l & (((x - 0.8 * th.cage_half_width) / 30.0) ** 2 + ((y - th.cy - 0.45 * p.lung_half_depth_mm) / 45.0) ** 2 < 1.0)
    stomach_c = np.array([0.55 * th.cage_half_width, th.cy - 0.25 * p.lung_half_depth_mm, -p.left_dome_drop_mm - 45.0])
    stomach = below_l & ~spleen & (
        ((x - stomach_c[0]) / 45.0) ** 2 + ((y - stomach_c[1]) / 40.0) ** 2 + ((z - stomach_c[2]) / 50.0) ** 2 < 1.0
    )
    gas_level = stomach_c[2] + float(rng.uniform(5, 35))
    gas = stomach & (z > gas_level)
    return liver & ~spleen, spleen, stomach & ~gas, gas


def _table(grid: Grid, frame: PatientFrame, th: Thorax, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """(shell, core) masks of the table in the scanner frame (it does not rotate with the patient)."""
    x = grid.axis_mm(0)[None, :]
    y = grid.axis_mm(1)[:, None]
    back = frame.translation_mm[1] + th.cy + th.cage_half_depth + 14.0 + 0.8 * th.p.muscle_mm + 0.4 * th.p.fat_mm
    curve = 0.0 if kind == 0 else 4e-4
    top = back + 1.0 - curve * x**2
    thick = [6.0, 12.0, 18.0][kind]
    wide = np.abs(x) < 230.0
    shell = wide & (((y >= top) & (y < top + 2.5)) | ((y >= top + thick - 2.5) & (y < top + thick)))
    core = wide & (y >= top + 2.5) & (y < top + thick - 2.5)
    return shell, core


@dataclass
class BodyRender:
    """HU of everything but the lungs, and the masks the other modules need."""

    hu: np.ndarray
    inside_body: np.ndarray
    mediastinum: np.ndarray
    domes: dict[int, np.ndarray]  # hemidiaphragm height (mm) under the left (+1) and right (-1) lung


def render_body(
    th: Thorax, grid: Grid, frame: PatientFrame, x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator
) -> BodyRender:
    """HU of torso, bones, organs and table on the model grid (lungs are drawn over it later)."""
    p = th.p
    shape = grid.shape_zyx
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    texture = smooth_field(rng, shape, 24) * 6.0  # tissue inhomogeneity
    body = th.torso(x, y, z, 0.0) < 1.0
    hu[body] = 10.0  # skin
    hu[th.torso(x, y, z, 2.0) < 1.0] = p.fat_hu
    muscle = th.torso(x, y, z, th.fat_inset_mm(x, y, z)) < 1.0
    cage = th.cage(x, y, z)
    if th.rib_muscle_mm > 0:
        idx, _, _, wall_mm, _ = _chest_wall_shell(th, x, y, z, cage)
        under_skin = th.torso(x.flat[idx], y.flat[idx], z.flat[idx], 4.0) < 1.0
        muscle.flat[idx[(wall_mm < th.rib_muscle_mm) & under_skin]] = True
    paraspinal = th.paraspinal(x, y, z)
    if paraspinal is not None:
        paraspinal &= th.torso(x, y, z, 4.0) < 1.0
        muscle |= paraspinal
    hu[muscle] = p.muscle_hu
    inside = cage < 1.0
    hu[inside] = p.fat_hu + 10.0  # mediastinal fat fills what organs leave
    if paraspinal is not None:
        hu[inside & paraspinal] = p.muscle_hu
    domes = {side: th.dome(x, y, side) for side in (+1, -1)}
    dia_z = np.minimum(domes[-1], domes[+1])
    below = inside & (z < np.where(x < 0, domes[-1], domes[+1]))
    hu[below] = p.muscle_hu  # diaphragm muscle; organs below are drawn next
    liver, spleen, stomach, gas = _abdomen(th, x, y, z, domes, rng)
    hu[below & liver] = p.liver_hu
    hu[below & spleen] = p.liver_hu - 10.0
    hu[below & stomach] = 25.0
    hu[below & gas] = AIR_HU
    heart = inside & (z > dia_z - 10)
    heart_measure = th.heart(x, y, z)
    hu[heart & (heart_measure < 1.0)] = p.blood_hu
    if p.myocardium_hu is not None:  # the wall around contrast-filled chambers
        hu[heart & (heart_measure < 1.0) & (heart_measure >= MYOCARDIUM_INNER)] = p.myocardium_hu
    tubes = [th.aorta_path()] + th.vessels_mediastinum()
    occ = tubes_density(grid, frame, tubes[:-1])
    hu += occ * (p.blood_hu - hu) * inside
    eso = tubes_density(grid, frame, tubes[-1:])
    hu += eso * (p.muscle_hu - hu) * inside
    rib_cortex, rib_marrow, scapula = (i[muscle.flat[i]] for i in _ribs_and_scapulae(th, x, y, z, cage))
    s_cortex, s_marrow = _sternum(th, x, y, z)
    v_cortex, v_posterior, v_marrow, canal = _spine(th, x, y, z)
    hu[s_marrow | v_marrow] = th.marrow_hu
    hu.flat[rib_marrow] = th.marrow_hu
    hu[s_cortex | v_cortex] = p.bone_hu
    hu[v_posterior & th.under_the_back(x, y, z)] = th.posterior_element_hu
    hu.flat[rib_cortex] = p.bone_hu
    if p.cartilage_hu is not None:
        cartilage = _costal_cartilages(th, x, y, z, cage)
        hu.flat[cartilage[muscle.flat[cartilage]]] = p.cartilage_hu
    hu.flat[scapula] = 0.7 * p.bone_hu
    hu[canal] = 15.0
    body = th.draw_limbs(hu, x, y, z, body)
    th.texture_tissue(hu, body, grid)
    hu[body] += texture[body]
    th.draw_surroundings(hu, grid, frame, body, x, y, z)
    return BodyRender(hu=hu, inside_body=body, mediastinum=th.mediastinum(x, y, z) | (occ > 0.05), domes=domes)
