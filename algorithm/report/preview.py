"""A preview picture of a result: axial, coronal and sagittal slices with the lobes in colour.

Made for a person to see at a glance whether the result is sane: lung window, each lobe filled
translucently with its outline in the solid colour, a legend with the volumes and shares, the
number of quality flags and the severity estimate. numpy, scikit-image and Pillow (runtime packages;
the text is Pillow's built-in font, so nothing is read from disk or downloaded).

Layout (``panel_px`` = P): three P x P panels side by side (axial, coronal, sagittal; radiological
convention: the patient's right on the left of the axial and coronal views, anterior on the left of
the sagittal view, superior at the top), above a legend strip; see ``preview_shape``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont
from skimage.transform import resize

from algorithm.labels import LOBES, LOBE_NAMES, Lobe
from algorithm.report.volumes import volumes_ml

# Okabe-Ito colours: distinct for the common forms of colour blindness.
LOBE_COLOURS: dict[Lobe, tuple[int, int, int]] = {
    Lobe.LUL: (230, 159, 0),  # orange
    Lobe.LLL: (204, 121, 167),  # reddish purple
    Lobe.RUL: (86, 180, 233),  # sky blue
    Lobe.RLL: (0, 158, 115),  # bluish green
    Lobe.RML: (240, 228, 66),  # yellow
}
LUNG_WINDOW_HU = (-1350.0, 150.0)  # level -600, width 1500
FILL_ALPHA = 0.35
TEXT_PX = 14  # font size of panels 200 px and larger; smaller panels get half
ROW_PX = 20
MARGIN_PX = 8
WHITE = (255, 255, 255)
LEGEND_ROWS = len(LOBES) + 2  # lobes, total, flags/severity


def preview_shape(panel_px: int = 256) -> tuple[int, int]:
    """(height, width) in pixels of the preview for a given panel size."""
    return panel_px + 2 * MARGIN_PX + LEGEND_ROWS * ROW_PX, 3 * panel_px


@lru_cache(maxsize=4)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font (embedded in Pillow: no font file, no download) at ``size_px``."""
    return ImageFont.load_default(size=size_px)


def _text_px(panel_px: int) -> int:
    return TEXT_PX if panel_px >= 200 else TEXT_PX // 2 + 1


def text_width(text: str, size_px: int) -> int:
    """Width in pixels of ``text`` drawn at ``size_px``."""
    return int(np.ceil(_font(size_px).getlength(text)))


def draw_text(canvas: np.ndarray, text: str, top: int, left: int, colour, size_px: int) -> None:
    """Draw ``text`` onto an (H, W, 3) uint8 canvas in place, its top-left corner at (top, left)."""
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    draw.fontmode = "1"  # no anti-aliasing: crisp at small sizes, and no blended colours on the lobes
    draw.text((left, top), text, font=_font(size_px), fill=tuple(colour))
    canvas[...] = np.asarray(picture)


def _slice_index(labels: np.ndarray, axis: int, lobes: tuple[Lobe, ...] = LOBES) -> int:
    """The plane along ``axis`` that shows the most lobes, then the most lung."""
    other = tuple(a for a in range(3) if a != axis)
    counts = np.stack([np.count_nonzero(labels == lobe, axis=other) for lobe in lobes], axis=1)
    if counts.sum() == 0:
        return labels.shape[axis] // 2
    score = (counts > 0).sum(axis=1) * labels.size + counts.sum(axis=1)
    return int(np.argmax(score))


def _to_lps(image: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(image, "LPS")


def _views(hu: np.ndarray, labels: np.ndarray, spacing_zyx: tuple[float, ...], planes_from: np.ndarray | None = None):
    """(name, hu plane, label plane, row mm, col mm, left letter, right letter) for each view.

    Arrays are LPS [z, y, x]: x grows to the patient's left, y to posterior, z to superior. The
    planes are those of ``planes_from`` (default: ``labels``) that show the most lobes.
    """
    dz, dy, dx = spacing_zyx
    chooser = labels if planes_from is None else planes_from
    k = _slice_index(chooser, 0)
    j = _slice_index(chooser, 1)
    i = _slice_index(chooser, 2)
    return [
        ("axial", hu[k], labels[k], dy, dx, "R", "L"),
        ("coronal", hu[::-1, j, :], labels[::-1, j, :], dz, dx, "R", "L"),
        ("sagittal", hu[::-1, :, i], labels[::-1, :, i], dz, dy, "A", "P"),
    ]


def _fit(plane: np.ndarray, row_mm: float, col_mm: float, panel_px: int, order: int) -> np.ndarray:
    """Resize to square pixels, as large as fits in the panel."""
    height_mm, width_mm = plane.shape[0] * row_mm, plane.shape[1] * col_mm
    scale = panel_px / max(height_mm, width_mm)
    shape = (max(1, min(panel_px, round(height_mm * scale))), max(1, min(panel_px, round(width_mm * scale))))
    out = resize(plane.astype(np.float32), shape, order=order, preserve_range=True, anti_aliasing=False, mode="edge")
    return out if order else np.rint(out).astype(np.uint8)


def _outline(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels with a 4-neighbour of another value."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge & (labels > 0)


def _panel(view, panel_px: int) -> np.ndarray:
    name, hu, labels, row_mm, col_mm, left, right = view
    lo, hi = LUNG_WINDOW_HU
    grey = np.clip((_fit(hu, row_mm, col_mm, panel_px, 1) - lo) / (hi - lo), 0, 1) * 255
    lab = _fit(labels, row_mm, col_mm, panel_px, 0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    edge = _outline(lab)
    for lobe, colour in LOBE_COLOURS.items():
        inside = lab == lobe
        rgb[inside] = (1 - FILL_ALPHA) * rgb[inside] + FILL_ALPHA * np.asarray(colour, np.float32)
    rgb = np.rint(rgb).astype(np.uint8)
    for lobe, colour in LOBE_COLOURS.items():
        rgb[edge & (lab == lobe)] = colour
    panel = np.zeros((panel_px, panel_px, 3), np.uint8)
    top, left_px = (panel_px - rgb.shape[0]) // 2, (panel_px - rgb.shape[1]) // 2
    panel[top : top + rgb.shape[0], left_px : left_px + rgb.shape[1]] = rgb
    size = _text_px(panel_px)
    draw_text(panel, name, 4, 4, WHITE, size)
    middle = (panel_px - size) // 2
    draw_text(panel, left, middle, 4, WHITE, size)
    draw_text(panel, right, middle, panel_px - 4 - text_width(right, size), WHITE, size)
    return panel


def _legend_lines(report: dict, volumes: dict[str, float]) -> list[tuple[str, tuple[int, int, int] | None]]:
    total = volumes.get("total", 0.0) or 0.0
    lines = []
    for lobe in LOBES:
        volume = volumes.get(lobe.name, 0.0) or 0.0
        share = 100.0 * volume / total if total > 0 else 0.0
        lines.append((f"{lobe.name}  {LOBE_NAMES[lobe]}   {volume:.1f} mL   {share:.1f} %", LOBE_COLOURS[lobe]))
    lines.append((f"lungs   {total:.1f} mL", None))
    flags = report.get("quality_flags")
    status = "" if flags is None else (f"quality flags: {len(flags)} (see the JSON)" if flags else "no quality flags")
    severity = (report.get("measures") or {}).get("severity") or {}
    if severity.get("total_score") is not None:
        status += f"   severity {severity['total_score']}/{severity.get('max_score', 25)} (research estimate)"
    lines.append((status.strip(), None))
    return lines


def swatch_px(panel_px: int) -> int:
    """Edge of a lobe's colour square in the legend."""
    return 14 if panel_px >= 200 else 7


def _legend(panel_px: int, report: dict, volumes: dict[str, float]) -> np.ndarray:
    legend = np.zeros((2 * MARGIN_PX + LEGEND_ROWS * ROW_PX, 3 * panel_px, 3), np.uint8)
    size = _text_px(panel_px)
    box = swatch_px(panel_px)
    for row, (text, colour) in enumerate(_legend_lines(report, volumes)):
        top = MARGIN_PX + row * ROW_PX
        if colour is not None:
            legend[top : top + box, MARGIN_PX : MARGIN_PX + box] = colour
        draw_text(legend, text, top, 2 * MARGIN_PX + box, WHITE, size)
    return legend


def render_preview(
    image: sitk.Image, mask: sitk.Image, report: dict | None = None, panel_px: int = 256, planes_from: sitk.Image | None = None
) -> np.ndarray:
    """The preview as an (H, W, 3) uint8 RGB array, H, W = ``preview_shape(panel_px)``.

    ``report`` (optional) gives the volumes, flags and severity shown in the legend; without it the
    volumes are computed from the mask. ``planes_from`` (optional): another mask on the same grid
    whose planes are shown (two masks through the same planes, e.g. before and after a change).
    """
    report = report or {}
    hu = sitk.GetArrayFromImage(_to_lps(image))
    labels = sitk.GetArrayFromImage(_to_lps(mask)).astype(np.uint8)
    # DICOMOrient permutes the axes: take the spacing from the reoriented image.
    spacing_zyx = tuple(float(s) for s in reversed(_to_lps(mask).GetSpacing()))
    chooser = None if planes_from is None else sitk.GetArrayFromImage(_to_lps(planes_from)).astype(np.uint8)
    panels = [_panel(view, panel_px) for view in _views(hu, labels, spacing_zyx, chooser)]
    volumes = report.get("volumes_ml") or volumes_ml(mask)
    return np.concatenate([np.concatenate(panels, axis=1), _legend(panel_px, report, volumes)], axis=0)
