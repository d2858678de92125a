"""Parameters that generator version 2 adds, and the v2 changes to the v1 draws.

Every v2 draw comes from its own ``stream(seed, name)`` (names ending in ``-v2``), so the v1 draws
of a seed are untouched and ``PhantomOptions(version=1)`` keeps producing the v1 bytes.

Population figures used here (each sampler cites the ones it uses):

- Lobe shares of the total lung volume, supine inspiratory CT of 32 healthy volunteers: Yamada Y
  et al., "Differences in lung and lobe volumes between supine and standing positions scanned with
  conventional and newly developed 320-detector-row upright CT", Respiration 2020;99(7):598-605,
  doi:10.1159/000507265, Table 3 (mean +- SD, range): RUL 17.9 +- 2.4 (11.8-22.7), RML 9.3 +- 1.6
  (6.6-13.8), RLL 26.5 +- 2.6 (22.3-34.0), LUL 23.1 +- 2.1 (18.1-26.6), LLL 23.2 +- 2.4
  (19.4-28.7); right lung 53.6 +- 1.5 (50.6-57.4).
- Fissure completeness and accessory fissures, HRCT of 622 patients: Aziz A et al., "High
  resolution CT anatomy of the pulmonary fissures", J Thorac Imaging 2004;19(3):186-191: right
  major fissure incomplete in 48 %, left major in 43 %, minor fissure incomplete in 63 % (convex
  superiorly, highest anterolaterally); azygos 1.2 %, inferior accessory 8.6 %, superior accessory
  4.6 %, left minor 6.1 %.
- Absent minor fissure: 3.3 % of 150 MDCT examinations (Cronin P et al., "Normal and accessory
  fissures of the lung: evaluation with contiguous volumetric thin-section multidetector CT",
  Eur J Radiol 2010;75(2):e1-8).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from algorithm.report.lobe_shares import POPULATION_SHARES

from .config import BodyParams, LungParams, ScanParams, body_fits_circle, stream

# Yamada et al. 2020, Table 3, supine: (mean %, SD %, min %, max %) of the total lung volume. One
# source with the runtime's population reference; the key order is the order of the draws.
LOBE_SHARE_PERCENT: dict[str, tuple[float, float, float, float]] = {
    name: (POPULATION_SHARES[name].mean_percent, POPULATION_SHARES[name].sd_percent,
           POPULATION_SHARES[name].min_percent, POPULATION_SHARES[name].max_percent)
    for name in ("RUL", "RML", "RLL", "LUL", "LLL")
}
# Aziz et al. 2004: share of lungs whose fissure is incomplete.
P_INCOMPLETE = {"left_oblique": 0.43, "right_oblique": 0.48, "horizontal": 0.63}
# Aziz et al. 2004: prevalence of accessory fissures (drawn independently per case).
P_ACCESSORY = {"azygos": 0.012, "inferior_accessory": 0.086, "superior_accessory": 0.046, "left_minor": 0.061}
P_MINOR_ABSENT = 0.033  # Cronin et al. 2010

ARM_POSES = ("raised", "down", "left-raised", "right-raised")
# Raised above the head is the usual chest CT position; arms down occur in trauma, the very ill and
# combined PET/CT protocols.
ARM_POSE_WEIGHTS = (0.6, 0.3, 0.05, 0.05)


@dataclass(frozen=True)
class SurroundingsParams:
    """Body outline, arms, breasts and what lies on and under the patient (mm, HU)."""

    taper: float  # how much narrower the torso is at the apex than at the widest slice (fraction)
    fat_variation: float  # relative variation of the subcutaneous fat thickness around the body
    arms: str  # one of ARM_POSES
    arm_radius_mm: float
    arm_gap_mm: float  # skin-to-skin gap between an arm at the side and the torso
    breast_radius_mm: float  # 0: no breasts
    breast_projection_mm: float
    cushion_mm: float  # mattress thickness under the back
    cushion_hu: float
    cushion_sag_mm: float  # how far the body sinks into the cushion
    table_mm: float
    table_curve_per_mm: float  # the table top rises by curve * x^2 towards its edges
    table_core_hu: float
    blanket: bool
    blanket_gap_mm: float  # mean lift of the blanket off the skin (folds touch it in places)
    blanket_fold_mm: float  # amplitude of the folds
    blanket_mm: float  # thickness of the sheet
    blanket_hu: float
    blanket_layers: int  # a folded blanket or blanket plus sheet: that many sheets
    clothing: bool
    clothing_hu: float


@dataclass(frozen=True)
class AnatomyParams:
    """Lungs, mediastinum and breathing state."""

    expiration: float  # 0 full inspiration .. 1 expiration
    contrast: bool
    heart_long_mm: float
    heart_tilt_deg: float  # long axis from the sagittal plane towards the left
    aortic_radius_mm: float


@dataclass(frozen=True)
class FissureParams:
    """Landmarks and variation of the fissures (see lungs_v2 for how they are used)."""

    oblique_posterior_dz_mm: tuple[float, float]  # left, right: posterior end relative to T4-T5 level
    oblique_anterior_dy: tuple[float, float]  # where the oblique fissure meets the diaphragm (0 front .. 1 back)
    oblique_bow_mm: tuple[float, float]  # bow of the fissure line in the sagittal plane
    oblique_lateral_tilt: tuple[float, float]  # dZ/dX: the propeller twist of the oblique fissures
    horizontal_dz_mm: float  # anterior horizontal fissure height relative to the 4th costal cartilage
    horizontal_dome_mm: float  # convex superiorly, highest anterolaterally (Aziz 2004)
    wobble_mm: tuple[float, float, float]
    shares: dict  # drawn target share (fraction of the total lung) of each lobe
    visible: tuple[float, float, float]  # left oblique, right oblique, horizontal
    accessory: tuple[str, ...]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_surroundings(seed: int) -> SurroundingsParams:
    rng = stream(seed, "surroundings-v2")
    female = rng.random() < 0.45
    blanket = rng.random() < 0.6
    return SurroundingsParams(
        taper=_u(rng, 0.12, 0.3),
        fat_variation=_u(rng, 0.15, 0.45),
        arms=str(rng.choice(ARM_POSES, p=ARM_POSE_WEIGHTS)),
        arm_radius_mm=_u(rng, 38, 58),
        arm_gap_mm=float(max(0.0, rng.normal(6, 8))),
        breast_radius_mm=_u(rng, 45, 80) if female else 0.0,
        breast_projection_mm=_u(rng, 15, 60) if female else 0.0,
        cushion_mm=_u(rng, 0, 60) if rng.random() < 0.75 else 0.0,
        cushion_hu=_u(rng, -960, -700),
        cushion_sag_mm=_u(rng, 5, 25),
        table_mm=_u(rng, 8, 40),
        table_curve_per_mm=_u(rng, 0.0, 8e-4),
        table_core_hu=_u(rng, -950, -350),
        blanket=blanket,
        blanket_gap_mm=_u(rng, 2, 25),
        blanket_fold_mm=_u(rng, 4, 22),
        blanket_mm=_u(rng, 1.5, 6),
        blanket_hu=_u(rng, -450, 0),
        blanket_layers=int(rng.choice([1, 1, 2, 3])) if blanket else 0,
        clothing=bool(rng.random() < 0.35),
        clothing_hu=_u(rng, -500, -100),
    )


def sample_anatomy(seed: int) -> AnatomyParams:
    rng = stream(seed, "anatomy-v2")
    expiration = 0.0 if rng.random() < 0.8 else _u(rng, 0.4, 1.0)  # most chest CTs are inspiratory
    return AnatomyParams(
        expiration=expiration,
        contrast=bool(rng.random() < 0.4),
        heart_long_mm=_u(rng, 110, 140),
        heart_tilt_deg=_u(rng, 35, 55),
        aortic_radius_mm=_u(rng, 12, 17),
    )


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    for _ in range(100):
        v = rng.normal(mean, sd)
        if lo <= v <= hi:
            return float(v)
    return float(np.clip(mean, lo, hi))


def sample_lobe_shares(rng: np.random.Generator) -> dict[str, float]:
    """Lobe shares (fractions summing to 1) from Yamada et al. 2020, within the published ranges."""
    raw = {k: _truncated_normal(rng, m, sd, lo, hi) for k, (m, sd, lo, hi) in LOBE_SHARE_PERCENT.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def _visible(rng: np.random.Generator, p_incomplete: float) -> float:
    """Visible share of a fissure: incomplete ones miss 5-60 % (mostly medially, at the hilum)."""
    return 1.0 if rng.random() >= p_incomplete else 1.0 - float(rng.beta(1.5, 3.0)) * 0.6 - 0.05


def sample_fissures(seed: int) -> FissureParams:
    rng = stream(seed, "fissures-v2")
    minor_absent = rng.random() < P_MINOR_ABSENT
    accessory = tuple(name for name, p in P_ACCESSORY.items() if rng.random() < p)
    return FissureParams(
        oblique_posterior_dz_mm=(_u(rng, -20, 20), _u(rng, -20, 20)),
        oblique_anterior_dy=(_u(rng, 0.0, 0.35), _u(rng, 0.0, 0.35)),
        oblique_bow_mm=(_u(rng, -6, 14), _u(rng, -6, 14)),
        oblique_lateral_tilt=(_u(rng, -0.3, 0.3), _u(rng, -0.3, 0.3)),
        horizontal_dz_mm=_u(rng, -12, 12),
        horizontal_dome_mm=_u(rng, 0, 15),
        wobble_mm=(_u(rng, 1, 5), _u(rng, 1, 5), _u(rng, 1, 4)),
        shares=sample_lobe_shares(rng),
        visible=(
            _visible(rng, P_INCOMPLETE["left_oblique"]),
            _visible(rng, P_INCOMPLETE["right_oblique"]),
            0.0 if minor_absent else _visible(rng, P_INCOMPLETE["horizontal"]),
        ),
        accessory=accessory,
    )


def adjust_body(seed: int, body: BodyParams, anatomy: AnatomyParams) -> BodyParams:
    """v2 changes to the v1 body draws: dome asymmetry and breathing."""
    rng = stream(seed, "body-v2")
    # The right dome lies higher than the left in about nine adults in ten, by about 1.5 cm on
    # average; the rest have level domes or a higher left one.
    drop = float(np.clip(rng.normal(14.0, 10.0), -15.0, 40.0))
    # Expiration: the domes rise (the lung shortens much more than it narrows).
    e = anatomy.expiration
    return replace(
        body,
        left_dome_drop_mm=drop,
        apex_height_mm=body.apex_height_mm * (1.0 - 0.22 * e),
        lung_half_depth_mm=body.lung_half_depth_mm * (1.0 - 0.07 * e),
        lung_half_width_mm=body.lung_half_width_mm * (1.0 - 0.05 * e),
        blood_hu=_u(rng, 180, 380) if anatomy.contrast else body.blood_hu,
    )


def adjust_lungs(seed: int, lungs: LungParams, anatomy: AnatomyParams) -> LungParams:
    """Expired lung is denser (less air per voxel); contrast brightens the large vessels."""
    rng = stream(seed, "lungs-v2")
    e = anatomy.expiration
    return replace(
        lungs,
        parenchyma_hu=lungs.parenchyma_hu + 110.0 * e,
        gravity_gradient_hu=lungs.gravity_gradient_hu * (1.0 + 0.8 * e),
        vessel_hu=_u(rng, 120, 300) if anatomy.contrast else lungs.vessel_hu,
    )


# Outside the reconstruction circle: none, or the padding values scanners write.
PAD_VALUES: tuple[int | None, ...] = (None, -1024, -2048, -3024)
PAD_WEIGHTS = (0.35, 0.2, 0.25, 0.2)


def adjust_scan(seed: int, scan: ScanParams, body: BodyParams) -> ScanParams:
    """v2 padding values (adds -1024); a body too wide for the circle still gets none."""
    rng = stream(seed, "scan-v2")
    pad = PAD_VALUES[int(rng.choice(len(PAD_VALUES), p=PAD_WEIGHTS))]
    if not body_fits_circle(body, scan.size_xyz, scan.spacing_mm):
        pad = None
    return replace(scan, pad_value_hu=pad)


@dataclass(frozen=True)
class V2Params:
    """Everything version 2 draws on top of the v1 parameters."""

    surroundings: SurroundingsParams
    anatomy: AnatomyParams
    fissures: FissureParams


def sample_v2(seed: int) -> V2Params:
    return V2Params(sample_surroundings(seed), sample_anatomy(seed), sample_fissures(seed))
