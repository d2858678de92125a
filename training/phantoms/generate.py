"""One case: parameters from the seed -> anatomy on the model grid -> HU image and lobe labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from algorithm.labels import LOBES, Lobe, label_map_header

from .airways import render_central_airways
from .body import Thorax, render_body
from .config import CaseParams, PhantomOptions, stream
from .sampling import sample_case
from .torso import ThoraxV2
from .grid import (
    Grid,
    PatientFrame,
    linear_weights,
    model_grid,
    nearest_indices,
    rotation_matrix,
    upsample_linear_xy,
    upsample_nearest,
)
from .lungs import FISSURE_NAMES, _reassign_islands, fissure_map_on_boundaries, build_lobes, lung_masks, parenchyma_hu
from .noise import apply_kernel, noise_bank, noise_slice
from .pathology import LungPoints, covid, distance_to_pleura_mm, effusion, emphysema
from .vessels import render_trees

STORED_HU_MIN, STORED_HU_MAX = -1024, 3071  # the usual stored range of CT scanners (not the network's clamp window)
FLUID_HU = 12.0
AIRWAY_WALL_HU = 10.0


@dataclass
class PhantomCase:
    """A generated case: int16 HU image, uint8 lobe labels (same geometry) and its cases.csv row."""

    image: sitk.Image
    label: sitk.Image
    meta: dict
    fissures: np.ndarray | None = None  # [z, y, x] fissure id of visible sheet voxels (options.with_fissure_map)


def output_grid(params: CaseParams, translation_z_mm: float) -> Grid:
    """The output grid: field of view centred on the isocentre, top slice at the scan's top."""
    nx, ny, nz = params.scan.size_xyz
    sx, sy, sz = params.scan.spacing_mm
    top_mm = translation_z_mm + params.scan.z_top_mm
    origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, top_mm - (nz - 1) * sz)
    return Grid((nz, ny, nx), (sx, sy, sz), origin)


def patient_frame(params: CaseParams) -> PatientFrame:
    """Where the patient lies: rotated a few degrees, off the isocentre, at a random table height."""
    rng = stream(params.seed, "frame")
    tz = float(rng.uniform(-250.0, 50.0))
    ox, oy = params.body.offset_mm
    return PatientFrame(rotation_matrix(params.body.rotation_deg), np.array([ox, oy, tz]))


def _compose_lungs(params: CaseParams, th: Thorax, model: Grid, frame: PatientFrame, coords, body, seed: int):
    """Lobes, parenchyma, pathology, trees and fissures drawn into the body's HU."""
    x, y, z = coords
    p, pp = params.lungs, params.pathology
    wall_factor = pp.airway_wall_factor
    c_wall, c_lumen, keep_out = render_central_airways(th, model, frame, params.scan.z_top_mm, stream(seed, "airways"), wall_factor)
    sides = lung_masks(th, x, y, z, body.mediastinum | keep_out, body.domes, stream(seed, "lung-shape"))
    if params.version == 1:
        lobes = build_lobes(th, p, model, x, y, z, sides, stream(seed, "lobes"))
    else:
        from .lungs_v2 import build_lobes_v2

        lobes = build_lobes_v2(th, params.v2.fissures, model, x, y, z, sides, stream(seed, "lobes-v2"))
    label = lobes.label
    extents = {"emphysema_fraction": 0.0, "ggo_fraction": 0.0, "consolidation_fraction": 0.0, "effusion_ml": 0.0}
    fluid = compression = None
    if pp.kind == "effusion":
        fluid, compression = effusion(th, pp, sides, model, x, y, z)
        label = label.copy()
        label[fluid] = Lobe.BACKGROUND
        label = _reassign_islands(label, label > 0)
        fluid |= (lobes.label > 0) & (label == 0)  # lung cut off by the fluid: count it as fluid
        extents["effusion_ml"] = float(fluid.sum() * model.voxel_ml)
    lung = label > 0
    idx = np.flatnonzero(lung)
    hu_lung = parenchyma_hu(th, p, model.shape_zyx, y, lung, stream(seed, "parenchyma"))
    if params.version == 2:
        from .lungs_v2 import lobular_texture_hu

        hu_lung = hu_lung + lobular_texture_hu(model, idx, stream(seed, "parenchyma-v2"))
    pts = LungPoints(idx, x.flat[idx], y.flat[idx], z.flat[idx], model)
    prng = stream(seed, "pathology-render")
    if pp.kind in ("copd", "covid"):
        pleura = distance_to_pleura_mm(lung, model, idx)
        if pp.kind == "copd":
            hu_lung, extents["emphysema_fraction"] = emphysema(th, pp, pts, hu_lung, pleura, prng)
        else:
            hu_lung, extents["ggo_fraction"], extents["consolidation_fraction"] = covid(th, pp, pts, hu_lung, pleura, prng)
    if compression is not None:  # passive atelectasis next to the fluid
        w = compression.flat[idx]
        hu_lung = hu_lung + w * (-60.0 - hu_lung)
    hu = body.hu
    hu.flat[idx] = hu_lung
    occ = lobes.fissure_occupancy * lung
    hu += occ * (p.fissure_hu - hu)
    trees = render_trees(th, model, frame, label, x, y, z, stream(seed, "trees"), wall_factor)
    hu += trees.vessel * (p.vessel_hu - hu)
    wall = np.maximum(trees.airway_wall, c_wall)
    hu += wall * (AIRWAY_WALL_HU - hu)
    lumen = np.maximum(trees.airway_lumen, c_lumen)
    hu += lumen * (-1000.0 - hu)
    if fluid is not None:
        hu[fluid] = FLUID_HU
    return hu, label, lobes, extents, trees


def _render_output(hu_model: np.ndarray, body_model: np.ndarray, model: Grid, out: Grid, params: CaseParams) -> np.ndarray:
    """Resample to the output grid slice by slice, add noise, clip and pad: int16 [z, y, x]."""
    rng = stream(params.seed, "noise")
    scan = params.scan
    nz, ny, nx = out.shape_zyx
    bank = noise_bank(rng, ny, nx, scan.spacing_mm[:2], scan.noise_cutoff_cyc_per_mm)
    zlo, zhi, zw = linear_weights(model, out)[0]
    # Noise is weaker outside the body (no attenuation): a per-slice map from the body mask.
    iz, iy, ix = nearest_indices(model, out)
    body_xy = body_model.take(iy, axis=1).take(ix, axis=2)
    air_factor = np.float32(scan.air_noise_ratio)
    one = Grid((1,) + model.shape_zyx[1:], model.spacing_mm, model.origin_mm)
    one_out = Grid((1,) + out.shape_zyx[1:], (out.spacing_mm[0], out.spacing_mm[1], model.spacing_mm[2]), model.origin_mm)
    cache: dict[int, np.ndarray] = {}

    def xy(j: int) -> np.ndarray:
        if j not in cache:
            if len(cache) > 2:
                cache.pop(min(cache))
            cache[j] = upsample_linear_xy(hu_model[j : j + 1], one, one_out)[0]
        return cache[j]

    pad = None
    if scan.pad_value_hu is not None:
        yy = out.axis_mm(1)[:, None]
        xx = out.axis_mm(0)[None, :]
        radius = 0.5 * min(nx * out.spacing_mm[0], ny * out.spacing_mm[1])
        pad = xx**2 + yy**2 > radius**2
    image = np.empty(out.shape_zyx, dtype=np.int16)
    for k in range(nz):
        s = xy(int(zlo[k])) * (1.0 - zw[k]) + xy(int(zhi[k])) * zw[k]
        noise = noise_slice(rng, bank) * np.float32(scan.noise_sigma_hu * float(rng.uniform(0.93, 1.07)))
        s += np.where(body_xy[iz[k]], noise, noise * air_factor)
        np.clip(s, STORED_HU_MIN, STORED_HU_MAX, out=s)
        if pad is not None:
            s[pad] = scan.pad_value_hu
        image[k] = np.rint(s)
    return image


def _sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in grid.spacing_mm))
    img.SetOrigin(tuple(float(o) for o in grid.origin_mm))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def _output_counts(label_model: np.ndarray, model: Grid, out: Grid) -> np.ndarray:
    """Voxels per label in the output, counted on the model grid (each model voxel weighs as many
    output voxels as nearest resampling gives it)."""
    w = [np.bincount(i, minlength=n).astype(np.float64) for i, n in zip(nearest_indices(model, out), model.shape_zyx)]
    weight = (w[0][:, None, None] * w[1][None, :, None] * w[2][None, None, :]).reshape(-1)
    return np.bincount(label_model.reshape(-1), weights=weight, minlength=len(Lobe))


def _meta(name: str, params: CaseParams, out: Grid, counts: np.ndarray, lobes, extents: dict) -> dict:
    scan, pp = params.scan, params.pathology
    extent = {"copd": extents["emphysema_fraction"], "covid": extents["ggo_fraction"] + extents["consolidation_fraction"]}
    meta = {
        "name": name,
        "seed": params.seed,
        "size_x": out.size_xyz[0],
        "size_y": out.size_xyz[1],
        "size_z": out.size_xyz[2],
        "spacing_x_mm": round(out.spacing_mm[0], 5),
        "spacing_y_mm": round(out.spacing_mm[1], 5),
        "spacing_z_mm": round(out.spacing_mm[2], 5),
        "pathology": pp.kind,
        "pathology_extent": round(float(extent.get(pp.kind, 0.0)), 5),
        "emphysema_pattern": pp.emphysema_pattern,
        "emphysema_fraction": round(extents["emphysema_fraction"], 5),
        "ggo_fraction": round(extents["ggo_fraction"], 5),
        "consolidation_fraction": round(extents["consolidation_fraction"], 5),
        "crazy_paving": int(pp.crazy_paving),
        "effusion_ml": round(extents["effusion_ml"], 1),
        "effusion_sides": pp.effusion_sides,
    }
    for fid, fname in FISSURE_NAMES.items():
        meta[f"fissure_{fname}_complete"] = round(lobes.fissure_visible.get(fid, 0.0), 4)
    meta.update(
        {
            "noise_sigma_hu": round(scan.noise_sigma_hu, 2),
            "kernel": "sharp" if scan.sharpening > 0 else "soft",
            "noise_cutoff_cyc_per_mm": round(scan.noise_cutoff_cyc_per_mm, 3),
            "range_cut": scan.range_cut,
            "rotation_deg": ";".join(f"{a:.2f}" for a in params.body.rotation_deg),
        }
    )
    for lobe in LOBES:
        meta[f"volume_ml_{lobe.name}"] = round(float(counts[lobe]) * out.voxel_ml, 2)
    if params.version == 2:  # v1 rows keep their columns
        v2 = params.v2
        meta.update(
            {
                "version": 2,
                "accessory_fissures": ";".join(v2.fissures.accessory),
                "arms": v2.surroundings.arms,
                "blanket_layers": v2.surroundings.blanket_layers,
                "expiration": round(v2.anatomy.expiration, 3),
                "contrast": int(v2.anatomy.contrast),
                "hyperinflation_volume_factor": round(v2.hyperinflation.volume_factor, 3),
                "dome_factor": round(v2.hyperinflation.dome_factor, 3),
                "pad_value_hu": "" if scan.pad_value_hu is None else scan.pad_value_hu,
            }
        )
    return meta


def _thorax(params: CaseParams) -> Thorax:
    """The geometry of the chosen generator version."""
    if params.version == 1:
        return Thorax(params.body)
    return ThoraxV2(params.body, v2=params.v2, seed=params.seed)


def generate_case(seed: int, options: PhantomOptions | None = None, name: str | None = None) -> PhantomCase:
    """Generate case ``seed``: same seed and options, same bytes."""
    options = options or PhantomOptions()
    params = sample_case(seed, options)
    frame = patient_frame(params)
    out = output_grid(params, float(frame.translation_mm[2]))
    model = model_grid(out, options.model_voxels_max)
    coords = frame.patient_coords(model)
    th = _thorax(params)
    body = render_body(th, model, frame, *coords, stream(seed, "body-render"))
    hu, label, lobes, extents, _ = _compose_lungs(params, th, model, frame, coords, body, seed)
    hu = apply_kernel(hu, model.spacing_mm[::-1], params.scan.sharpening)
    image = _render_output(hu, body.inside_body, model, out, params)
    label_out = upsample_nearest(label, model, out)
    fissures = None
    if options.with_fissure_map:
        fissures = upsample_nearest(fissure_map_on_boundaries(lobes.fissure_id, label), model, out)
    name = name or f"phantom-{seed:06d}"
    meta = _meta(name, params, out, _output_counts(label, model, out), lobes, extents)
    image_itk, label_itk = _sitk(image, out), _sitk(np.ascontiguousarray(label_out, dtype=np.uint8), out)
    label_itk.SetMetaData("label_map", label_map_header())
    return PhantomCase(image=image_itk, label=label_itk, meta=meta, fissures=fissures)
