"""Border vessel index: how free of vessels the band along each interlobar border is.

Vessels and bronchi do not cross the fissures, so on real CT a band along each fissure is nearly
free of vessels even where the fissure itself is too thin to see. Per interlobar border

    index = (share of vessel voxels within ``band_mm`` of the border)
            / (share of vessel voxels in the whole analysed lung)

where a vessel voxel is an analysed lung voxel above ``vessel_hu``. About 0 means the border runs
in a vessel-free band (where a fissure is), about 1 that it cuts through the lung as if the border
were anywhere. The borders: left oblique (LUL/LLL); the right oblique split into its upper part
(RUL/RLL) and middle part (RML/RLL); the horizontal fissure (RUL/RML).

The analysed lung (the *domain*) leaves out:

- the outer ``pleura_margin_mm`` of the lung: partial volume with the chest wall, the mediastinum
  and the diaphragm reads as dense, and lobe masks are least sure there;
- dense lung that is not vessel and the hilum: dense structures (above ``vessel_hu``) thicker
  than a peripheral vessel, i.e. holding an all-dense cube of side ``thick_mm``, plus
  ``hilum_margin_mm`` around them. In a lung these are the lobar and segmental vessels and
  bronchi where they enter at the hilum (the interlobar artery lies in the depth of the oblique
  fissures there), consolidation, atelectasis next to an effusion and tumours. Thick structures mark the hilum without an airway tree or a side-specific shape model,
  and the same rule removes the dense lung that is not vessel; the margin also removes their
  partial-volume rim and the bronchial walls and smaller vessels that run beside them;
- hazy lung: where the local parenchyma (mean over a ``haze_box_mm`` box of the lung's HU, each
  voxel clipped at ``vessel_hu``) is at or above ``haze_hu`` = -700 HU, the ground-glass limit of
  the density measures: in ground glass and in the compressed lung next to an effusion, noise
  crosses ``vessel_hu`` as speckle that would read as vessels.

Emphysema lowers the vessel share everywhere and the whole-lung normalisation takes it out.
Contrast makes vessels brighter, so more small vessels cross ``vessel_hu`` in the band and in the
lung alike; the enhanced hilar vessels are thick and excluded.

The geometry is computed on a regular sub-lattice of the input grid (every k-th voxel per axis, the
step chosen at most ``cell_mm``): the HU of every lattice point is an input voxel's own value, so
the vessel shares are unbiased estimates of the input grid's (vessels are not aligned with the
lattice), while the distance transforms run on 1/8 to 1/27 of the voxels: the index costs a few
per cent of a prediction on a 512 x 512 x 400 scan (docs/performance.md). Bands are measured from
the lattice's border points, so their edge is known to about half a lattice step.

On thick slices (over ``max_slice_mm``) vessels thinner than about the slice thickness fall below
the threshold by partial volume and the band is at most a slice or two deep across near-axial
borders: the index is still computed (it then tells whether the border avoids the larger
vessels) but is marked ``reliable: false`` and raises no warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from algorithm.boxes import bounding_box
from algorithm.image_ops import (  # the vessel mask and the lattice are shared with the fissure fit
    CELL_MM,
    HAZE_BOX_MM,  # noqa: F401  (re-exported: the index's definition)
    HAZE_HU,  # noqa: F401
    HILUM_MARGIN_MM,  # noqa: F401
    PLEURA_MARGIN_MM,  # noqa: F401
    THICK_MM,  # noqa: F401
    VESSEL_HU,  # noqa: F401
    Lattice,  # noqa: F401
    VesselMask,
    VesselSettings,
    analysis_lattice,
    lattice_steps,  # noqa: F401
    vessel_mask,
)
from algorithm.labels import Lobe

BAND_MM = 4.0  # half-width of the band along a border (mm)
MIN_BAND_ML = 3.0  # analysed band volume under which a border is "tiny"
HIGH_INDEX = 0.5  # a border index above this raises a quality warning
MAX_SLICE_MM = 3.0  # coarser voxels: index marked unreliable, no warning (as quality's thick_slices)


@dataclass(frozen=True)
class Border:
    """An interlobar border: its report key and the two lobes it separates."""

    name: str
    lobe_a: Lobe
    lobe_b: Lobe
    description: str


BORDERS: tuple[Border, ...] = (
    Border("left_oblique", Lobe.LUL, Lobe.LLL, "left oblique fissure (LUL/LLL)"),
    Border("right_oblique_upper", Lobe.RUL, Lobe.RLL, "right oblique fissure, upper part (RUL/RLL)"),
    Border("right_oblique_middle", Lobe.RML, Lobe.RLL, "right oblique fissure, middle part (RML/RLL)"),
    Border("horizontal", Lobe.RUL, Lobe.RML, "horizontal fissure (RUL/RML)"),
)


@dataclass(frozen=True)
class BorderIndexSettings(VesselSettings):
    """The definition of the index (the vessel mask's fields, then the band's); recorded in every output."""

    band_mm: float = BAND_MM
    cell_mm: float = CELL_MM
    min_band_ml: float = MIN_BAND_ML
    high_index: float = HIGH_INDEX
    max_slice_mm: float = MAX_SLICE_MM


@dataclass
class BandIndex:
    """The index of one band: ``index`` is None unless ``status`` is "ok"."""

    status: str  # "ok", "missing" (the lobes do not touch), "tiny" (band under min_band_ml), "no_vessels"
    index: float | None
    band_ml: float
    band_vessel_share: float | None



def border_interfaces(labels: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """For every pair of touching labels (a < b, both > 0): the voxels of either with a face
    neighbour in the other (both sides of the border). One pass over the array for all pairs."""
    coords: dict[tuple[int, int], list[tuple[np.ndarray, ...]]] = {}
    for axis in range(labels.ndim):
        n = labels.shape[axis]
        lo = labels[(slice(None),) * axis + (slice(0, n - 1),)]
        hi = labels[(slice(None),) * axis + (slice(1, n),)]
        where = np.nonzero((lo != hi) & (lo > 0) & (hi > 0))
        v_lo, v_hi = lo[where], hi[where]
        shifted = tuple(w + 1 if k == axis else w for k, w in enumerate(where))
        keys = np.minimum(v_lo, v_hi).astype(np.int64) * 256 + np.maximum(v_lo, v_hi)
        for key in np.unique(keys):
            pick = keys == key
            pair = (int(key) // 256, int(key) % 256)
            coords.setdefault(pair, []).extend([tuple(w[pick] for w in where), tuple(w[pick] for w in shifted)])
    out = {}
    for pair, points in coords.items():
        mask = np.zeros(labels.shape, dtype=bool)
        for point in points:
            mask[point] = True
        out[pair] = mask
    return out


def border_interface(labels: np.ndarray, lobe_a: int, lobe_b: int) -> np.ndarray:
    """Voxels of either lobe with a face neighbour in the other (both sides of the border)."""
    key = (min(int(lobe_a), int(lobe_b)), max(int(lobe_a), int(lobe_b)))
    return border_interfaces(labels).get(key, np.zeros(labels.shape, dtype=bool))


def border_band(
    labels: np.ndarray,
    lobe_a: int,
    lobe_b: int,
    spacing_mm: tuple[float, ...],
    band_mm: float = BAND_MM,
    interface: np.ndarray | None = None,
) -> np.ndarray | None:
    """Voxels of the two lobes within ``band_mm`` (Euclidean) of their common border; None when
    they do not touch. ``interface``: ``border_interface(labels, lobe_a, lobe_b)`` if known.

    Distances are measured from the centres of the interface voxels (both sides), so on a grid of
    step h the band reaches about ``band_mm + h/2`` from the true surface.
    """
    if interface is None:
        interface = border_interface(labels, lobe_a, lobe_b)
    reach = [int(np.ceil(band_mm / s)) + 1 for s in spacing_mm]
    box = bounding_box(interface, margin=max(reach))
    if box is None:
        return None
    near = ndimage.distance_transform_edt(~interface[box], sampling=spacing_mm) <= band_mm
    pair = labels[box]
    band = np.zeros(labels.shape, dtype=bool)
    band[box] = near & ((pair == lobe_a) | (pair == lobe_b))
    return band


def band_index(vessels: VesselMask, band: np.ndarray | None, voxel_ml: float, min_band_ml: float = MIN_BAND_ML) -> BandIndex:
    """Vessel share within ``band`` (restricted to the domain) over the whole domain's share."""
    if band is None:
        return BandIndex("missing", None, 0.0, None)
    in_band = band & vessels.domain
    n_band = int(np.count_nonzero(in_band))
    band_ml = n_band * voxel_ml
    if band_ml < min_band_ml:
        return BandIndex("tiny", None, band_ml, None)
    band_share = int(np.count_nonzero(vessels.vessel & in_band)) / n_band
    lung_share = vessels.lung_vessel_share
    if not lung_share:
        return BandIndex("no_vessels", None, band_ml, band_share)
    return BandIndex("ok", band_share / lung_share, band_ml, band_share)



def border_indices(
    vessels: VesselMask, labels: np.ndarray, spacing_mm: tuple[float, ...], settings: BorderIndexSettings | None = None
) -> dict[str, BandIndex]:
    """The index of every border of ``labels``, all arrays on one grid (the lattice's, as a rule)."""
    settings = settings or BorderIndexSettings()
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    interfaces = border_interfaces(labels)
    results = {}
    for border in BORDERS:
        interface = interfaces.get((min(border.lobe_a, border.lobe_b), max(border.lobe_a, border.lobe_b)))
        band = None if interface is None else border_band(
            labels, border.lobe_a, border.lobe_b, spacing_mm, settings.band_mm, interface
        )
        results[border.name] = band_index(vessels, band, voxel_ml, settings.min_band_ml)
    return results


def border_vessel_index(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing_mm: tuple[float, ...],
    lung: np.ndarray | None = None,
    settings: BorderIndexSettings | None = None,
) -> dict:
    """The report section: the index of every border of ``labels`` (lobe mask) on the grid of ``hu``.

    ``spacing_mm`` in array axis order (z, y, x for SimpleITK arrays); ``lung`` is the scan's lung
    (default: the union of the lobes).
    """
    settings = settings or BorderIndexSettings()
    lattice = analysis_lattice(spacing_mm, settings.cell_mm)
    lattice_mm = lattice.spacing_mm
    labels_s = np.asarray(labels[lattice.sample])
    lung_s = labels_s > 0 if lung is None else np.asarray(lung[lattice.sample], dtype=bool)
    vessels = vessel_mask(np.asarray(hu[lattice.sample]), lung_s, lattice_mm, settings)
    reliable = max(spacing_mm) <= settings.max_slice_mm
    borders = {}
    results = border_indices(vessels, labels_s, lattice_mm, settings)
    for border in BORDERS:
        result = results[border.name]
        borders[border.name] = {
            "lobes": [border.lobe_a.name, border.lobe_b.name],
            "status": result.status,
            "index": None if result.index is None else round(result.index, 3),
            "band_ml": round(result.band_ml, 1),
            "band_vessel_share": None if result.band_vessel_share is None else round(result.band_vessel_share, 4),
        }
    share = vessels.lung_vessel_share
    return {
        "definition": (
            f"share of vessel voxels (analysed lung voxels above {settings.vessel_hu:g} HU) within "
            f"{settings.band_mm:g} mm of the border, divided by the share in the whole analysed lung "
            f"(lung farther than {settings.pleura_margin_mm:g} mm from its edge and "
            f"{settings.hilum_margin_mm:g} mm from dense structures holding a {settings.thick_mm:g} mm "
            f"cube: hilum, consolidation; without hazy lung, local mean at or above {settings.haze_hu:g} HU); "
            "about 0: the border follows a vessel-free fissure band, about 1: it cuts through vessels"
        ),
        "settings": asdict(settings),
        "lattice_step_mm": [round(s, 3) for s in lattice_mm],
        "reliable": reliable,
        "note": None if reliable else (
            f"voxels up to {max(spacing_mm):.1f} mm (over {settings.max_slice_mm:g} mm): small vessels "
            "vanish by partial volume and the band is a slice or two deep; the index only tells "
            "whether the border avoids the larger vessels, and raises no warning"
        ),
        "analysed_lung_ml": round(int(np.count_nonzero(vessels.domain)) * lattice.voxel_ml, 1),
        "lung_vessel_share": None if share is None else round(share, 4),
        "borders": borders,
    }


def border_flags(section: dict) -> list[dict]:
    """Quality warnings for borders whose index is above ``high_index`` (reliable grids only)."""
    limit = section["settings"]["high_index"]
    if not section["reliable"]:
        return []
    flags = []
    for border in BORDERS:
        entry = section["borders"][border.name]
        if entry["index"] is not None and entry["index"] > limit:
            flags.append({
                "code": "border_through_vessels",
                "severity": "warning",
                "message": (
                    f"the {border.description} border runs through vessels (border vessel index "
                    f"{entry['index']:.2f}, over {limit:g}): vessels do not cross fissures, so this "
                    "border is probably misplaced; check the lobes"
                ),
                "border": border.name,
                "value": entry["index"],
                "limit": limit,
            })
    return flags


def border_report(image: sitk.Image, mask: sitk.Image, lung: np.ndarray | None = None) -> dict:
    """``border_vessel_index`` of a lobe mask on its CT's grid (SimpleITK images, same geometry)."""
    hu = sitk.GetArrayViewFromImage(image)
    labels = sitk.GetArrayViewFromImage(mask)
    return border_vessel_index(hu, labels, tuple(float(s) for s in image.GetSpacing()[::-1]), lung)
