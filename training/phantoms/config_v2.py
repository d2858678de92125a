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
- COPD hyperinflation, lung volume: total lung capacity by body plethysmography in 170 COPD
  patients, Sci Rep 2016;6:37550 (doi:10.1038/srep37550), Table 1, % predicted (mean +- SD):
  GOLD 1 111 +- 15, GOLD 2 119 +- 23, GOLD 3 126 +- 12, GOLD 4 133 +- 16.
- COPD hyperinflation, diaphragm shape: diaphragm index (dome surface area over its projected
  area) on inspiratory CT of 8431 COPDGene subjects, Bakker JT et al., "Automated evaluation of
  diaphragm configuration based on chest CT in COPD patients", Eur Radiol Exp 2024;8:87
  (doi:10.1186/s41747-024-00491-9): never smoked 1.83 +- 0.16, GOLD 1 1.71 +- 0.15, GOLD 2
  1.67 +- 0.16, GOLD 3 1.58 +- 0.14, GOLD 4 1.54 +- 0.11.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from algorithm.report.lobe_shares import POPULATION_SHARES

from .config import BodyParams, LungParams, PathologyParams, ScanParams, body_fits_circle, stream

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


# Dense tissue (docs/design.md, "Dense tissue"). Cancellous bone: L1 trabecular attenuation of
# 536 adults (mean age 66) by DXA class, osteoporosis 118, osteopenia 143, normal 178 HU (Insights
# Imaging 2023, doi:10.1186/s13244-023-01400-1; Pickhardt et al., Ann Intern Med 2013;158:588-595:
# 160 HU the threshold for osteoporosis); younger adults reach 200-250 HU. v1 drew 210-330 HU.
CANCELLOUS_HU = (100.0, 240.0)
# Cortical bone is 0.4-1.5 mm thick around vertebrae and ribs (compact bone 1200-1900 HU), but the
# model draws it as rims of 2-4 mm (its grid is 1.7 mm at 512^2, about 4 mm at 96^2): the rims carry
# the partial-volume value of a thin cortex over cancellous bone. v1 drew 700-1100 HU, which put
# 2-4 times the real share of voxels above 400 HU into non-contrast scans at 4 mm (docs/realism.md).
CORTEX_RIM_HU = (450.0, 800.0)
# Costal cartilage: uncalcified it reads like dense soft tissue (about 60-120 HU); it calcifies with
# age, visibly from the 30s (Ontell FK et al., RadioGraphics 1997;17:571-577), its CT value rising
# to a peak at 40-50 years (Zhang S et al., Sci Rep 2017;7:2865, doi:10.1038/s41598-017-02859-x).
# The drawn mean value stands for cartilage with fine calcification at the model's resolution.
CARTILAGE_HU = (60.0, 180.0)
# Contrast: blood from a late routine phase (aorta about 150 HU) to a CT angiogram (at least 250-300
# HU is the usual target; Bae KT, Radiology 2010;256:32-61); the two contrast scans in
# ../shared/data/real have their blood peak at 440-560 HU (v1 drew 180-380). The liver
# enhances least in the arterial phase (brightest blood) and by 50-60 HU in the portal venous phase
# (the target of Heiken et al., Radiology 1995;195:353-357): LIVER_ENHANCEMENT_HU follows the blood
# from its bright end to its dim end. Enhanced myocardium reads about 100-140 HU.
CONTRAST_BLOOD_HU = (150.0, 550.0)
LIVER_ENHANCEMENT_HU = (15.0, 60.0)  # at the brightest, at the dimmest blood
MYOCARDIUM_ENHANCEMENT_HU = (50.0, 90.0)  # above unenhanced muscle


def _contrast_tissue(seed: int, body: BodyParams, blood_hu: float) -> dict[str, float]:
    """Liver and myocardium of a contrast scan, from the blood's brightness (the phase)."""
    rng = stream(seed, "contrast-phase-v2")
    lo, hi = CONTRAST_BLOOD_HU
    late = float(np.clip((hi - blood_hu) / (hi - lo), 0.0, 1.0))
    gain = LIVER_ENHANCEMENT_HU[0] + late * (LIVER_ENHANCEMENT_HU[1] - LIVER_ENHANCEMENT_HU[0])
    return {"liver_hu": body.liver_hu + gain, "myocardium_hu": body.muscle_hu + _u(rng, *MYOCARDIUM_ENHANCEMENT_HU)}


def adjust_body(seed: int, body: BodyParams, anatomy: AnatomyParams) -> BodyParams:
    """v2 changes to the v1 body draws: dome asymmetry, breathing, contrast, fat and bone density."""
    rng = stream(seed, "body-v2")
    # The right dome lies higher than the left in about nine adults in ten, by about 1.5 cm on
    # average; the rest have level domes or a higher left one.
    drop = float(np.clip(rng.normal(14.0, 10.0), -15.0, 40.0))
    # Expiration: the domes rise (the lung shortens much more than it narrows).
    e = anatomy.expiration
    blood_hu = _u(rng, *CONTRAST_BLOOD_HU) if anatomy.contrast else body.blood_hu
    contrast = _contrast_tissue(seed, body, blood_hu) if anatomy.contrast else {}
    return replace(
        body,
        **contrast,
        left_dome_drop_mm=drop,
        apex_height_mm=body.apex_height_mm * (1.0 - 0.22 * e),
        lung_half_depth_mm=body.lung_half_depth_mm * (1.0 - 0.07 * e),
        lung_half_width_mm=body.lung_half_width_mm * (1.0 - 0.05 * e),
        blood_hu=blood_hu,
        # Adipose tissue reads about -90 to -130 HU on CT; v1's -85 to -115 put too many 4 mm
        # voxels at -100 to -50 HU (the fine realism features, docs/realism.md). Own stream, so
        # the draws above keep their values.
        fat_hu=_u(stream(seed, "fat-hu-v2"), -125.0, -95.0),
        **_bone(seed),
    )


def _bone(seed: int) -> dict[str, float]:
    """Cancellous bone, the cortical rims as drawn and costal cartilage (CANCELLOUS_HU, CORTEX_RIM_HU, CARTILAGE_HU)."""
    rng = stream(seed, "dense-tissue-v2")
    return {"cancellous_hu": _u(rng, *CANCELLOUS_HU), "bone_hu": _u(rng, *CORTEX_RIM_HU), "cartilage_hu": _u(rng, *CARTILAGE_HU)}


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


# COPD hyperinflation (see the module docstring for the sources). Severity 0..1 is the emphysema
# extent (LAA-950 share of the lung) over SEVERE_EMPHYSEMA: a modelling choice that ties the
# generator's emphysema draw (1-45 %) to the GOLD stages of the cited tables, GOLD 1 at about 0 and
# GOLD 4 at 1; hyperinflation and emphysema correlate, but loosely, hence the wide spreads.
SEVERE_EMPHYSEMA = 0.27
TLC_EXCESS_MILD, TLC_EXCESS_SEVERE, TLC_EXCESS_SD = 0.11, 0.33, 0.12  # TLC % predicted / 100 - 1
TLC_EXCESS_RANGE = (0.0, 0.5)
DIAPHRAGM_INDEX_HEALTHY = 1.83  # never smoked
DIAPHRAGM_INDEX_MILD, DIAPHRAGM_INDEX_SEVERE, DIAPHRAGM_INDEX_SD = 1.71, 1.54, 0.12
DIAPHRAGM_INDEX_RANGE = (1.25, DIAPHRAGM_INDEX_HEALTHY)
# Share of a healthy v2 lung below the right dome top (z < 0), measured on seeds 0-5 at 96^2: 0.19-0.29.
LUNG_SHARE_BELOW_DOME = 0.24
BARREL_DEPTH_PER_EXCESS = 0.25  # the A-P lung depth grows by this fraction of the volume excess


@dataclass(frozen=True)
class Hyperinflation:
    """How much larger a COPD lung is than the same patient's healthy one, and how flat its domes.

    ``volume_factor`` 1 and ``dome_factor`` 1 (every non-COPD case): no change.
    """

    volume_factor: float  # lung volume / healthy (the TLC % predicted of the cited table / 100)
    dome_factor: float  # dome height above the recesses / healthy


NO_HYPERINFLATION = Hyperinflation(1.0, 1.0)


def dome_factor_from_index(index: float) -> float:
    """Dome height relative to a never-smoker's from a diaphragm index (area / projected area).

    For a shallow dome of height H over a base of radius R the index is about 1 + (H / R)^2, so
    at a fixed base H scales with sqrt(index - 1).
    """
    return float(np.sqrt((index - 1.0) / (DIAPHRAGM_INDEX_HEALTHY - 1.0)))


def sample_hyperinflation(seed: int, pathology: PathologyParams) -> Hyperinflation:
    """COPD: larger lungs and flatter, lower domes, more so with more emphysema; else none."""
    if pathology.kind != "copd":
        return NO_HYPERINFLATION
    rng = stream(seed, "hyperinflation-v2")
    s = float(np.clip(pathology.extent / SEVERE_EMPHYSEMA, 0.0, 1.0))
    excess = _truncated_normal(rng, TLC_EXCESS_MILD + s * (TLC_EXCESS_SEVERE - TLC_EXCESS_MILD), TLC_EXCESS_SD, *TLC_EXCESS_RANGE)
    mean_index = DIAPHRAGM_INDEX_MILD + s * (DIAPHRAGM_INDEX_SEVERE - DIAPHRAGM_INDEX_MILD)
    index = _truncated_normal(rng, mean_index, DIAPHRAGM_INDEX_SD, *DIAPHRAGM_INDEX_RANGE)
    return Hyperinflation(volume_factor=1.0 + excess, dome_factor=dome_factor_from_index(index))


def hyperinflate(body: BodyParams, h: Hyperinflation) -> BodyParams:
    """The hyperinflated chest: flatter domes and recesses, a deeper (barrel) chest, and the lung
    lengthened above the domes (the domes descend) until its volume is ``h.volume_factor`` times
    the healthy one.

    Volume model: a share ``LUNG_SHARE_BELOW_DOME`` of the lung lies below the dome top and scales
    with the dome depth, the rest with the height from the dome top to the apex; both scale with the
    A-P depth. Measured on generated cases (tests/test_phantoms_v2.py) it lands within a few
    per cent of the target.
    """
    if h == NO_HYPERINFLATION:
        return body
    depth = 1.0 + BARREL_DEPTH_PER_EXCESS * (h.volume_factor - 1.0)
    r = LUNG_SHARE_BELOW_DOME
    stretch = max(1.0, (h.volume_factor / depth - r * h.dome_factor) / (1.0 - r))
    return replace(
        body,
        apex_height_mm=body.apex_height_mm * stretch,
        lung_half_depth_mm=body.lung_half_depth_mm * depth,
        recess_depth_mm=body.recess_depth_mm * h.dome_factor,
        recess_posterior_mm=body.recess_posterior_mm * h.dome_factor,
    )


@dataclass(frozen=True)
class V2Params:
    """Everything version 2 draws on top of the v1 parameters."""

    surroundings: SurroundingsParams
    anatomy: AnatomyParams
    fissures: FissureParams
    hyperinflation: Hyperinflation = NO_HYPERINFLATION


def sample_v2(seed: int, pathology: PathologyParams) -> V2Params:
    return V2Params(sample_surroundings(seed), sample_anatomy(seed), sample_fissures(seed), sample_hyperinflation(seed, pathology))
