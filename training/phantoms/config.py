"""Options given by the caller and the per-case parameters drawn from the seed.

Every random draw of a case comes from ``stream(seed, name)``: one independent generator per
component, so that changing one option (say the pathology) leaves the anatomy of the same seed
unchanged. That keeps "same seed, same bytes" and lets tests compare a diseased case with its
healthy twin.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np

PATHOLOGIES: tuple[str, ...] = ("none", "copd", "covid", "effusion")
VERSIONS: tuple[int, ...] = (1, 2)
# Chance of each pathology when the caller leaves it to the seed.
PATHOLOGY_WEIGHTS: tuple[float, ...] = (0.4, 0.2, 0.25, 0.15)

# Target lobe shares of the whole lung (%), from the issue; the generator varies around them.
TARGET_SHARE_PERCENT: dict[str, float] = {"RUL": 20.0, "RML": 8.0, "RLL": 25.0, "LUL": 25.0, "LLL": 22.0}


@dataclass(frozen=True)
class PhantomOptions:
    """What the caller fixes; everything left ``None`` is drawn from the seed.

    size_xyz: voxels (x, y, z). None: 512 x 512 x N with N from the scan length and slice spacing.
    spacing_mm: (x, y, z) in mm. None: in-plane 0.5-1.0 mm, slices 0.5-3 mm, or, when size_xyz is
        given, the spacing that fits the chest into a 340-400 mm field of view.
    pathology: "none", "copd", "covid", "effusion", or None for a random choice.
    noise_sigma_hu: standard deviation of the image noise. None: 10-80 HU at 0.8 mm pixels drawn
        from the seed, lowered for coarser pixels (they average the noise, as resampled scans do).
    model_voxels_max: the anatomy is modelled on a grid of at most this many voxels, then
        resampled to the output grid (the speed/detail trade-off of large outputs).
    with_fissure_map: also return the voxels of the visible fissure sheets (for tests).
    version: 2 (default) adds the body surroundings, landmark-placed fissures and the v2 anatomy
        (docs/realism.md); 1 reproduces the first generator byte for byte (the v1 test set).
    """

    size_xyz: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    pathology: str | None = None
    noise_sigma_hu: float | None = None
    model_voxels_max: int = 6_000_000
    with_fissure_map: bool = False
    version: int = 2

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, not {self.version!r}")
        if self.pathology is not None and self.pathology not in PATHOLOGIES:
            raise ValueError(f"pathology must be one of {PATHOLOGIES} or None, not {self.pathology!r}")
        if self.size_xyz is not None and (len(self.size_xyz) != 3 or min(self.size_xyz) < 16):
            raise ValueError(f"size_xyz must be three sizes of at least 16 voxels, not {self.size_xyz}")
        if self.spacing_mm is not None and (len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0):
            raise ValueError(f"spacing_mm must be three positive numbers, not {self.spacing_mm}")


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator for one component of one case (stable across Python runs)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(name.encode())])


@dataclass(frozen=True)
class BodyParams:
    """Patient anatomy in the patient frame (mm): X to the left, Y posterior, Z superior.

    Z = 0 is the top of the right hemidiaphragm dome.
    """

    lung_half_width_mm: float  # lateral semi-axis of each lung's cross-section at full width
    lung_half_depth_mm: float  # antero-posterior semi-axis
    lung_center_x_mm: float  # distance of each lung's centre from the midline
    apex_height_mm: float  # apex above the right dome
    recess_depth_mm: float  # costophrenic recess below the dome top
    left_dome_drop_mm: float  # the left dome lies this much lower than the right
    fat_mm: float  # subcutaneous fat thickness
    muscle_mm: float  # chest wall muscle thickness
    heart_scale: float  # heart size relative to the thorax
    spine_radius_mm: float
    rib_period_mm: float
    rotation_deg: tuple[float, float, float]  # about x, y, z of the scanner frame
    offset_mm: tuple[float, float]  # patient centre off the isocentre (x, y)
    fat_hu: float
    muscle_hu: float
    liver_hu: float
    blood_hu: float
    bone_hu: float
    table_kind: int
    # The posterior costophrenic recess lies this much deeper than the dome profile alone gives
    # (v1: always 18 mm; v2 COPD hyperinflation flattens it with the dome, see config_v2).
    recess_posterior_mm: float = 18.0
    # Cancellous bone (vertebral bodies, sternum, rib marrow); None: 0.3 x bone_hu (v1).
    cancellous_hu: float | None = None
    # Enhanced myocardium around the contrast-filled chambers; None: the heart is all blood (v1,
    # and v2 without contrast, where myocardium and blood read alike).
    myocardium_hu: float | None = None
    # Costal cartilages of ribs 1-7; None: none (v1).
    cartilage_hu: float | None = None


@dataclass(frozen=True)
class LungParams:
    """Lobe geometry and parenchyma."""

    share_lll_of_left: float  # LLL / left lung
    share_rll_of_right: float  # RLL / right lung
    share_rml_of_upper_right: float  # RML / (RUL + RML)
    oblique_slope: tuple[float, float]  # dZ/dY of the left, right oblique fissure (posterior higher)
    oblique_curvature: tuple[float, float]
    horizontal_tilt: tuple[float, float]  # dZ/dY, dZ/dX of the horizontal fissure
    fissure_wobble_mm: tuple[float, float, float]  # amplitude of the random fissure undulation
    fissure_visible: tuple[float, float, float]  # left oblique, right oblique, horizontal (fraction)
    fissure_hu: float
    parenchyma_hu: float
    gravity_gradient_hu: float  # posterior (dependent) lung is denser by this much
    texture_hu: float  # amplitude of the parenchymal texture
    vessel_hu: float


@dataclass(frozen=True)
class ScanParams:
    """Acquisition and reconstruction."""

    size_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    z_top_mm: float  # patient Z of the top of the scan range
    noise_sigma_hu: float
    air_noise_ratio: float  # noise outside the body relative to inside (less attenuation there)
    noise_cutoff_cyc_per_mm: float  # reconstruction kernel: where the noise spectrum falls off
    sharpening: float  # edge enhancement of sharp kernels (0 = soft kernel)
    pad_value_hu: int | None  # value outside the reconstruction circle, None: no circle
    range_cut: str  # "", "apex" or "base": whether the scan range cuts the lung


@dataclass(frozen=True)
class PathologyParams:
    """Which disease and how much (fractions of the lung volume)."""

    kind: str
    extent: float  # the headline number: emphysema, GGO+consolidation, or effusion share
    emphysema_pattern: str = ""  # "centrilobular" or "panlobular"
    bullae: int = 0
    airway_wall_factor: float = 1.0
    covid_foci: int = 0
    consolidation_share: float = 0.0  # of the COVID lesion volume
    crazy_paving: bool = False
    effusion_sides: str = ""  # "L", "R" or "LR"
    effusion_depth_mm: float = 0.0


@dataclass(frozen=True)
class CaseParams:
    """All parameters of one case."""

    seed: int
    body: BodyParams
    lungs: LungParams
    scan: ScanParams
    pathology: PathologyParams
    extras: dict = field(default_factory=dict)
    version: int = 1
    v2: object | None = None  # config_v2.V2Params for version 2


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_body(seed: int) -> BodyParams:
    rng = stream(seed, "body")
    size = _u(rng, 0.82, 1.08)  # overall patient size
    return BodyParams(
        lung_half_width_mm=size * _u(rng, 58, 70),
        lung_half_depth_mm=size * _u(rng, 85, 105),
        lung_center_x_mm=size * _u(rng, 62, 72),
        apex_height_mm=size * _u(rng, 165, 215),
        recess_depth_mm=_u(rng, 45, 75),
        left_dome_drop_mm=_u(rng, 8, 28),
        fat_mm=_u(rng, 5, 40) * size,
        muscle_mm=_u(rng, 9, 20),
        heart_scale=_u(rng, 0.85, 1.05),
        spine_radius_mm=size * _u(rng, 16, 20),
        rib_period_mm=size * _u(rng, 24, 29),
        rotation_deg=(_u(rng, -3, 3), _u(rng, -3, 3), _u(rng, -5, 5)),
        offset_mm=(_u(rng, -15, 15), _u(rng, -10, 10)),
        fat_hu=_u(rng, -115, -85),
        muscle_hu=_u(rng, 35, 55),
        liver_hu=_u(rng, 50, 65),
        blood_hu=_u(rng, 35, 50),
        bone_hu=_u(rng, 700, 1100),
        table_kind=int(rng.integers(0, 3)),
    )


def _visible_fraction(rng: np.random.Generator, p_incomplete: float) -> float:
    """Fraction of a fissure that shows; incomplete ones hide 5-70 %."""
    return 1.0 if rng.random() >= p_incomplete else 1.0 - _u(rng, 0.05, 0.70)


def sample_lungs(seed: int) -> LungParams:
    rng = stream(seed, "lungs")
    return LungParams(
        share_lll_of_left=float(np.clip(rng.normal(22 / 47, 0.035), 0.36, 0.58)),
        share_rll_of_right=float(np.clip(rng.normal(25 / 53, 0.035), 0.36, 0.58)),
        share_rml_of_upper_right=float(np.clip(rng.normal(8 / 28, 0.045), 0.16, 0.42)),
        oblique_slope=(_u(rng, 0.9, 1.6), _u(rng, 0.9, 1.6)),
        oblique_curvature=(_u(rng, -0.25, 0.25), _u(rng, -0.25, 0.25)),
        horizontal_tilt=(_u(rng, -0.15, 0.2), _u(rng, -0.12, 0.12)),
        fissure_wobble_mm=(_u(rng, 2, 9), _u(rng, 2, 9), _u(rng, 2, 8)),
        # The minor fissure is incomplete more often than the oblique ones.
        fissure_visible=(_visible_fraction(rng, 0.3), _visible_fraction(rng, 0.3), _visible_fraction(rng, 0.6)),
        fissure_hu=_u(rng, -720, -620),
        parenchyma_hu=_u(rng, -895, -845),
        gravity_gradient_hu=_u(rng, 15, 50),
        texture_hu=_u(rng, 14, 32),
        vessel_hu=_u(rng, 30, 50),
    )


def _scan_geometry(
    rng: np.random.Generator, options: PhantomOptions, scan_length_mm: float
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Voxel counts and spacing from the options, filling in what they leave open."""
    if options.size_xyz is not None and options.spacing_mm is not None:
        return tuple(int(s) for s in options.size_xyz), tuple(float(s) for s in options.spacing_mm)
    if options.size_xyz is not None:
        nx, ny, nz = (int(s) for s in options.size_xyz)
        fov_mm = _u(rng, 340, 400)
        spacing_xy = fov_mm / max(nx, ny)
        return (nx, ny, nz), (spacing_xy, spacing_xy, scan_length_mm / nz)
    if options.spacing_mm is not None:
        sx, sy, sz = (float(s) for s in options.spacing_mm)
    else:
        sx = sy = _u(rng, 0.5, 1.0)
        sz = float(rng.choice([0.5, 0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]))
    return (512, 512, max(16, int(round(scan_length_mm / sz)))), (sx, sy, sz)


def body_fits_circle(body: BodyParams, size_xyz: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> bool:
    """Whether the torso fits inside the reconstruction circle (else a scanner writes no padding)."""
    fov_mm = min(size_xyz[0] * spacing_mm[0], size_xyz[1] * spacing_mm[1])
    body_width_mm = 2 * (body.lung_center_x_mm + body.lung_half_width_mm + 14 + 0.6 * body.muscle_mm + body.fat_mm)
    return body_width_mm <= 0.98 * fov_mm


def sample_scan(seed: int, options: PhantomOptions, body: BodyParams) -> ScanParams:
    rng = stream(seed, "scan")
    above_apex_mm = _u(rng, 10, 45)
    below_recess_mm = _u(rng, 15, 60)
    range_cut = str(rng.choice(["", "apex", "base"], p=[0.8, 0.1, 0.1]))
    if range_cut == "apex":
        above_apex_mm = -_u(rng, 5, 25)
    elif range_cut == "base":
        below_recess_mm = -_u(rng, 5, 30)
    z_top = body.apex_height_mm + above_apex_mm
    z_bottom = -body.recess_depth_mm - 20.0 - below_recess_mm
    size, spacing = _scan_geometry(rng, options, z_top - z_bottom)
    low_dose = rng.random() < 0.35
    sigma = _u(rng, 35, 80) if low_dose else _u(rng, 10, 40)
    sigma *= min(1.0, 0.8 / float(np.sqrt(spacing[0] * spacing[1])))
    if options.noise_sigma_hu is not None:
        sigma = float(options.noise_sigma_hu)
    pad = [None, -2048, -3024][int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
    if not body_fits_circle(body, size, spacing):  # a targeted reconstruction: no circle cutting the body
        pad = None
    sharp = rng.random() < 0.5
    return ScanParams(
        size_xyz=size,
        spacing_mm=spacing,
        z_top_mm=z_top,
        noise_sigma_hu=sigma,
        air_noise_ratio=_u(rng, 0.55, 0.8),
        noise_cutoff_cyc_per_mm=_u(rng, 0.55, 0.9) if sharp else _u(rng, 0.25, 0.45),
        sharpening=_u(rng, 0.3, 0.8) if sharp else 0.0,
        pad_value_hu=pad,
        range_cut=range_cut,
    )


def sample_pathology(seed: int, options: PhantomOptions) -> PathologyParams:
    kind_rng = stream(seed, "pathology-kind")
    kind = str(kind_rng.choice(PATHOLOGIES, p=PATHOLOGY_WEIGHTS))
    if options.pathology is not None:
        kind = options.pathology
    rng = stream(seed, "pathology")
    if kind == "copd":
        # Severity from trace to very severe: LAA-950 from ~1 % to ~40 % of the lung.
        return PathologyParams(
            kind=kind,
            extent=float(np.clip(rng.gamma(1.6, 0.07), 0.01, 0.45)),
            emphysema_pattern=str(rng.choice(["centrilobular", "panlobular"], p=[0.75, 0.25])),
            bullae=int(rng.choice([0, 0, 1, 2, 3])),
            airway_wall_factor=_u(rng, 1.2, 2.2),
        )
    if kind == "covid":
        return PathologyParams(
            kind=kind,
            extent=float(np.clip(rng.gamma(1.3, 0.09), 0.005, 0.55)),
            covid_foci=int(rng.integers(2, 9)),
            consolidation_share=_u(rng, 0.0, 0.45),
            crazy_paving=bool(rng.random() < 0.4),
        )
    if kind == "effusion":
        return PathologyParams(
            kind=kind,
            extent=0.0,
            effusion_sides=str(rng.choice(["L", "R", "LR"], p=[0.3, 0.35, 0.35])),
            effusion_depth_mm=_u(rng, 12, 45),
        )
    return PathologyParams(kind="none", extent=0.0)


def fit_to_fov(body: BodyParams, fov_mm: float, fov_depth_mm: float | None = None) -> BodyParams:
    """Shrink the patient's cross-section so that both lungs fit a small field of view.

    ``fov_mm`` bounds the lung width (L-R). Version 1 passes the smaller side of the field of view
    here and no ``fov_depth_mm``; version 2 passes the L-R side and the A-P side separately, so a
    field of view cropped to the body (wide, shallow) no longer shrinks the lungs to its A-P size.
    """
    # The lungs widen by up to 6 % at the base; keep 15 mm of chest wall on each side in view.
    lung_width_mm = 2.12 * (body.lung_center_x_mm + body.lung_half_width_mm) + 30.0
    f = fov_mm / lung_width_mm
    if fov_depth_mm is not None:  # the same margins front and back
        f = min(f, fov_depth_mm / (2.12 * body.lung_half_depth_mm + 30.0))
    if f >= 1.0:
        return body
    return replace(
        body,
        lung_half_width_mm=f * body.lung_half_width_mm,
        lung_center_x_mm=f * body.lung_center_x_mm,
        lung_half_depth_mm=f * body.lung_half_depth_mm,
        fat_mm=f * body.fat_mm,
        muscle_mm=f * body.muscle_mm,
        spine_radius_mm=f * body.spine_radius_mm,
        heart_scale=f * body.heart_scale,
        offset_mm=(f * body.offset_mm[0], f * body.offset_mm[1]),
    )
