"""A realism number for phantoms (issue 17): how well a small classifier tells real from phantom.

``python -m training.realism.classifier`` prints a markdown section (it is also part of
``python -m training.realism``). CPU-cheap on purpose: a few hundred 32^3 patches and logistic
regression on 7 intensity features (tissue shares, mean, spread).

Protocol. Every scan (real, or phantom generated at a real scan's size and spacing) is resampled to
``SPACING_MM`` isotropic after an anti-alias blur, HU clipped to [-1024, 600] (so padding values
outside the reconstruction circle all read as air). Patches are centred within 20 mm of the body.

- Phantoms, leave-one-real-scan-out: for each real scan R, train on the patches of the other real
  scans against patches of phantoms made at the *other* scans' geometries; test on R's patches
  against patches of phantoms made at R's geometry (new seeds). Balanced accuracy, averaged over R:
  0.5 = the classifier cannot tell phantom from real.
- Floor, real against real: the same classifier and protocol with a real scan F in the phantom
  role (trained on one half of F along z, tested on the other half; the remaining scans are the
  "real" class). A classifier that tells one real scan from the others by scanner, kernel or slice
  thickness scores above 0.5 here: phantom numbers are only meaningful above this floor.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.phantoms.config import PhantomOptions
from training.phantoms.generate import generate_case
from training.realism.real_scans import REAL_DIR, load_real_scans

COMMAND = "python -m training.realism.classifier"
# 2 mm and no gradient feature: the lowest real-against-real floor of the spacings and feature
# sets tried (`--floor-study`: 0.68 against 0.75 for the earlier 4 mm set with a mean gradient;
# gradients pick up each scanner's kernel and noise). 32^3 patches are 64 mm cubes.
SPACING_MM = 2.0
PATCH = 32
PATCHES_PER_REAL = 60
PATCHES_PER_PHANTOM = 20
PHANTOMS_PER_GEOMETRY = 3
HU_RANGE = (-1024.0, 600.0)
PHANTOM_SEED_STRIDE = 100_000  # draw k uses phantom seeds k * stride + 5000 + 10 i
DRAWS = 3  # repetitions of the whole measurement (patch positions and phantoms) in the report
# Tissue classes: air, lung, partial volume, fat and soft tissue, contrast and bone. A finer HU
# histogram and a gradient histogram raise the real-against-real floor (at 4 mm 0.83 against 0.75;
# 5 mm was worse): they pick up each scanner's kernel and each patient's emphysema.
TISSUE_EDGES = np.array([-1024, -900, -500, -200, 100, 601], float)
N_FEATURES = len(TISSUE_EDGES) - 1 + 2
# The finer set, reported as a check that the coarse one does not hide differences.
FINE_HU_EDGES = np.array([-1024, -950, -900, -850, -800, -700, -500, -200, -100, -50, 0, 50, 100, 200, 400, 601], float)
FINE_GRAD_EDGES = np.array([0, 5, 10, 20, 40, 80, 160, 1e9], float)  # HU per mm


@dataclass
class Patches:
    """Feature rows of one scan; ``z`` is each patch centre's height in the scan (0 bottom .. 1
    top, to split a scan in halves); ``fine`` holds the finer feature set."""

    name: str
    features: np.ndarray
    z: np.ndarray
    fine: np.ndarray | None = None

    def with_fine(self) -> Patches:
        return Patches(self.name, self.fine, self.z)


def resample_common(image: sitk.Image, spacing_mm: float = SPACING_MM) -> np.ndarray:
    """Blur (anti-alias) and resample to isotropic ``spacing_mm``; float32 HU [z, y, x], clipped."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    image = sitk.Clamp(image, sitk.sitkFloat32, HU_RANGE[0], 3071.0)  # padding reads as air
    sigmas = [max(0.0, 0.5 * (spacing_mm - s)) for s in image.GetSpacing()]
    if max(sigmas) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigmas])
    size = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    out = sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (spacing_mm,) * 3, image.GetDirection(), HU_RANGE[0]
    )
    return np.clip(sitk.GetArrayFromImage(out), *HU_RANGE).astype(np.float32)


def patch_features(patch: np.ndarray) -> np.ndarray:
    """Tissue-class shares, mean and spread of one patch."""
    shares = np.histogram(patch, bins=TISSUE_EDGES)[0] / patch.size
    return np.concatenate([shares, [patch.mean() / 500.0, patch.std() / 500.0]]).astype(np.float32)


def fine_features(patch: np.ndarray, spacing_mm: float = SPACING_MM) -> np.ndarray:
    """15-bin HU histogram, 7-bin gradient-magnitude histogram and three moments (25 features)."""
    hist = np.histogram(patch, bins=FINE_HU_EDGES)[0] / patch.size
    grad = np.sqrt(sum(g**2 for g in np.gradient(patch, spacing_mm)))
    ghist = np.histogram(grad, bins=FINE_GRAD_EDGES)[0] / patch.size
    return np.concatenate([hist, ghist, [patch.mean() / 500.0, patch.std() / 500.0, np.log1p(grad.mean())]]).astype(np.float32)


def sample_patches(name: str, volume: np.ndarray, count: int, rng: np.random.Generator, spacing_mm: float = SPACING_MM) -> Patches:
    """``count`` patches whose centres lie within 20 mm of the body and that fit in the volume
    (``volume`` at ``spacing_mm`` isotropic)."""
    h = PATCH // 2
    shape = np.array(volume.shape)
    if (shape < PATCH).any():
        raise ValueError(f"{name}: {tuple(shape)} voxels at {spacing_mm} mm is smaller than a {PATCH}^3 patch")
    near_body = ndimage.binary_dilation(volume > -500, iterations=int(round(20 / spacing_mm)))
    allowed = np.zeros(volume.shape, dtype=bool)
    allowed[h : shape[0] - h + 1, h : shape[1] - h + 1, h : shape[2] - h + 1] = True
    centres = np.argwhere(near_body & allowed)
    if len(centres) == 0:
        centres = np.argwhere(allowed)
    pick = centres[rng.choice(len(centres), size=count, replace=len(centres) < count)]
    cubes = [volume[z - h : z + h, y - h : y + h, x - h : x + h] for z, y, x in pick]
    coarse = np.stack([patch_features(c) for c in cubes])
    fine = np.stack([fine_features(c, spacing_mm) for c in cubes])
    return Patches(name, coarse, pick[:, 0].astype(float) / shape[0], fine)


def _classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))


def balanced_accuracy(model, real: np.ndarray, fake: np.ndarray) -> float:
    """Mean of the accuracy on real patches (label 1) and on phantom patches (label 0)."""
    return 0.5 * (float(np.mean(model.predict(real) == 1)) + float(np.mean(model.predict(fake) == 0)))


def _fit(real: list[np.ndarray], fake: list[np.ndarray]):
    x = np.concatenate(real + fake)
    y = np.concatenate([np.ones(sum(len(r) for r in real)), np.zeros(sum(len(f) for f in fake))])
    # Equal weight per class whatever the patch counts.
    w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum())) * len(y)
    model = _classifier()
    model.fit(x, y, logisticregression__sample_weight=w)
    return model


def leave_one_real_out(real: list[Patches], phantoms: dict[str, list[Patches]]) -> dict[str, float]:
    """Balanced accuracy per held-out real scan; ``phantoms[name]`` were made at real scan ``name``'s geometry."""
    out = {}
    for held in real:
        train_real = [r.features for r in real if r.name != held.name]
        train_fake = [p.features for name, ps in phantoms.items() if name != held.name for p in ps]
        model = _fit(train_real, train_fake)
        test_fake = np.concatenate([p.features for p in phantoms[held.name]])
        out[held.name] = balanced_accuracy(model, held.features, test_fake)
    return out


def real_against_real(real: list[Patches]) -> dict[tuple[str, str], float]:
    """The floor: each real scan F in the phantom role (trained on its lower half, tested on its
    upper half), each other scan R held out as the real test set."""
    out = {}
    for fake in real:
        low, high = fake.z < 0.5, fake.z >= 0.5
        if low.sum() < 5 or high.sum() < 5:
            continue
        for held in real:
            if held.name == fake.name:
                continue
            train_real = [r.features for r in real if r.name not in (held.name, fake.name)]
            model = _fit(train_real, [fake.features[low]])
            out[(held.name, fake.name)] = balanced_accuracy(model, held.features, fake.features[high])
    return out


@dataclass
class RealismNumbers:
    floor: dict[tuple[str, str], float]
    by_version: dict[int, dict[str, float]] = field(default_factory=dict)
    fine_floor: dict[tuple[str, str], float] = field(default_factory=dict)
    fine_by_version: dict[int, dict[str, float]] = field(default_factory=dict)


def phantom_patches(scan_name: str, image: sitk.Image, version: int, first_seed: int, rng: np.random.Generator) -> list[Patches]:
    """Patches of ``PHANTOMS_PER_GEOMETRY`` phantoms (healthy and COPD) at a real scan's size and spacing."""
    out = []
    for i in range(PHANTOMS_PER_GEOMETRY):
        options = PhantomOptions(
            size_xyz=image.GetSize(), spacing_mm=image.GetSpacing(), pathology=("none", "copd")[i % 2], version=version
        )
        case = generate_case(first_seed + i, options)
        out.append(sample_patches(f"{scan_name}-v{version}-{i}", resample_common(case.image), PATCHES_PER_PHANTOM, rng))
    return out


def measure_realism(scans: list, versions: tuple[int, ...] = (1, 2), seed: int = 0, log=print) -> RealismNumbers:
    """All numbers of the section; ``scans`` are ``real_scans.Scan`` (name, image). ``seed`` draws the
    patch positions and the phantoms (seed 0: phantom seeds 5000 + 10 i at real scan i)."""
    rng = np.random.default_rng(seed)
    real = [sample_patches(s.name, resample_common(s.image), PATCHES_PER_REAL, rng) for s in scans]
    real_fine = [r.with_fine() for r in real]
    numbers = RealismNumbers(floor=real_against_real(real), fine_floor=real_against_real(real_fine))
    log(f"floor (real against real): {np.mean(list(numbers.floor.values())):.3f}, fine {np.mean(list(numbers.fine_floor.values())):.3f}")
    for version in versions:
        phantoms = {}
        for i, s in enumerate(scans):
            phantoms[s.name] = phantom_patches(s.name, s.image, version, 5000 + 10 * i + PHANTOM_SEED_STRIDE * seed, rng)
        numbers.by_version[version] = leave_one_real_out(real, phantoms)
        fine = {k: [p.with_fine() for p in v] for k, v in phantoms.items()}
        numbers.fine_by_version[version] = leave_one_real_out(real_fine, fine)
        log(f"v{version}: {np.mean(list(numbers.by_version[version].values())):.3f}, fine {np.mean(list(numbers.fine_by_version[version].values())):.3f}")
    return numbers


def _mean(values) -> float:
    return float(np.mean(list(values))) if len(values) else float("nan")


def spread_line(draws: list[RealismNumbers]) -> str:
    """Mean (min-max) over repeated draws of patches and phantoms, floor and every version."""
    def stat(get) -> str:
        v = [get(n) for n in draws]
        return f"{np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f})"

    versions = sorted(draws[0].by_version)
    coarse = ", ".join(f"v{v} {stat(lambda n, v=v: _mean(n.by_version[v].values()))}" for v in versions)
    fine = ", ".join(f"v{v} {stat(lambda n, v=v: _mean(n.fine_by_version[v].values()))}" for v in versions)
    return (
        f"Over {len(draws)} draws of patch positions and phantoms (`--draws {len(draws)}`; the table is draw 0), "
        f"mean (min-max): floor {stat(lambda n: _mean(n.floor.values()))}, phantoms {coarse}; fine features: "
        f"floor {stat(lambda n: _mean(n.fine_floor.values()))}, phantoms {fine}."
    )


def markdown(numbers: RealismNumbers, draws: list[RealismNumbers] | None = None) -> list[str]:
    """The section for docs/realism.md; ``draws`` (``numbers`` first) add the spread over repeated draws."""
    names = list(next(iter(numbers.by_version.values())).keys()) if numbers.by_version else []
    floor_by_held = {n: np.mean([v for (h, _), v in numbers.floor.items() if h == n]) for n in names}
    floor_mean = float(np.mean(list(numbers.floor.values()))) if numbers.floor else float("nan")
    versions = sorted(numbers.by_version)
    lines = [
        "## A realism number: can a classifier tell phantom from real?",
        "",
        f"`{COMMAND} --draws {DRAWS}` (also run by `python -m training.realism`; about 2 minutes per draw on one "
        f"core, most of it generating the phantoms at the real scans' sizes). Logistic regression on {N_FEATURES} features (shares of "
        "air, lung, partial-volume, soft-tissue and dense voxels; mean; spread) "
        f"of {PATCH}^3 patches at {SPACING_MM:.0f} mm isotropic "
        f"({PATCH * SPACING_MM:.0f} mm cubes, anti-alias blurred, HU clipped to [-1024, 600]); {PATCHES_PER_REAL} patches per "
        f"real scan, {PATCHES_PER_PHANTOM} per phantom, {PHANTOMS_PER_GEOMETRY} phantoms (healthy, COPD) per real scan's "
        "size and spacing. Balanced accuracy on the held-out real scan and the phantoms made at its geometry; "
        "**0.5 = indistinguishable**.",
        "",
        "The floor calibrates it: the same classifier with one real scan in the phantom role (trained on its "
        "lower half, tested on its upper half) against the others. It is far above 0.5 when scanner, kernel, "
        "slice thickness and body habitus alone tell real scans apart; phantom accuracies near the floor mean "
        "phantoms differ from real scans about as much as real scans differ from each other.",
        "",
        "| held-out real scan | floor (real vs real) | " + " | ".join(f"phantoms v{v}" for v in versions) + " |",
        "|---|---|" + "---|" * len(versions),
    ]
    for n in names:
        row = f"| {n} | {floor_by_held[n]:.2f} | " + " | ".join(f"{numbers.by_version[v][n]:.2f}" for v in versions)
        lines.append(row + " |")
    means = " | ".join(f"**{np.mean(list(numbers.by_version[v].values())):.2f}**" for v in versions)
    lines += [f"| mean | **{floor_mean:.2f}** | {means} |", ""]
    if draws and len(draws) > 1:
        lines += [spread_line(draws), ""]
    if numbers.fine_by_version:
        fine = " / ".join(f"v{v} {np.mean(list(numbers.fine_by_version[v].values())):.2f}" for v in versions)
        lines += [
            "Check with a finer feature set (25 features: 15-bin HU histogram, 7-bin gradient histogram, three "
            f"moments), same patches and protocol: floor {np.mean(list(numbers.fine_floor.values())):.2f}, "
            f"phantoms {fine}. The finer features pick up each scanner's kernel and each patient's emphysema, "
            "which is why the coarse set is the headline number.",
            "",
        ]
    return lines


def explain(scans: list, version: int = 2, prefixes: tuple[str, ...] = ("copdgene", "totalseg-chest"), top: int = 10) -> list[str]:
    """Which fine features separate real patches from phantom patches: standardised mean differences
    (real minus phantom) over all real scans and phantoms at the geometries of ``prefixes``."""
    rng = np.random.default_rng(0)
    real = np.concatenate([sample_patches(s.name, resample_common(s.image), PATCHES_PER_REAL, rng).fine for s in scans])
    fake = [p for s in scans if s.name.startswith(prefixes) for p in phantom_patches(s.name, s.image, version, 5000, rng)]
    phantom = np.concatenate([p.fine for p in fake])
    names = [f"HU {a:.0f}..{b:.0f}" for a, b in zip(FINE_HU_EDGES[:-1], FINE_HU_EDGES[1:])]
    names += [f"gradient {a:.0f}..{b:.0f} HU/mm" for a, b in zip(FINE_GRAD_EDGES[:-1], FINE_GRAD_EDGES[1:])]
    names += ["mean", "spread", "log mean gradient"]
    sd = np.sqrt(0.5 * (real.var(0) + phantom.var(0))) + 1e-9
    d = (real.mean(0) - phantom.mean(0)) / sd
    return [
        f"{names[i]}: real {real[:, i].mean():.4f}, phantom {phantom[:, i].mean():.4f}, d = {d[i]:+.2f}"
        for i in np.argsort(-np.abs(d))[:top]
    ]


SHARE_EDGES_HU = (-1024, -200, -100, -50, 0, 50, 100, 150, 200, 300, 400, 601)
SHARES_SPACING_MM = 4.0


def hu_shares(volume: np.ndarray) -> np.ndarray:
    """Share (%) of the voxels in and within 20 mm of the body in each ``SHARE_EDGES_HU`` bin."""
    near = ndimage.binary_dilation(volume > -500, iterations=int(round(20 / SHARES_SPACING_MM)))
    return 100.0 * np.histogram(volume[near], bins=SHARE_EDGES_HU)[0] / max(1, int(near.sum()))


def hu_share_table(scans: list, version: int = 2) -> list[str]:
    """Each real scan's HU shares at 4 mm beside those of its phantoms (the classifier's phantom
    seeds of draw 0): where the phantoms lack or overdo dense tissue."""
    bins = [f"{a}..{b}" for a, b in zip(SHARE_EDGES_HU[:-1], SHARE_EDGES_HU[1:])]
    lines = ["| scan | " + " | ".join(bins) + " |", "|---|" + "---|" * len(bins)]
    for i, s in enumerate(scans):
        rows = [(s.name, resample_common(s.image, SHARES_SPACING_MM))]
        for k in range(PHANTOMS_PER_GEOMETRY):
            options = PhantomOptions(size_xyz=s.image.GetSize(), spacing_mm=s.image.GetSpacing(), pathology=("none", "copd")[k % 2], version=version)
            case = generate_case(5000 + 10 * i + k, options)
            rows.append((f"  phantom v{version} {k} (contrast {case.meta.get('contrast', 0)})", resample_common(case.image, SHARES_SPACING_MM)))
        lines += [f"| {name} | " + " | ".join(f"{v:.1f}" for v in hu_shares(vol)) + " |" for name, vol in rows]
    return lines


FLOOR_STUDY_SPACINGS_MM = (2.0, 3.0, 4.0)
# Feature sets of the study, from a scan's patches.
FLOOR_STUDY_SUBSETS = {
    "7 coarse (the headline set)": lambda p: p.features,
    "7 coarse and the mean gradient (the set before)": lambda p: np.hstack([p.features, p.fine[:, -1:]]),
    "5 tissue shares": lambda p: p.features[:, :5],
    "25 fine": lambda p: p.fine,
}


def floor_study(scans: list, spacings=FLOOR_STUDY_SPACINGS_MM, draws: int = DRAWS) -> list[str]:
    """The real-against-real floor per spacing and feature subset (mean over ``draws`` patch draws):
    can a choice of features and spacing make real scans indistinguishable from each other?"""
    lines = ["| spacing (mm) | features | floor, mean (min-max) |", "|---|---|---|"]
    for spacing in spacings:
        volumes = [resample_common(s.image, spacing) for s in scans]
        floors: dict[str, list[float]] = {name: [] for name in FLOOR_STUDY_SUBSETS}
        for d in range(draws):
            rng = np.random.default_rng(d)
            real = [sample_patches(s.name, v, PATCHES_PER_REAL, rng, spacing) for s, v in zip(scans, volumes)]
            for name, columns in FLOOR_STUDY_SUBSETS.items():
                rows = [Patches(r.name, columns(r), r.z) for r in real]
                floors[name].append(_mean(real_against_real(rows).values()))
        for name, v in floors.items():
            lines.append(f"| {spacing:g} | {name} | {np.mean(v):.2f} ({min(v):.2f}-{max(v):.2f}) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--real", default=str(REAL_DIR), help="folder of real scans")
    p.add_argument("--versions", default="1,2", help="phantom generator versions to compare")
    p.add_argument("--explain", type=int, metavar="VERSION", help="list the fine features that separate that version from real")
    p.add_argument("--draws", type=int, default=1, help="repeat with this many draws of patches and phantoms (mean and range)")
    p.add_argument("--floor-study", action="store_true", help="the real-against-real floor per spacing and feature subset")
    p.add_argument("--hu-shares", type=int, metavar="VERSION", help="HU shares at 4 mm of each real scan and its phantoms of that version")
    args = p.parse_args(argv)
    if args.draws < 1:
        print(f"error: --draws must be at least 1, not {args.draws}", file=sys.stderr)
        return 2
    scans = load_real_scans(Path(args.real))
    if len(scans) < 3:
        print(f"error: need at least 3 real scans in {args.real}, found {len(scans)}", file=sys.stderr)
        return 2
    if args.explain:
        print("\n".join(explain(scans, args.explain)))
        return 0
    if args.hu_shares:
        print("\n".join(hu_share_table(scans, args.hu_shares)))
        return 0
    if args.floor_study:
        print("\n".join(floor_study(scans)))
        return 0
    versions = tuple(int(v) for v in args.versions.split(","))
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    draws = [measure_realism(scans, versions, seed=d, log=log) for d in range(args.draws)]
    print("\n".join(markdown(draws[0], draws)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
