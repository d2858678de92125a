"""What the lobes hold of dense lung, and the fluid kept out of them (issue 31; docs/outputs.md).

Per lobe: its dense volume (the density measures' consolidation: voxels above -250 HU in
structures thicker than the vessels, the same voxels the severity score counts), and of it what
the dense-lung step added between the aerated lung and the chest wall (``inferred_ml``: there
the lobe's extent is the chest wall's and its borders the fissures' continuation, not seen).
Per side: the pleural effusion the step measured and kept out.
"""

from __future__ import annotations

from algorithm.dense_lung import DenseLung
from algorithm.labels import LOBES, Lobe

DENSE_LOBE_PERCENT = 30.0  # a lobe this dense has borders inferred, not seen: flagged
EFFUSION_FLAG_ML = 50.0  # a pleural effusion this large is reported as a flag too


def _lobe_entry(measures: dict, lobe: Lobe, dense: DenseLung) -> dict:
    region = measures.get(lobe.name) or {}
    volume_ml = region.get("volume_ml") or 0.0
    percent = region.get("consolidation_percent")
    dense_ml = None if percent is None else round(volume_ml * percent / 100.0, 1)
    inferred_ml = dense.recovered_ml.get(lobe.name, 0.0)
    return {
        "dense_ml": dense_ml,
        "dense_percent": percent,
        "inferred_ml": inferred_ml,
        "inferred_percent": round(100.0 * inferred_ml / volume_ml, 2) if volume_ml else None,
    }


def dense_section(measures: dict, dense: DenseLung) -> dict:
    """The report's "dense_lung" section from the density measures and the dense-lung step."""
    return {
        "lobes": {Lobe(lobe).name: _lobe_entry(measures, Lobe(lobe), dense) for lobe in LOBES},
        "effusion_ml": dict(dense.effusion_ml),
        "dense_lobe_percent_flagged_above": DENSE_LOBE_PERCENT,
        "definition": (
            "dense: the lobe's consolidation (above -250 HU, thicker than vessels); inferred: dense lung "
            "between the aerated lung and the chest wall that the dense-lung step added, its lobe from the "
            "fissures' continuation; effusion: fluid between a convex lung and the ribs in the slices that hold the lung (a lower bound: fluid pooled below the lung's base is missed), not counted as lung"
        ),
    }


def dense_flags(measures: dict, dense: DenseLung | None) -> list[dict]:
    """A warning per lobe whose dense share exceeds ``DENSE_LOBE_PERCENT``, and per side with an
    effusion of ``EFFUSION_FLAG_ML`` or more."""
    if dense is None:
        return []
    flags = []
    for lobe in LOBES:
        percent = (measures.get(Lobe(lobe).name) or {}).get("consolidation_percent")
        if percent is not None and percent > DENSE_LOBE_PERCENT:
            flags.append({
                "code": "dense_lobe", "severity": "warning", "lobe": Lobe(lobe).name, "value": percent,
                "limit": DENSE_LOBE_PERCENT,
                "message": f"{Lobe(lobe).name}: {percent:.0f} % of the lobe is dense (consolidation, atelectasis "
                           "or a mass); its borders there follow the fissures' continuation and the chest wall, "
                           "not visible fissures: check them",
            })
    for side, volume_ml in dense.effusion_ml.items():
        if volume_ml >= EFFUSION_FLAG_ML:
            flags.append({
                "code": "pleural_effusion", "severity": "warning", "side": side, "value": volume_ml,
                "limit": EFFUSION_FLAG_ML,
                "message": f"about {volume_ml:.0f} mL of fluid between the {side} lung and the chest wall "
                           "(pleural effusion?): kept out of the lobes",
            })
    return flags
