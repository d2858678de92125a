"""Version 2 of the chest: a tapering elliptical torso, arms, breasts, clavicles, a shaped heart.

``ThoraxV2`` overrides the geometry of ``body.Thorax`` where v1 was box-like (the issue's list:
square torso corners, a spherical heart, flat lung sides, no arms) and adds the patient's
surroundings (``surroundings.py``). Everything else (ribs, spine, organs, airways, trees) is shared
with v1 and follows the new geometry through the ``Thorax`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import Thorax
from .config import stream
from .config_v2 import V2Params
from .fields import smooth_field
from .grid import Grid, PatientFrame
from .surroundings import draw_surroundings

HUMERUS_RADIUS_MM = 11.0
SPINOUS_COVER_MM = 8.0  # skin and fat over the tips of the spinous processes
# Behind the vertebral bodies v1 left mediastinal and subcutaneous fat; in adults the erector
# spinae fill it (3-5 cm deep behind the laminae). v2 paints it muscle. The column itself stays
# where v1 put it: moving it 8-15 mm forward (the bodies bulge into the chest in adults) took
# lower-lobe lung beside the spine and pushed the median LUL share past 2.5 points from the
# population mean (test_lobe_shares_follow_the_published_population).
PARASPINAL_HALF_WIDTH_MM = 45.0
# Adult humeral head: about 43-50 mm across; a 2 mm cortical rim around cancellous bone.
HUMERAL_HEAD_RADIUS_MM = 23.0
CLAVICLE_RADIUS_MM = 7.0
# Tissue texture (texture_tissue): spacing of fat planes in muscle and of septa in fat, and the
# size and strength of a mottle in both.
TEXTURE_PLANE_CELL_MM = 30.0
TEXTURE_SEPTA_CELL_MM = 20.0
TEXTURE_MOTTLE_CELL_MM = 8.0
TEXTURE_MOTTLE_HU = 8.0


def polyline_distance_mm(px: np.ndarray, py: np.ndarray, pz: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Distance (mm) from each point to a polyline through ``nodes`` (N, 3)."""
    best = np.full(px.shape, np.inf, dtype=np.float32)
    for a, b in zip(nodes[:-1], nodes[1:]):
        ab = b - a
        t = ((px - a[0]) * ab[0] + (py - a[1]) * ab[1] + (pz - a[2]) * ab[2]) / float(ab @ ab)
        t = np.clip(t, 0.0, 1.0)
        d2 = (px - a[0] - t * ab[0]) ** 2 + (py - a[1] - t * ab[1]) ** 2 + (pz - a[2] - t * ab[2]) ** 2
        np.minimum(best, d2, out=best)
    return np.sqrt(best)


@dataclass(frozen=True)
class ThoraxV2(Thorax):
    """v1 geometry plus the v2 parameters; ``seed`` feeds the v2 random streams."""

    v2: V2Params | None = None
    seed: int = 0

    cage_exponent = 2.5
    rib_muscle_mm = 12.0

    # --- outline -------------------------------------------------------------------------------
    def _taper(self, z: np.ndarray) -> np.ndarray:
        """Width factor of the torso: 1 at the lower chest, narrower towards the thoracic inlet."""
        apex = self.p.apex_height_mm
        t = np.clip((z - 0.3 * apex) / (0.8 * apex), 0.0, 1.0)
        below = np.clip(-(z + 40.0) / 120.0, 0.0, 1.0)  # the upper abdomen narrows a little
        return 1.0 - self.v2.surroundings.taper * t * t - 0.05 * below

    def torso_half_width_mm(self, z: np.ndarray) -> np.ndarray:
        p = self.p
        return self._taper(z) * (self.cage_half_width + 9.0 + 0.6 * p.muscle_mm + p.fat_mm)

    def torso(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, inset_mm, widen_mm: float = 0.0) -> np.ndarray:
        """Elliptical torso (rounder front, flatter back), tapering to the apex (<1 inside).

        ``widen_mm`` widens it sideways only (a blanket draped over arms at the sides)."""
        p = self.p
        f = self._taper(z)
        half_w = self.torso_half_width_mm(z) + widen_mm - inset_mm
        front = (0.5 + 0.5 * f) * (self.cage_half_depth + 3.0 + 0.5 * p.muscle_mm + 0.7 * p.fat_mm) - inset_mm
        back = self.cage_half_depth + 9.0 + 0.6 * p.muscle_mm + 0.3 * p.fat_mm - inset_mm
        dy = y - self.cy
        u = np.abs(x / half_w)
        v = np.abs(dy / np.where(dy < 0, front, back))
        e = np.where(dy < 0, 2.0, 2.6)  # ellipse in front, a flatter back on the table
        return u**e + v**e

    def under_the_back(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The spinous processes end under the skin and some fat, not outside the body (v1's did
        where the back is thin)."""
        return self.torso(x, y, z, SPINOUS_COVER_MM) < 1.0

    def fat_inset_mm(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Fat thickness varying around the body: thicker at the flanks and the lower back."""
        rng = stream(self.seed, "fat-v2")
        field = smooth_field(rng, x.shape, 4)
        flank = np.abs(x) / (self.cage_half_width + 40.0)
        var = self.v2.surroundings.fat_variation
        return self.p.fat_mm * np.clip(1.0 + var * (field + flank - 0.5), 0.3, 2.0)

    # --- rib cage and lungs ---------------------------------------------------------------------
    def cage(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        """Rounded rib cage that narrows with the lungs towards the thoracic inlet."""
        if z is None:
            z = np.zeros_like(x)
        p = self.p
        a = np.clip(z / p.apex_height_mm, 0.0, 1.0)
        s = np.maximum(self.width_scale(z), 0.35)
        half_w = p.lung_center_x_mm * (1.0 - 0.15 * a) + p.lung_half_width_mm * s + 7.0
        cy = self.cy + 0.25 * p.lung_half_depth_mm * a
        half_d = p.lung_half_depth_mm * np.maximum(s, 0.45) + 5.0
        u = np.abs(x / half_w)
        v = np.abs((y - cy) / half_d)
        return u * u * np.sqrt(u) + v * v * np.sqrt(v)

    def paraspinal(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The paraspinal muscles: behind the vertebral bodies, either side of the spinous processes."""
        r = self.p.spine_radius_mm
        return (np.abs(x) < PARASPINAL_HALF_WIDTH_MM) & (y > self.spine_y + 0.6 * r)

    @property
    def posterior_element_hu(self) -> float:
        """Arches and processes: small bones, a thin cortex around cancellous bone (half way)."""
        return 0.5 * (self.p.bone_hu + self.marrow_hu)

    # --- heart ----------------------------------------------------------------------------------
    def heart(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Tapered ellipsoid (<1 inside): base right-posterior-superior, apex left-anterior-inferior,
        resting on the diaphragm."""
        an = self.v2.anatomy
        k = self.p.heart_scale
        a = 0.5 * an.heart_long_mm * k
        b, c = 0.72 * a, 0.58 * a
        tilt = np.radians(an.heart_tilt_deg)
        e1 = np.array([np.sin(tilt), -np.cos(tilt), -0.55])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(e1, [0.0, 0.0, 1.0])
        e2 /= np.linalg.norm(e2)
        e3 = np.cross(e1, e2)
        # Two thirds of the heart lie left of the midline; it rests on the diaphragm behind the sternum.
        centre = (30.0 * k, self.cy - 0.32 * self.p.lung_half_depth_mm, 0.5 * a - 0.5 * self.p.left_dome_drop_mm + 8.0)
        dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
        u = dx * e1[0] + dy * e1[1] + dz * e1[2]
        v = dx * e2[0] + dy * e2[1] + dz * e2[2]
        w = dx * e3[0] + dy * e3[1] + dz * e3[2]
        narrow = 1.0 - 0.3 * np.clip(u / a, 0.0, 1.0)  # the apex is narrower than the base
        return (u / a) ** 2 + (v / (b * narrow)) ** 2 + (w / (c * narrow)) ** 2

    def aorta_path(self) -> tuple[np.ndarray, np.ndarray]:
        nodes, radius = super().aorta_path()
        return nodes, radius * (self.v2.anatomy.aortic_radius_mm / 14.0)

    # --- limbs ----------------------------------------------------------------------------------
    def _arm_axes(self) -> list[np.ndarray]:
        """Centre lines (mm) of the upper arms in the scan range, per the drawn pose."""
        s, p = self.v2.surroundings, self.p
        apex = p.apex_height_mm
        half_w = self.cage_half_width + 9.0 + 0.6 * p.muscle_mm + p.fat_mm
        out = []
        for side in (+1, -1):
            raised = s.arms == "raised" or (s.arms == "left-raised" and side > 0) or (s.arms == "right-raised" and side < 0)
            if raised:  # from the shoulder up beside the head
                shoulder = [side * 0.8 * half_w, self.cy + 15.0, apex - 25.0]
                elbow = [side * 0.55 * half_w, self.cy + 25.0, apex + 280.0]
                out.append(np.array([shoulder, [side * 0.78 * half_w, self.cy + 25.0, apex + 60.0], elbow]))
            else:  # hanging beside the chest, the elbow below the scan range
                x_arm = side * (half_w + s.arm_gap_mm + 0.9 * s.arm_radius_mm)
                out.append(np.array([[side * (half_w - 10.0), self.cy + 5.0, apex + 10.0], [x_arm, self.cy + 10.0, apex - 40.0], [x_arm, self.cy + 15.0, apex - 600.0]]))
        return out

    def draw_limbs(self, hu: np.ndarray, x, y, z, body: np.ndarray) -> np.ndarray:
        """Upper arms (skin, fat, muscle, humerus), breasts and clavicles."""
        s, p = self.v2.surroundings, self.p
        r = s.arm_radius_mm
        candidate = np.flatnonzero(np.abs(x) > 20.0)
        px, py, pz = x.flat[candidate], y.flat[candidate], z.flat[candidate]
        body = body.copy()
        fat_arm = 2.0 + 0.6 * p.fat_mm
        for axis in self._arm_axes():
            d = polyline_distance_mm(px, py, pz, axis)
            arm = d < r
            idx = candidate[arm]
            new = ~body.flat[idx]  # where the arm meets the torso, the torso's tissue stays
            da = d[arm][new]
            val = np.where(da < r - fat_arm, p.muscle_hu, np.where(da < r - 2.0, p.fat_hu, 10.0))
            val = np.where(da < HUMERUS_RADIUS_MM, p.bone_hu, val)
            val = np.where(da < HUMERUS_RADIUS_MM - 3.0, self.marrow_hu, val)
            hu.flat[idx[new]] = val
            body.flat[idx] = True
        self._draw_humeral_heads(hu, x, y, z, body)
        self._draw_breasts(hu, x, y, z, body)
        self._draw_clavicles(hu, x, y, z, body)
        return body

    def _draw_humeral_heads(self, hu: np.ndarray, x, y, z, body: np.ndarray) -> None:
        """The humeral head at each shoulder (the first node of each arm's axis), inside the body
        and outside the rib cage."""
        r = HUMERAL_HEAD_RADIUS_MM
        for axis in self._arm_axes():
            c = axis[0]
            near = np.flatnonzero((np.abs(x - c[0]) < r) & (np.abs(y - c[1]) < r) & (np.abs(z - c[2]) < r))
            px, py, pz = x.flat[near], y.flat[near], z.flat[near]
            d = np.sqrt((px - c[0]) ** 2 + (py - c[1]) ** 2 + (pz - c[2]) ** 2)
            head = (d < r) & body.flat[near] & (self.cage(px, py, pz) > 1.1)
            hu.flat[near[head]] = np.where(d[head] < r - 2.0, self.marrow_hu, self.p.bone_hu)

    def _draw_breasts(self, hu: np.ndarray, x, y, z, body: np.ndarray) -> None:
        s, p = self.v2.surroundings, self.p
        if s.breast_radius_mm <= 0:
            return
        rng = stream(self.seed, "breast-v2")
        z0 = self.carina_z - 55.0
        front = self.cage_half_depth + 3.0 + 0.5 * p.muscle_mm + 0.7 * p.fat_mm
        gland = smooth_field(rng, x.shape, 10)
        for side in (+1, -1):
            xc = side * (0.5 * self.cage_half_width + 0.2 * s.breast_radius_mm)  # supine: they fall outwards
            r = min(s.breast_radius_mm, 0.85 * abs(xc))  # a cleft between them
            e = ((x - xc) / r) ** 2 + ((z - z0) / (0.85 * r)) ** 2
            e = e + ((y - self.cy + front - 10.0) / s.breast_projection_mm) ** 2
            breast = (e < 1.0) & (y < self.cy - front + 10.0)
            add = breast & ~body
            glandular = np.clip(0.5 + 0.6 * gland - 0.5 * e, 0.0, 1.0)
            hu[add] = (p.fat_hu + glandular * (40.0 - p.fat_hu))[add]
            skin = add & (e > (1.0 - 2.5 / r) ** 2)
            hu[skin] = 10.0
            body |= breast

    def _draw_clavicles(self, hu: np.ndarray, x, y, z, body: np.ndarray) -> None:
        """Clavicles from the sternal notch to the acromion; the lung apices rise above them."""
        p = self.p
        apex = p.apex_height_mm
        front = self.cy - self.cage_half_depth - 6.0
        candidate = np.flatnonzero((z > apex - 70.0) & (z < apex + 10.0) & (y < self.cy + 20.0))
        px, py, pz = x.flat[candidate], y.flat[candidate], z.flat[candidate]
        for side in (+1, -1):
            nodes = np.array(
                [
                    [side * 18.0, front, apex - 45.0],
                    [side * 60.0, front - 4.0, apex - 38.0],
                    [side * 0.75 * self.cage_half_width, self.cy - 0.2 * p.lung_half_depth_mm, apex - 22.0],
                    [side * 0.92 * self.cage_half_width, self.cy + 0.05 * p.lung_half_depth_mm, apex - 18.0],
                ]
            )
            d = polyline_distance_mm(px, py, pz, nodes)
            idx = candidate[(d < CLAVICLE_RADIUS_MM) & body.flat[candidate]]
            hu.flat[idx] = np.where(d[(d < CLAVICLE_RADIUS_MM) & body.flat[candidate]] < CLAVICLE_RADIUS_MM - 2.0, self.marrow_hu, p.bone_hu)

    def draw_surroundings(self, hu: np.ndarray, grid: Grid, frame: PatientFrame, body: np.ndarray, x, y, z) -> None:
        draw_surroundings(self, hu, grid, frame, body, x, y, z)

    def texture_tissue(self, hu: np.ndarray, body: np.ndarray, grid: Grid) -> None:
        """Fascial fat planes through muscle, fibrous septa through fat, a mottle in these and the organs.

        Real fat and muscle are not uniform at 4 mm: intermuscular fat planes and septa make
        edges of 5-40 HU/mm there, where uniform phantom tissue had none (the fine realism
        features of docs/realism.md). Planes and septa are thin bands around the zero level set
        of smooth random fields (a sheet every few centimetres).
        """
        rng = stream(self.seed, "tissue-texture-v2")
        p = self.p
        fat = body & ((hu == np.float32(p.fat_hu)) | (hu == np.float32(p.fat_hu + 10.0)))
        muscle = body & (hu == np.float32(p.muscle_hu))
        shape = grid.shape_zyx
        extent_mm = [n * s for n, s in zip(shape, grid.spacing_mm[::-1])]
        for region, cell_mm, band, value in (
            (muscle, TEXTURE_PLANE_CELL_MM, 0.12, p.fat_hu),  # fat planes between muscles
            (fat, TEXTURE_SEPTA_CELL_MM, 0.07, p.muscle_hu - 20.0),  # fibrous septa and small vessels
        ):
            field = smooth_field(rng, shape, tuple(max(2, int(e / cell_mm)) for e in extent_mm))
            hu[region & (np.abs(field) < band)] = value
        organs = body & ((hu == np.float32(p.liver_hu)) | (hu == np.float32(p.liver_hu - 10.0)))  # liver, spleen
        mottle = smooth_field(rng, shape, tuple(max(2, int(e / TEXTURE_MOTTLE_CELL_MM)) for e in extent_mm))
        soft = fat | muscle | organs
        hu[soft] += TEXTURE_MOTTLE_HU * mottle[soft]
