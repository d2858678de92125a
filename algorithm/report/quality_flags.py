"""Quality flags: what makes a lobe mask or its density measures less trustworthy.

Flags are reported next to the measures, never used to zero or drop them: the reader decides.
Each flag is ``{"code", "severity", "message"}`` plus ``"lobe"`` when it concerns one lobe and
``"value"``/``"limit"`` when it comes from a number. Severities: ``"error"`` (the measures of that
scope are not usable as such: a missing lobe, an image not in HU) and ``"warning"`` (usable with
care).

The image noise is estimated as in the global noise index of Christianson et al. (AJR 2015): the
standard deviation of HU in small in-plane windows (about 6 mm) is computed on a few planes through
the lungs, the windows whose mean lies in the soft-tissue range (-20...120 HU: muscle, blood,
liver) are kept, and the mode of their standard deviations is the noise. The mode picks the
homogeneous regions: windows across an edge have larger deviations and fall in the tail. Sharp
(lung) kernels and low-dose scans give large values; density measures such as LAA-950 grow with
the noise, so above ``max_noise_hu`` they are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.labels import LOBES, LOBE_NAMES, Lobe
from algorithm.calibration import robust_hu_calibration  # issue 29 hook
from algorithm.report.hu_landmarks import HuCalibration
from algorithm.boxes import bounding_box
from algorithm.report.lobe_shares import POPULATION_SHARES, default_flag_ranges_percent

PADDING_BELOW_HU = -1074.0  # below any air value: the padding outside the reconstruction circle
_AXIS_ENDS = {"L": ("right", "left"), "R": ("left", "right"), "P": ("anterior", "posterior"),
              "A": ("posterior", "anterior"), "S": ("inferior", "superior"), "I": ("superior", "inferior")}


@dataclass(frozen=True)
class QualityLimits:
    """Where a flag is raised; recorded in the output."""

    max_slice_spacing_mm: float = 3.0
    max_noise_hu: float = 40.0
    min_hu_landmarks: int = 2  # of air, fat and soft tissue (algorithm.report.hu_landmarks)
    max_hu_landmark_spread_hu: float = 100.0  # their offsets from nominal HU agree within this
    lobe_volume_range_ml: tuple[float, float] = (30.0, 4000.0)
    # population mean +- 4 SD (algorithm/report/lobe_shares.py: the source and why 4)
    lobe_share_range_percent: dict[str, tuple[float, float]] = field(default_factory=default_flag_ranges_percent)
    max_low_confidence_share: float = 0.05
    max_outside_air_ml: float = 10.0
    max_network_unlabelled_share: float = 0.25  # of the air-filled lung; see docs/outputs.md
    noise_window_mm: float = 6.0
    soft_tissue_range_hu: tuple[float, float] = (-20.0, 120.0)


@dataclass
class QualityReport:
    flags: list[dict]
    estimates: dict  # the numbers behind the image flags: noise_hu, the HU landmark peaks, slice_spacing_mm


def _flag(code: str, severity: str, message: str, lobe: Lobe | None = None, value=None, limit=None) -> dict:
    flag = {"code": code, "severity": severity, "message": message}
    if lobe is not None:
        flag["lobe"] = lobe.name
    if value is not None:
        flag["value"] = value
    if limit is not None:
        flag["limit"] = limit
    return flag


def _axis_letters(image: sitk.Image) -> str:
    """Orientation letters of the index axes x, y, z: the direction each index grows towards."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def fov_contacts(image: sitk.Image, mask: sitk.Image) -> dict[Lobe, list[str]]:
    """For each lobe, the edges of the field of view it touches: image faces ('superior slice'...)
    and the reconstruction circle (padding below -1074 HU next to the lobe)."""
    labels = sitk.GetArrayViewFromImage(mask)
    letters = _axis_letters(image)
    contacts: dict[Lobe, list[str]] = {lobe: [] for lobe in LOBES}
    for array_axis in range(3):
        low, high = _AXIS_ENDS[letters[2 - array_axis]]
        for end, where in ((0, low), (-1, high)):
            face = np.take(labels, end, axis=array_axis)
            for lobe in LOBES:
                if np.any(face == lobe):
                    contacts[lobe].append(f"{where} edge")
    box = bounding_box(labels)
    if box is not None:
        grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        padding = sitk.GetArrayViewFromImage(image)[grown] < PADDING_BELOW_HU
        if padding.any():
            near = ndimage.binary_dilation(padding) & ~padding
            for value in np.unique(labels[grown][near]):
                if value:
                    contacts[Lobe(int(value))].append("reconstruction circle")
    return contacts


def noise_hu(image: sitk.Image, mask: sitk.Image, limits: QualityLimits, planes: int = 8) -> float | None:
    """Global noise index (HU): mode of the local SD in soft-tissue windows, on planes through the lungs."""
    labels = sitk.GetArrayViewFromImage(mask)
    hu = sitk.GetArrayViewFromImage(image)
    box = bounding_box(labels)
    rows = range(hu.shape[0]) if box is None else range(box[0].start, box[0].stop)
    chosen = np.unique(np.linspace(rows.start, rows.stop - 1, num=min(planes, len(rows))).round().astype(int))
    spacing_yx = image.GetSpacing()[1::-1]
    size = [max(3, int(round(limits.noise_window_mm / s)) | 1) for s in spacing_yx]
    low, high = limits.soft_tissue_range_hu
    deviations = []
    for k in chosen:
        plane = hu[k].astype(np.float64)
        mean = ndimage.uniform_filter(plane, size)
        var = ndimage.uniform_filter(plane * plane, size) - mean * mean
        keep = (mean >= low) & (mean <= high)
        deviations.append(np.sqrt(np.clip(var[keep], 0, None)))
    values = np.concatenate(deviations) if deviations else np.zeros(0)
    if values.size < 200:
        return None  # not enough soft tissue in view (a lung-only crop)
    counts, edges = np.histogram(values, bins=np.arange(0.0, 401.0, 1.0))
    smooth = np.convolve(counts, np.ones(5) / 5.0, mode="same")
    peak = int(np.argmax(smooth))
    return float((edges[peak] + edges[peak + 1]) / 2)


def slice_spacing_mm(image: sitk.Image) -> float:
    """Spacing along the axis closest to head-feet (the slice axis of an axial scan)."""
    letters = _axis_letters(image)
    axis = next(i for i, letter in enumerate(letters) if letter in "SI")
    return float(image.GetSpacing()[axis])


def _lobe_flags(measures: dict, contacts: dict[Lobe, list[str]], limits: QualityLimits) -> list[dict]:
    flags = []
    lo_ml, hi_ml = limits.lobe_volume_range_ml
    for lobe in LOBES:
        name, entry = LOBE_NAMES[lobe], measures[lobe.name]
        volume, share = entry["volume_ml"], entry["share_of_lung_percent"]
        if volume == 0:
            flags.append(_flag("lobe_missing", "error", f"no {name} in the mask: its measures are empty", lobe))
            continue
        if contacts[lobe]:
            where = ", ".join(contacts[lobe])
            flags.append(_flag("lobe_at_fov_edge", "warning",
                               f"the {name} touches the field of view ({where}): its volume is a lower bound", lobe))
        if not lo_ml <= volume <= hi_ml:
            flags.append(_flag("lobe_volume_implausible", "warning",
                               f"{name} volume {volume:.0f} mL is outside {lo_ml:.0f}-{hi_ml:.0f} mL", lobe,
                               value=volume, limit=[lo_ml, hi_ml]))
        lo_share, hi_share = limits.lobe_share_range_percent[lobe.name]
        if share is not None and not lo_share <= share <= hi_share:
            population = POPULATION_SHARES[lobe.name]
            flags.append(_flag("lobe_share_implausible", "warning",
                               f"{name} is {share:.1f} % of the lungs, outside {lo_share:g}-{hi_share:g} % "
                               f"(healthy adults {population.mean_percent:g} +- {population.sd_percent:g} %; "
                               f"z = {population.z_score(share):+.1f})", lobe,
                               value=share, limit=[lo_share, hi_share]))
    return flags


def _image_flags(
    estimates: dict, calibration: HuCalibration, low_confidence_share: float, outside_air_ml: float, limits: QualityLimits,
    network_unlabelled_share: float = 0.0,
) -> list[dict]:
    flags = []
    if not calibration.in_hu:
        flags.append(_flag("intensity_not_hu", "error",
                           f"{calibration.reason}: the image may not be calibrated in HU (air -1000, fat -100, "
                           "soft tissue +40 expected), so the density measures are not meaningful",
                           value=estimates["hu_offset"], limit=limits.max_hu_landmark_spread_hu))
    spacing = estimates["slice_spacing_mm"]
    if spacing > limits.max_slice_spacing_mm:
        flags.append(_flag("thick_slices", "warning",
                           f"slices {spacing:.2f} mm apart (over {limits.max_slice_spacing_mm:g} mm): partial volume "
                           "biases the density measures and the lobe borders", value=spacing, limit=limits.max_slice_spacing_mm))
    noise = estimates["noise_hu"]
    if noise is not None and noise > limits.max_noise_hu:
        flags.append(_flag("noisy_image", "warning",
                           f"image noise about {noise:.0f} HU (over {limits.max_noise_hu:g}): a sharp kernel or low dose; "
                           "LAA-950 and the 15th percentile are biased", value=noise, limit=limits.max_noise_hu))
    if low_confidence_share > limits.max_low_confidence_share:
        flags.append(_flag("low_confidence", "warning",
                           f"{100 * low_confidence_share:.1f} % of the lung voxels were given a lobe with low confidence "
                           "(winning probability under 0.5): check the lobe borders",
                           value=round(low_confidence_share, 4), limit=limits.max_low_confidence_share))
    if outside_air_ml > limits.max_outside_air_ml:
        flags.append(_flag("outside_air_taken_for_lung", "warning",
                           f"the network labelled {outside_air_ml:.0f} mL of air around the body as lung (removed by the "
                           "clean-up): the scan is unlike the training data, check the lobes",
                           value=round(outside_air_ml, 1), limit=limits.max_outside_air_ml))
    if network_unlabelled_share > limits.max_network_unlabelled_share:
        flags.append(_flag("network_missed_lung", "warning",
                           f"the network left {100 * network_unlabelled_share:.0f} % of the air-filled lung unlabelled "
                           "(given a lobe from the scan afterwards): the scan is unlike the training data, check the lobes",
                           value=round(network_unlabelled_share, 4), limit=limits.max_network_unlabelled_share))
    return flags


def assess_quality(
    image: sitk.Image,
    mask: sitk.Image,
    measures: dict,
    low_confidence_share: float = 0.0,
    limits: QualityLimits | None = None,
    outside_air_ml: float = 0.0,
    network_unlabelled_share: float = 0.0,
) -> QualityReport:
    """All flags of a case; ``measures`` is the output of ``lobe_measures`` (volumes and shares);
    ``outside_air_ml``: what the clean-up removed as air around the body;
    ``network_unlabelled_share``: the share of the air-filled lung the network left background."""
    limits = limits or QualityLimits()
    # issue 29 hook: the landmark test, again after averaging the noise (algorithm/calibration.py)
    calibration = robust_hu_calibration(sitk.GetArrayViewFromImage(image), tuple(reversed(image.GetSpacing())),
                                        limits.min_hu_landmarks, limits.max_hu_landmark_spread_hu)
    estimates = {
        "noise_hu": _rounded(noise_hu(image, mask, limits)),
        "air_peak_hu": _rounded(calibration.peaks_hu["air"]),
        "fat_peak_hu": _rounded(calibration.peaks_hu["fat"]),
        "soft_tissue_peak_hu": _rounded(calibration.peaks_hu["soft_tissue"]),
        "hu_offset": _rounded(calibration.offset_hu),
        "slice_spacing_mm": round(slice_spacing_mm(image), 4),
    }
    flags = _lobe_flags(measures, fov_contacts(image, mask), limits)
    flags += _image_flags(estimates, calibration, low_confidence_share, outside_air_ml, limits, network_unlabelled_share)
    return QualityReport(flags=flags, estimates=estimates)


def fissure_flags(fissures: dict | None) -> list[dict]:
    """A warning per fissure that the global search (``--fissures global``) found uncertain: its
    chosen hypothesis and the runner-up score close but lie far apart (docs/outputs.md, fissures)."""
    entries = (fissures or {}).get("fissures") or {}
    return [
        {"code": "fissure_uncertain", "severity": "warning", "message": f"{entry['warning']}: check the lobes",
         "fissure": name, "value": entry["runner_up_distance_mm"]}
        for name, entry in entries.items() if entry.get("warning")
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
