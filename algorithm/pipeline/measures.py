"""Step 7: volumes, per-lobe density measures, border vessel index and quality flags of the mask on
the input grid, with what the earlier steps found: the report (algorithm/report/)."""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk

from algorithm.inference import NetworkPrediction
from algorithm.pipeline.clean_up import CleanLobes
from algorithm.pipeline.fissures import FittedLobes
from algorithm.pipeline.lung import ScanLobes
from algorithm.preprocessing import PreprocessedScan
from algorithm.report.lobe_report import LobeReport, NetworkRun, WeightsInfo, build_report, low_confidence_share


@dataclass(frozen=True)
class RunInfo:
    """What ran: the weights, the device and the network's arithmetic ("float32", "bfloat16", "float16")."""

    weights: WeightsInfo
    device: str
    precision: str


def measure(
    image: sitk.Image,
    mask: sitk.Image,
    scan: PreprocessedScan,
    prediction: NetworkPrediction,
    cleaned: CleanLobes,
    lobes: ScanLobes,
    fitted: FittedLobes,
    run: RunInfo,
    warnings: tuple[str, ...],
) -> LobeReport:
    """The report of ``mask`` (input grid) on ``image``."""
    plan = prediction.plan
    network = NetworkRun(
        spacing_mm_zyx=tuple(round(float(s), 4) for s in scan.spacing_mm_zyx),
        stage2_tiles=len(plan.starts_zyx) if plan is not None else 0,
        stage2_tile_out_zyx=tuple(plan.size_out_zyx) if plan is not None else None,
        precision=run.precision,
    )
    return build_report(
        image,
        mask,
        network,
        run.weights,
        run.device,
        low_confidence_share(cleaned.labels, prediction.confidence),
        outside_air_ml=cleaned.outside_air_removed_ml,
        warnings=list(warnings),
        fissures=fitted.section,
        extent=lobes.extent,
        axis_alignment=scan.axis_aligned.section() if scan.axis_aligned is not None else None,
        sides=lobes.sides,
        dense=lobes.dense,
    )
