"""Phantoms beside real scans: ``python -m training.realism`` writes docs/realism.md and
results/realism/phantoms.png.

Real scans are read from ``training.realism.real_scans.REAL_DIR`` (``../shared/data/real`` beside the
repository; never copied into it). Each real scan gets phantoms at its own size and spacing, and both go through
the same threshold-based measurements, so the numbers compare like with like.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.constants import AIR_LUNG_CUT_HU
from training.phantoms.config import PATHOLOGIES, VERSIONS, PhantomOptions
from training.phantoms.generate import generate_case
from training.cli_help import command_parser
from training.realism.real_scans import REAL_DIR, REPO_ROOT, Scan, load_real_scans
from training.realism.classifier import COMMAND as CLASSIFIER, DRAWS, floor_study, markdown, measure_realism

COMMAND = "python -m training.realism"
PHANTOMS_PER_SCAN = 3
PHANTOM_PATHOLOGIES = ("none", "none", "copd")

KNOWN_DIFFERENCES = """\
- Anatomy is built from smooth implicit shapes. v2 adds an elliptical, tapering torso with
  varying subcutaneous fat, arms (raised or beside the body), breasts, clavicles, a tapered heart
  resting on the diaphragm, blankets, clothing, cushions and a curved table, (since commit
  fc2aa59) fat planes through muscle, septa through fat and a lobular mottle in the lung, and
  (since f3b20ff) cancellous bone at 100-240 HU inside thin-cortex rims, costal cartilages, humeral
  heads, ribs lying in muscle, muscle behind the vertebrae (c526f02), and with contrast an enhanced
  liver and myocardium; still missing are kidneys, bowel, lymph nodes, calcifications, ECG leads
  and lines; the back over the spine is thin (about 15 mm of muscle and fat behind the laminae
  against 3-5 cm in adults, the vertebral bodies sitting at the back of the rib cage instead of
  bulging into the chest), and the shoulder girdle is reduced to clavicles, humeral heads and
  flat scapulae.
- Each hemidiaphragm is a flat-topped dome falling steeply into deep lateral and posterior
  recesses (see the coronal views). COPD phantoms are hyperinflated (since commit 9737850: lung
  volume 100-150 % of the healthy twin's and domes 0.55-1.0 times as high, both drawn by emphysema
  severity from published ranges, docs/design.md); healthy phantoms' domes stand 30-115 mm above
  their posterior recesses (tables and tests), against 57-72 mm in the three healthy real scans.
- Large outputs are modelled on a grid of at most 6 million voxels (about 1.7 mm at 512 x 512 x 300)
  and interpolated: fine structure at 0.5-1 mm (sub-millimetre vessels, fissure crispness, rib
  trabeculae) is blurred, and only the noise carries the full-resolution texture.
- Noise is stationary inside the body (real noise rises behind the shoulders and in the body
  centre), weaker outside it, and independent between slices (thin-slice reconstructions are
  correlated along z); no streaks from the arms or from metal.
- Vessels and bronchi follow a recursive-partition tree per lobe, not the true segmental anatomy;
  with contrast, lung arteries and veins are equally bright (no arterial phase).
- Lobes are separated by height-field fissures placed from landmarks (v2); the lung behind an
  effusion is compressed in density only, not displaced.
"""


# What each real scan is, so that its table is read fairly (matched by file-name prefix).
SCAN_NOTES = {
    "copdgene": "A COPDGene subject resampled to 64 x 64 (4.2 mm pixels): hyperinflated (4.7 l) with "
    "emphysema far above healthy lungs; resampling has averaged away its noise. The field of view cuts the body.",
    "lung-pet-ct-dx-A0001": "A lung-cancer PET/CT subject, 5 mm slices, soft-tissue kernel.",
    "lung-pet-ct-dx-A0002": "Apex cut off by the scan range (8 mm slices): its lung volume and dome "
    "measures cover only part of the lungs; the matched phantoms are not cut the same way.",
    "totalseg-heart": "A crop around the heart with partial lungs (1.5 mm): lung size and dome measures are "
    "not comparable, because the matched phantoms show a whole (small) chest in the same field of view.",
    "totalseg-chest-cta": "Contrast-enhanced chest CT, whole lungs from the neck to the upper abdomen, "
    "1.5 mm isotropic; the field of view is cropped to the body (no reconstruction circle).",
}

INTERPRETATION = """\
- Realism number (2 mm, 7 features since commit cae2c36; `--draws 3`): floor 0.68 (0.67-0.69),
  v1 0.63 (0.62-0.65), v2 0.53 (0.47-0.57). v2 lies below v1 in every draw (by 0.05-0.16) and
  near 0.5 on average: with tissue shares, mean and spread of 64 mm cubes the classifier tells v2
  phantoms from real scans less well than it tells real scans from each other. The finer
  features at 2 mm agree: floor 0.75 (0.73-0.79), v1 0.92 (0.91-0.93), v2 0.70 (0.67-0.72).
  Before, at 4 mm with a mean-gradient feature (floor 0.75), v1 scored 0.65 (0.62-0.68) and v2
  at f3b20ff 0.63 (0.60-0.66) over three draws (0.68 and 0.65 at fc2aa59, one draw): both
  sat 0.1 below that set's floor, which therefore could not show a difference; the floor study
  above chose the new set, and the gradient (each scanner's kernel and noise) is what raised the
  floor. What still separates v2 (`python -m training.realism.classifier --explain 2`, fine
  features at 2 mm, standardised mean differences, real minus phantom, copdgene- and CTA-geometry
  phantoms): moderate gradients (10-80 HU/mm, +0.64 to +0.81) against flat voxels (below 5 HU/mm,
  -0.51): real soft tissue has more edges; lung at -900 to -850 HU (-0.58) against -950 to -900
  (+0.53); voxels above 400 HU (+0.49: the contrast blood of the two contrast scans, 440-560 HU,
  which non-contrast phantoms lack). Gone from the list since the dense-tissue commit f3b20ff:
  too few voxels at 100-200 HU (+1.56 before, at 4 mm). Voxels in and near the body at 4 mm (`python -m
  training.realism.classifier --hu-shares 2`; before: the same with training/phantoms of 9737850):
  the non-contrast real scans hold 2.7-3.2 % at 100-200 HU and 0.4-0.5 % above 400 HU; the
  non-contrast phantoms at the whole-chest geometries held 0.6-1.8 % and 0.8-2.1 %, now 1.6-3.1 %
  and 0.0-0.4 % (v2 at c526f02).
- Dome measures (fixed in the measure, not the phantoms): the dome top is now read from the
  posterolateral quarter of each lung, 15 mm inside its rim. The old measure took the lateral half,
  where the heart, reaching past the left lung's midline anteriorly, ended the columns: the "left
  dome" was the top of the heart (real left dome heights 100-125 mm, right minus left -16, -55 and
  -42 mm). The sign was right (LPS, +z up; real scans are now reoriented to identity directions
  when read; the heart lies at the larger x in the coronal views of all three whole-chest
  scans). Now the CTA's right dome is 16.5 mm above the left, A0001's are level (one 5 mm slice), and COPDGene's within one 4 mm slice
  (-4.8 mm); three phantoms per scan drawn from N(14, 10) mm need not include a level pair
  (about 1 case in 10 has its left dome level or higher).
- COPDGene dome heights (43 and 36 mm), lung volume (4656 ml) and share below -950 HU (19.5 %):
  a hyperinflated patient with emphysema, set beside two healthy phantoms and one mild COPD
  phantom (seed 1002: 3.5 % emphysema, hence almost no hyperinflation). Since commit 9737850 COPD
  phantoms are hyperinflated (before it they had emphysema only: at most 3842 ml, domes 64-108
  mm). Like with like, `python -m training.realism --scan copdgene --pathology copd --seeds
  300-311` (12 COPD phantoms at this scan's geometry): lung volume 2158 / 4817 / 6012 ml (min /
  mean / max), right dome 8 / 44 / 84 mm, left dome 0 / 42 / 88 mm, below -950 HU 5.9 / 12.8 /
  30.4 %; every measure within the range but right minus left dome top (-4.8 mm against -4.0 to
  12.0, one 4 mm slice). Heights near 0 are phantoms whose lengthened lungs the scan's fixed 315 mm
  range cuts at the base (the real scan was planned to its lungs; at the generator's own geometry
  the range follows the lung).
- COPDGene noise: the old air-noise value (10.1 HU) was the measure's 5 x 5 window (21 mm at
  4.2 mm pixels) reaching from 3 voxels outside the body back onto the skin; the window now stays
  5 voxels out: 2.4 HU, as the resampling has averaged the noise away, against 2.8-3.9 in phantoms
  rendered at 4.2 mm (just past the 15 % margin). Its soft-tissue "noise" (5.1 HU against 6.4-8.3)
  measures anatomy, not noise, at 4.2 mm pixels: the phantoms' fat planes and septa reach into the
  21 mm window (an 18 HU mottle gave 9.5-10.7 HU and was lowered to 8 HU in fc2aa59).
- The CTA's lung width (280 mm against 219-225 before): `fit_to_fov` fitted the lung width to the
  smaller side of the field of view, which for this body-cropped 350 x 250 mm field is the A-P
  side; v2 now fits width to the L-R side and depth to the A-P side (commit 3244403; square
  fields, i.e. every training and test set, are unchanged), and the phantoms span 231-284 mm.
- A0002 (apex cut, 8 mm slices) and the heart crop: their volume, width and dome measures cover
  only part of the lungs. A0002's NPS peak (0.48 cycles/mm, a sharp B70f kernel) against the
  phantoms' 0.21 (0.34 before commit f3b20ff): the measure's 10 mm windows in tissue of -50 to 120
  HU now also fall on the chest-wall muscle layer and the costal cartilages, where anatomy adds
  low-frequency power; at this scan the measure reads anatomy as well as noise.
- Vessel share (> -500 HU), lung HU median and 15th percentile, body width and depth, and noise
  fall within or near (15 %) the phantoms' range for the whole-chest scans.
"""


def _fill_2d(mask: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def masks(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(body, lungs) by thresholds; vessels inside the lungs are filled in."""
    body = hu > -500
    body = ndimage.binary_opening(body, iterations=2)
    lab, n = ndimage.label(body)
    if n:
        body = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    body = _fill_2d(body)
    # Lungs, two ways, keeping the larger: air components that touch no side of the field of view
    # (fails when a crop cuts the lungs), or air inside the filled body (fails when the field of
    # view cuts the chest wall open).
    air = hu < AIR_LUNG_CUT_HU
    lab, n = ndimage.label(air)
    edge = np.unique(np.concatenate([lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    lab[np.isin(lab, edge)] = 0
    by_edge = _two_largest(lab)
    by_body = _two_largest(ndimage.label(air & body)[0])
    lungs = by_edge if by_edge.sum() >= by_body.sum() else by_body
    return body, _fill_2d(lungs)


def _two_largest(lab: np.ndarray) -> np.ndarray:
    """The two largest labelled components (the second only if at least 10 % of the first)."""
    sizes = np.bincount(lab.ravel())[1:]
    if len(sizes) == 0 or sizes.max() == 0:
        return np.zeros(lab.shape, dtype=bool)
    keep = [k + 1 for k in np.argsort(sizes)[::-1][:2] if sizes[k] > 0.1 * sizes.max()]
    return np.isin(lab, keep)


def _local_noise(hu: np.ndarray, region: np.ndarray) -> float:
    """Median of the 5x5 in-plane standard deviation over ``region`` (robust to edges)."""
    x = hu.astype(np.float32)
    mean = ndimage.uniform_filter(x, size=(1, 5, 5))
    sq = ndimage.uniform_filter(x * x, size=(1, 5, 5))
    std = np.sqrt(np.clip(sq - mean * mean, 0, None))
    core = ndimage.binary_erosion(region, structure=np.ones((1, 5, 5), bool))
    return float(np.median(std[core])) if core.any() else float("nan")


def _nps_peak(hu: np.ndarray, region: np.ndarray, spacing_xy: float, rng: np.random.Generator) -> float:
    """Frequency (cycles/mm) of the peak of the radially averaged noise power in flat tissue."""
    size = 16
    core = ndimage.binary_erosion(region, structure=np.ones((1, size, size), bool))
    pts = np.argwhere(core)
    if len(pts) < 10:
        return float("nan")
    pick = pts[rng.choice(len(pts), size=min(200, len(pts)), replace=False)]
    power = np.zeros((size, size))
    for z, y, x in pick:
        patch = hu[z, y - size // 2 : y + size // 2, x - size // 2 : x + size // 2].astype(float)
        yy, xx = np.mgrid[:size, :size]
        a = np.c_[np.ones(size * size), yy.ravel(), xx.ravel()]  # remove a plane (anatomy trend)
        resid = patch.ravel() - a @ np.linalg.lstsq(a, patch.ravel(), rcond=None)[0]
        power += np.abs(np.fft.fft2(resid.reshape(size, size))) ** 2
    f = np.fft.fftfreq(size, d=spacing_xy)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    bins = np.linspace(0, fr.max(), 9)
    which = np.digitize(fr.ravel(), bins)
    radial = [power.ravel()[which == i].mean() if np.any(which == i) else 0 for i in range(1, len(bins))]
    centres = 0.5 * (bins[1:] + bins[:-1])
    return float(centres[int(np.argmax(radial))])


DOME_RIM_MM = 15.0  # columns this close to the rim of a lung's footprint are left out of the dome top


def _dome_tops(lungs: np.ndarray, body: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """(right dome, left dome) heights above their deepest recess, and right minus left dome top (mm).

    Per column, the lowest lung voxel traces the diaphragm; the dome top is its 98th percentile
    over the posterolateral quarter of each lung's footprint, away from its rim: the heart rests
    on the anteromedial left hemidiaphragm (anterior columns there end on the heart, up to 12 cm
    above the dome), and rim columns, where the lung reaches only at mid-height, end on the chest
    wall. The recess is the lowest lung voxel of the whole footprint. Axes are LPS (+z superior):
    ``load_real_scans`` reorients real scans to identity directions, as the phantoms have.
    """
    tops, heights = [], []
    mid = np.median(np.argwhere(body)[:, 2])
    xs = np.arange(lungs.shape[2])
    rim_voxels = max(1, int(round(DOME_RIM_MM / spacing[0])))
    for side in (-1, +1):  # LPS: the right lung has the smaller x index
        half = lungs & ((side * (xs - mid)) > 0)[None, None, :]
        footprint = half.any(axis=0)
        cols = np.argwhere(ndimage.binary_erosion(footprint, iterations=rim_voxels))
        if len(cols) == 0:
            tops.append(np.nan)
            heights.append(np.nan)
            continue
        lowest = np.argmax(half, axis=0)  # LPS y grows posteriorly, z superiorly
        quarter = (side * (cols[:, 1] - np.median(cols[:, 1])) > 0) & (cols[:, 0] > np.median(cols[:, 0]))
        top = np.percentile(lowest[cols[quarter, 0], cols[quarter, 1]].astype(float), 98)
        deep = lowest[footprint].min()
        tops.append(top * spacing[2])
        heights.append((top - deep) * spacing[2])
    return heights[0], heights[1], tops[0] - tops[1]


def measure(image: sitk.Image, rng: np.random.Generator) -> dict[str, float]:
    """The comparison numbers of one scan."""
    hu = sitk.GetArrayFromImage(image)
    sx, sy, sz = image.GetSpacing()
    body, lungs = masks(hu)
    lung_hu = hu[lungs]
    idx = np.argwhere(lungs)
    ext = (idx.max(0) - idx.min(0) + 1) * np.array([sz, sy, sx]) if len(idx) else np.zeros(3)
    zmax = int(np.argmax(lungs.sum(axis=(1, 2))))
    bidx = np.argwhere(body[zmax])
    bext = (bidx.max(0) - bidx.min(0) + 1) * np.array([sy, sx]) if len(bidx) else np.zeros(2)
    soft = body & (hu > -50) & (hu < 120) & ~ndimage.binary_dilation(lungs, iterations=2)
    # 3 voxels of margin plus the 5x5 window's half-width: at 4 mm pixels a window centred 3 voxels
    # out still reaches the skin and the clothes, and reads the body's edge as noise.
    outside = ~ndimage.binary_dilation(body, iterations=3 + 2) & (hu > -1500) & (hu < -850)
    dome_r, dome_l, dome_diff = _dome_tops(lungs, body, image.GetSpacing())
    return {
        "lung volume (ml)": float(lungs.sum() * sx * sy * sz / 1000),
        "lung width L-R (mm)": float(ext[2]),
        "lung depth A-P (mm)": float(ext[1]),
        "lung height in scan (mm)": float(ext[0]),
        "lung HU median": float(np.median(lung_hu)) if len(lung_hu) else np.nan,
        "lung HU 15th percentile": float(np.percentile(lung_hu, 15)) if len(lung_hu) else np.nan,
        "lung share below -950 HU (%)": float(100 * np.mean(lung_hu < -950)) if len(lung_hu) else np.nan,
        "vessel share, lung voxels > -500 HU (%)": float(100 * np.mean(lung_hu > -500)) if len(lung_hu) else np.nan,
        "noise in soft tissue (HU, 5x5 std)": _local_noise(hu, soft),
        "noise in air outside body (HU)": _local_noise(hu, outside),
        "NPS peak in soft tissue (cycles/mm)": _nps_peak(hu, soft, sx, rng),
        "body width at widest lung slice (mm)": float(bext[1]),
        "body depth at widest lung slice (mm)": float(bext[0]),
        "right dome height above its recess (mm)": dome_r,
        "left dome height above its recess (mm)": dome_l,
        "right dome top minus left dome top (mm)": dome_diff,
    }


def _phantoms_for(scan: Scan, count: int, first_seed: int, version: int = 2) -> list:
    size = scan.image.GetSize()
    spacing = scan.image.GetSpacing()
    return [
        generate_case(
            first_seed + i,
            PhantomOptions(size_xyz=size, spacing_mm=spacing, pathology=PHANTOM_PATHOLOGIES[i % 3], version=version),
        )
        for i in range(count)
    ]


def _fmt(v: float) -> str:
    return "n/a" if v != v else (f"{v:.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}")


def _table(real: dict[str, float], phantoms: list[dict[str, float]]) -> tuple[list[str], list[str]]:
    lines = ["| measure | real | phantoms (min / mean / max) | |", "|---|---|---|---|"]
    flags = []
    for key, value in real.items():
        vals = np.array([p[key] for p in phantoms], dtype=float)
        lo, mean, hi = np.nanmin(vals), np.nanmean(vals), np.nanmax(vals)
        spread = max(0.15 * abs(value), 1e-9)
        off = value == value and (value < lo - spread or value > hi + spread)
        mark = "**differs**" if off else ""
        if off:
            flags.append(key)
        lines.append(f"| {key} | {_fmt(value)} | {_fmt(lo)} / {_fmt(mean)} / {_fmt(hi)} | {mark} |")
    return lines, flags


def _slices(ax_row, hu: np.ndarray, spacing, label: np.ndarray | None, title: str) -> None:
    kw = dict(cmap="gray", vmin=-1100, vmax=300, interpolation="antialiased")
    lung = hu < AIR_LUNG_CUT_HU
    zc = int(np.argmax(lung[:, hu.shape[1] // 3 : 2 * hu.shape[1] // 3].sum(axis=(1, 2)))) if label is None else int(np.median(np.nonzero(label)[0]))
    yc = hu.shape[1] // 2 if label is None else int(np.median(np.nonzero(label)[1]))
    xc = int(hu.shape[2] * 0.3) if label is None else int(np.median(np.nonzero(label == 4)[2])) if (label == 4).any() else hu.shape[2] // 3
    views = [
        (hu[zc], None if label is None else label[zc], 1.0, "axial"),
        (hu[::-1, yc], None if label is None else label[::-1, yc], spacing[2] / spacing[0], "coronal"),
        (hu[::-1, :, xc], None if label is None else label[::-1, :, xc], spacing[2] / spacing[1], "sagittal"),
    ]
    for i, (img, lab, aspect, name) in enumerate(views):
        ax_row[i].imshow(img, aspect=aspect, **kw)
        ax_row[i].set_title(f"{title}: {name}", fontsize=9)
        if lab is not None:
            ax_row[i + 3].imshow(img, aspect=aspect, **kw)
            ax_row[i + 3].imshow(np.ma.masked_equal(lab, 0), aspect=aspect, cmap="tab10", vmin=0, vmax=9, alpha=0.45, interpolation="nearest")
            ax_row[i + 3].set_title(f"{name} + lobes", fontsize=9)
    for a in ax_row:
        a.axis("off")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(path: Path, real: Scan | None, version: int = 2) -> None:
    """A real scan (top row) above phantoms of each pathology, with and without labels."""
    plt = _pyplot()
    cases = [
        generate_case(
            seed, PhantomOptions(size_xyz=(320, 320, 200), spacing_mm=(1.1, 1.1, 1.6), pathology=kind, version=version)
        )
        for seed, kind in ((101, "none"), (102, "copd"), (103, "covid"), (104, "effusion"))
    ]
    rows = len(cases) + (real is not None)
    fig, axes = plt.subplots(rows, 6, figsize=(18, 3.2 * rows))
    r = 0
    if real is not None:
        _slices(axes[0], sitk.GetArrayFromImage(real.image), real.image.GetSpacing(), None, f"REAL {real.name}")
        r = 1
    for case in cases:
        title = f"phantom {case.meta['seed']} {case.meta['pathology']}"
        _slices(axes[r], sitk.GetArrayFromImage(case.image), case.image.GetSpacing(), sitk.GetArrayFromImage(case.label), title)
        r += 1
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=55)
    plt.close(fig)


def side_by_side(path: Path, scans: list[Scan], version: int = 2, first_seed: int = 300) -> None:
    """Each real scan (left) beside a phantom generated at its size and spacing (right)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(scans), 6, figsize=(18, 3.2 * len(scans)), squeeze=False)
    for i, scan in enumerate(scans):
        opts = PhantomOptions(size_xyz=scan.image.GetSize(), spacing_mm=scan.image.GetSpacing(), pathology="none", version=version)
        case = generate_case(first_seed + i, opts)
        _slices(axes[i, :3], sitk.GetArrayFromImage(scan.image), scan.image.GetSpacing(), None, f"REAL {scan.name[:22]}")
        _slices(axes[i, 3:], sitk.GetArrayFromImage(case.image), case.image.GetSpacing(), None, f"v{version} phantom {first_seed + i}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=55)
    plt.close(fig)


def link_from(document: Path, target: Path) -> str:
    """``target`` as a Markdown link in ``document``: relative to the document's folder, so that
    docs/realism.md finds the pictures in results/realism/ wherever the repository lies."""
    return Path(os.path.relpath(target.resolve(), document.resolve().parent)).as_posix()


def report(out_md: Path, out_png: Path, real_dir: Path = REAL_DIR, version: int = 2, classifier: bool = True) -> str:
    """Measure, compare, draw; returns the markdown."""
    rng = np.random.default_rng(0)
    scans = load_real_scans(real_dir)
    pair_png = out_png.with_name(f"phantoms-v{version}-vs-real.png")
    png_dir = link_from(out_md, out_png.parent)
    real_shown = os.path.relpath(real_dir.resolve(), REPO_ROOT)
    lines = [
        "# Phantom realism: synthetic chest CTs beside real scans",
        "",
        f"Regenerate with `{COMMAND}` from the repository root (reads `{real_shown}`; about 10 minutes on one "
        f"core). Phantoms are generator version {version} (`--version`; v1 is kept reproducible, see "
        f"`{Path(os.path.relpath(out_png.resolve().parent, REPO_ROOT)).as_posix()}/phantoms-v1.png` and the realism number below). **v2 output changed at commit c526f02** "
        "(paraspinal muscle; before it at f3b20ff: dense tissue, bone, cartilage, contrast; at 9737850: COPD hyperinflation, COPD cases only; at "
        "fc2aa59: tissue texture, lobular lung mottle, fat density, first landed in 3244403 with a stronger mottle, "
        "and a non-square field of view fitted side by side): phantoms v2 made before fc2aa59 are those of commit "
        "237d99e (the v2 test set), and published numbers should name the generator commit.",
        "",
        f"![real scans beside v{version} phantoms at the same size and spacing]({png_dir}/{pair_png.name})",
        "",
        "Each real scan is compared with phantoms generated at its own size and spacing "
        f"({PHANTOMS_PER_SCAN} per scan: {', '.join(PHANTOM_PATHOLOGIES)}). Both go through the same "
        "threshold pipeline (body: > -500 HU, largest component, holes filled; lungs: the two largest "
        "components below -400 HU that do not touch the sides of the field of view, or inside the body, "
        "whichever is larger; holes filled so vessels count), not through the phantom "
        "labels. **differs** marks a real value more than 15 % outside the phantoms' range.",
        "",
        f"![phantoms beside a real scan]({png_dir}/{out_png.name})",
        "",
    ]
    if classifier and len(scans) >= 3:
        versions = tuple(sorted({1, version}))
        draws = [measure_realism(scans, versions, seed=d, log=lambda m: print(m, file=sys.stderr)) for d in range(DRAWS)]
        lines += markdown(draws[0], draws)
        lines += [
            f"Calibration (`{CLASSIFIER} --floor-study`): the floor for each spacing and feature set, "
            f"over {DRAWS} draws of patches. The headline set is the one with the lowest floor.",
            "",
        ] + floor_study(scans) + [""]
    if not scans:
        lines += [f"No real scans found in `{real_dir}`: only the picture of phantoms was made.", ""]
    all_flags: dict[str, list[str]] = {}
    for i, scan in enumerate(scans):
        real = measure(scan.image, rng)
        phantoms = [measure(c.image, rng) for c in _phantoms_for(scan, PHANTOMS_PER_SCAN, 1000 + 10 * i, version)]
        size, spacing = scan.image.GetSize(), scan.image.GetSpacing()
        lines += [f"## {scan.name}", "", f"{size[0]} x {size[1]} x {size[2]} voxels, spacing {spacing[0]:.2f} x {spacing[1]:.2f} x {spacing[2]:.2f} mm."]
        lines += [note for prefix, note in SCAN_NOTES.items() if scan.name.startswith(prefix)] + [""]
        table, flags = _table(real, phantoms)
        lines += table + [""]
        for f in flags:
            all_flags.setdefault(f, []).append(scan.name)
    lines += ["## Where the phantoms differ", ""]
    if all_flags:
        lines += ["Measured (from the tables above):", ""]
        lines += [f"- {k}: {', '.join(v)}" for k, v in all_flags.items()]
        lines += [""]
    lines += ["Reading the tables:", "", INTERPRETATION, "Known, by construction:", "", KNOWN_DIFFERENCES]
    showcase = max(scans, key=lambda s: np.prod(s.image.GetSize())) if scans else None
    figure(out_png, showcase, version)
    whole = [s for s in scans if not s.name.startswith("totalseg-heart")]
    if whole:
        side_by_side(pair_png, whole, version)
    text = "\n".join(lines)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text)
    return text


def pathology_table(scan: Scan, pathology: str, seeds: range, version: int = 2) -> list[str]:
    """The measure table of ``scan`` beside phantoms of one pathology (one per seed) at its geometry:
    a like-with-like check for a diseased scan (the report's three phantoms are mostly healthy)."""
    rng = np.random.default_rng(0)
    options = PhantomOptions(size_xyz=scan.image.GetSize(), spacing_mm=scan.image.GetSpacing(), pathology=pathology, version=version)
    phantoms = [measure(generate_case(s, options).image, rng) for s in seeds]
    head = f"{scan.name} beside {len(phantoms)} {pathology} phantoms v{version} (seeds {seeds.start}-{seeds.stop - 1})"
    return [head, ""] + _table(measure(scan.image, rng), phantoms)[0]


def _seed_range(text: str) -> range:
    """``FIRST-LAST`` or ``SEED`` as a range of seeds (an argparse type)."""
    first, _, last = text.partition("-")
    try:
        seeds = range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST seeds, not {text!r}") from None
    if len(seeds) == 0:
        raise argparse.ArgumentTypeError(f"empty seed range {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    p = command_parser(COMMAND, __doc__)
    p.add_argument("--real", default=str(REAL_DIR), help="folder of real scans")
    p.add_argument("--out", default="docs/realism.md")
    p.add_argument("--image", default="results/realism/phantoms.png")
    p.add_argument("--version", type=int, choices=VERSIONS, default=2, help="phantom generator version")
    p.add_argument("--no-classifier", action="store_true", help="skip the realism classifier (saves ~10 minutes)")
    p.add_argument("--scan", help="only print the table of the real scan whose name starts with this (writes nothing)")
    p.add_argument("--pathology", default="copd", choices=PATHOLOGIES, help="with --scan: the phantoms' pathology")
    p.add_argument("--seeds", default=range(300, 312), type=_seed_range, help="with --scan: phantom seeds, FIRST-LAST (default 300-311)")
    args = p.parse_args(argv)
    if args.scan:
        scans = [s for s in load_real_scans(Path(args.real)) if s.name.startswith(args.scan)]
        if not scans:
            print(f"error: no real scan starting with {args.scan!r} in {args.real}", file=sys.stderr)
            return 2
        print("\n".join(pathology_table(scans[0], args.pathology, args.seeds, args.version)))
        return 0
    report(Path(args.out), Path(args.image), Path(args.real), args.version, not args.no_classifier)
    print(f"wrote {args.out} and {args.image}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
