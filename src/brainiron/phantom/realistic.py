"""The realistic phantom subject (``PhantomConfig(realism="realistic")``).

Unlike the basic phantom, a subject's images do not share one grid and the contrasts are
not those brainiron's templates are built from:

* the maps (``Chimap``, ``R2starmap``, ``MEGRE``) lie on an axial-oblique anisotropic grid
  stored LPS or x-flipped (LAS), optionally a slab (``coverage``);
* the ``T1w`` lies on its own sagittal grid with another field of view, and the head moved
  rigidly between the sessions (:func:`brainiron.phantom.motion.random_rigid`);
* the anatomy is the template's carried by a random affine and a cubic B-spline
  displacement (:mod:`brainiron.phantom.motion`), not a SyN-like flow;
* T1w intensities are per tissue class (``phantom_realistic.tsv``), partial-volume blurred,
  with a bias field and Rician noise; χ comes from the same table with veins,
  white-matter heterogeneity, streaking, an eroded mask and a ``tv`` or ``l2`` flavour
  (:mod:`brainiron.phantom.chi_model`); R2* from iron through the named calibrations plus a
  white-matter field; magnitude ``S0 · exp(−R2* · TE) · bias`` with Rician noise; with
  ``with_phase`` the echoes' phase from the true χ (veins included) on the oblique grid, B0
  along world z (:mod:`brainiron.phantom.phase`), with the magnitude's complex noise.

The truth (``derivatives/phantom-truth``) is written from the generating parameters only.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import atlas, norms
from ..io import build_name, save_nifti, write_json, write_tsv
from . import chi_model
from .config import IMAGE_SETS, PhantomConfig
from .geometry import rician, smooth_field
from .motion import (
    Grid,
    axial_oblique_grid,
    invert_points,
    pull,
    random_bspline,
    random_rigid,
    rotation,
    sagittal_grid,
    world_to_template,
)
from .tissues import BACKGROUND, phantom_labels, subject_iron, tissue_lut, truth_table
from .writer import truth_path

__all__ = ["VEIN_INDEX", "write_subject"]

#: Tissue index of vein voxels (any vein fraction > 0) in the truth's tissue image.
VEIN_INDEX = 24


@functools.cache
def _template_tissue_index() -> np.ndarray:
    """Template-grid tissue index: 1..20 labels, 21..23 CSF/GM/WM, 0 outside the brain."""
    labels = np.asarray(phantom_labels().data)
    tissue = np.asarray(atlas.template_tissues().data)
    out = np.where(labels > 0, labels, np.where(tissue > 0, tissue + 20, 0)).astype(np.int16)
    out.setflags(write=False)
    return out


def _lookup(values_by_tissue: pd.Series) -> np.ndarray:
    """A per-index LUT (0..VEIN_INDEX) from values per tissue name."""
    lut = np.zeros(VEIN_INDEX + 1, np.float32)
    table = atlas.region_table()
    for row in table[table["kind"] == "atomic"].itertuples():
        lut[int(row.index)] = values_by_tissue[row.region]
    for tissue, index in BACKGROUND.items():
        lut[index] = values_by_tissue[tissue]
    lut[VEIN_INDEX] = values_by_tissue["vein"]
    return lut


@functools.lru_cache(maxsize=4)
def _t1w_template(voxel: tuple[float, float, float]) -> np.ndarray:
    """T1w intensity on the template grid: class values, blurred to the T1w voxel (FWHM)."""
    lut = 1000.0 * _lookup(chi_model.realistic_table()["t1w_relative"])
    lut[0] = 0.0
    image = lut[_template_tissue_index()]
    return ndimage.gaussian_filter(image, np.mean(voxel) / 2.3548).astype(np.float32)


def _geometry(cfg: PhantomConfig, index: int, rng: np.random.Generator) -> dict:
    """The subject's affine, B-spline field, maps grid, head motion and T1w grid."""
    a = np.eye(4)
    a[:3, :3] = rotation(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg, 3)) @ \
        np.diag(1.0 + rng.uniform(-cfg.max_scaling, cfg.max_scaling, 3))
    a[:3, 3] = rng.uniform(-cfg.max_translation_mm, cfg.max_translation_mm, 3)
    tpl = atlas.load_reference("template")
    # The brain's extent: every 4th brain voxel of the template, carried into the GRE world.
    ijk = np.argwhere(np.asarray(tpl.data)[::4, ::4, ::4] > 0) * 4.0
    corners_g = np.linalg.solve(a, tpl.affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3]
    field = random_bspline(corners_g.min(1) - 20, corners_g.max(1) + 20,
                           cfg.bspline_spacing_mm, cfg.max_displacement_mm, rng)
    midbrain = invert_points(np.array([[0.0, -15.0, -10.0]]), a, field)[0]
    flip = ("LPS", "LAS")[index % 2]
    maps = axial_oblique_grid(corners_g, cfg.voxel_size, flip, rng,
                              cfg.max_displacement_mm + 6.0, cfg.coverage, midbrain)
    centre = corners_g.mean(1)
    motion, angles, shift = random_rigid(cfg.max_motion_deg, cfg.max_motion_mm, rng, centre)
    corners_t = (np.linalg.inv(motion)[:3, :3] @ corners_g
                 + np.linalg.inv(motion)[:3, 3:4])
    t1w = sagittal_grid(corners_t, cfg.t1w_voxel_size)
    return {"A": a, "field": field, "maps": maps, "flip": flip, "motion": motion,
            "angles": angles,
            "shift": shift, "centre": centre, "t1w": t1w}


def _anatomy(cfg: PhantomConfig, geom: dict, lut: pd.DataFrame, chi: np.ndarray,
             rng: np.random.Generator) -> dict:
    """Noiseless χ, R2*, S0 and the truth images on the maps grid."""
    grid: Grid = geom["maps"]
    vs = grid.voxel_size
    s = pull(grid, world_to_template(geom["A"], geom["field"]),
             {"tissue": (np.asarray(_template_tissue_index()), 0)})
    under = s["tissue"]
    veins = chi_model.vein_curves(cfg.n_cortical_veins, rng)
    candidates = np.isin(under, list(BACKGROUND.values()))
    ijk = np.argwhere(candidates)
    world = ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    in_world = [(invert_points(v["points_mni"], geom["A"], geom["field"]), v["radius_mm"],
                 v["chi_ppm"]) for v in veins]
    frac_c, vchi_c = chi_model.rasterize_veins(world, np.ones(len(world), bool), in_world, vs)
    frac = np.zeros(grid.shape, np.float32)
    vchi = np.zeros(grid.shape, np.float32)
    frac[tuple(ijk.T)], vchi[tuple(ijk.T)] = frac_c, vchi_c
    tissue = np.where(frac > 0, VEIN_INDEX, under).astype(np.int16)

    size = VEIN_INDEX + 1
    chi_lut, r2s_lut, pd_lut = (np.zeros(size, np.float32) for _ in range(3))
    chi_lut[lut["index"]] = chi
    r2s_lut[lut["index"]] = lut["r2star_per_s"]
    pd_lut[lut["index"]] = lut["proton_density"]
    vein_row = chi_model.realistic_table().loc["vein"]
    wm = tissue == BACKGROUND["WM"]
    chi_true = chi_lut[under] + chi_model.wm_field(grid.shape, vs, wm,
                                                   cfg.wm_chi_heterogeneity_ppm, rng)
    r2s_true = r2s_lut[under] + chi_model.wm_field(grid.shape, vs, wm,
                                                   cfg.wm_r2star_heterogeneity, rng)
    chi_true = (1 - frac) * chi_true + frac * vchi
    r2s_true = (1 - frac) * r2s_true + frac * float(vein_row["r2star_per_s"])
    s0 = (1 - frac) * pd_lut[under] + frac * float(vein_row["proton_density"])
    return {"tissue": tissue, "vein_fraction": frac, "chi": chi_true, "r2s": r2s_true,
            "pd": s0, "veins": veins}


def _phase_truth(anat: Path, sub: dict, grid: Grid, anat_img: dict, rng):
    """Field (ppm), offset (rad), 2π·γ̄ of the phase echoes; the true χ and field to the
    truth (``desc-truth_Chimap``, ``desc-truth_fieldmap`` on the maps grid)."""
    from .phase import phase_model

    brain = anat_img["tissue"] > 0
    chi = np.where(brain, anat_img["chi"], 0.0).astype(np.float32)
    field, offset, omega = phase_model(chi, brain, grid.affine, rng)
    root, key = anat.parents[1], f"sub-{sub['sub']}"
    truth = {"space": "individual", "desc": "truth"}
    save_nifti(chi, truth_path(root, key, truth, "Chimap", ".nii.gz"), grid.affine,
               dtype=np.float32)
    save_nifti(field, truth_path(root, key, truth, "fieldmap", ".nii.gz"), grid.affine,
               dtype=np.float32)
    return field, offset, omega


def _write_maps(anat: Path, sub: dict, cfg: PhantomConfig, kinds, grid: Grid, anat_img: dict,
                recon: str, rng: np.random.Generator, phase_rng=None) -> np.ndarray:
    """Write the χ, R2* and MEGRE images of ``kinds`` (MEGRE with phase twins when
    ``phase_rng`` is given); return the χ map's mask."""
    b0 = cfg.field_strength
    vs = grid.voxel_size
    brain = anat_img["tissue"] > 0
    mask = chi_model.eroded_mask(brain, vs, cfg.chi_mask_erosion_mm)
    streaks = chi_model.dipole_streaks(grid.shape, grid.affine, brain, rng)
    chi = chi_model.reconstruct(anat_img["chi"], streaks, brain, recon, vs, cfg.chi_noise_ppm,
                                cfg.chi_streak_ppm, cfg.l2_fwhm_voxels, cfg.l2_contrast, rng)
    chi[~mask] = np.nan if cfg.chi_outside == "nan" else 0.0
    if "Chimap" in kinds:
        save_nifti(chi, anat / build_name(sub, "Chimap"), grid.affine)
        write_json({"Units": "ppm", "MagneticFieldStrength": b0,
                    "Description": f"brainiron realistic phantom susceptibility map ({recon}-"
                                   "like reconstruction, CSF reference)"},
                   anat / build_name(sub, "Chimap", ".json"))
    r2s = anat_img["r2s"].copy()
    r2s[brain] += cfg.r2star_noise_per_s * rng.standard_normal(int(brain.sum()), np.float32)
    r2s = np.where(brain, np.maximum(r2s, 0.0), 0.0).astype(np.float32)
    if "R2starmap" in kinds:
        save_nifti(r2s, anat / build_name(sub, "R2starmap"), grid.affine)
        write_json({"Units": "1/s", "MagneticFieldStrength": b0},
                   anat / build_name(sub, "R2starmap", ".json"))
    if "MEGRE" in kinds:
        bias = np.exp(0.15 * smooth_field(grid.shape, (4, 4, 4), rng)[0])
        s0 = 1000.0 * anat_img["pd"] * bias
        sigma = 1000.0 * float(norms.phantom_tissues().loc["WM", "proton_density"]) / cfg.snr
        if phase_rng is not None:
            field, offset, omega = _phase_truth(anat, sub, grid, anat_img, phase_rng)
        for echo, te in enumerate(cfg.echo_times, start=1):
            meta = {"EchoTime": te, "MagneticFieldStrength": b0, "FlipAngle": 15,
                    "RepetitionTime": round(cfg.echo_times[-1] + 0.008, 4),
                    "MRAcquisitionType": "3D", "EchoNumber": echo}
            # the same draws with or without phase: the magnitudes do not change
            mag, angle = rician(s0 * np.exp(-anat_img["r2s"] * te), sigma, rng,
                                 with_angle=True)
            if phase_rng is not None:
                phase = np.angle(np.exp(1j * (omega * b0 * te * field + offset + angle)))
                ents = {**sub, "echo": str(echo), "part": "phase"}
                save_nifti(phase.astype(np.float32), anat / build_name(ents, "MEGRE"),
                           grid.affine, dtype=np.float32)
                write_json({**meta, "Units": "rad"}, anat / build_name(ents, "MEGRE", ".json"))
            ents = {**sub, "echo": str(echo), "part": "mag"}
            save_nifti(np.rint(mag), anat / build_name(ents, "MEGRE"), grid.affine,
                       dtype=np.int16)
            write_json(meta, anat / build_name(ents, "MEGRE", ".json"))
    return mask


def _t1w(cfg: PhantomConfig, geom: dict, rng: np.random.Generator) -> dict:
    """T1w image and truth labels on the T1w grid (through the head motion)."""
    grid: Grid = geom["t1w"]
    s = pull(grid, world_to_template(geom["A"], geom["field"], geom["motion"]), {
        "t1": (_t1w_template(cfg.t1w_voxel_size), 1),
        "tissue": (np.asarray(_template_tissue_index()), 0)})
    bias = np.exp(0.2 * smooth_field(grid.shape, (4, 4, 4), rng)[0])
    t1 = rician(s["t1"] * bias, 0.015 * 1000.0, rng)
    return {"T1w": np.rint(t1), "tissue": s["tissue"]}


def _tissue_lookup(lut: pd.DataFrame) -> pd.DataFrame:
    names = lut[["index", "key"]].rename(columns={"key": "name"})
    return pd.concat([names, pd.DataFrame({"index": [VEIN_INDEX], "name": ["vein"]})],
                     ignore_index=True)


def _write_truth(root: Path, key: str, cfg: PhantomConfig, geom: dict, anat_img: dict,
                 t1w: dict | None, lut: pd.DataFrame, chi_mask: np.ndarray) -> None:
    """Truth images, transforms and the motion (the table is written by the caller)."""
    grid: Grid = geom["maps"]
    labels = phantom_labels()
    spaces = [("individual", anat_img["tissue"], grid.affine)]
    if t1w is not None:
        spaces.append(("T1w", t1w["tissue"], geom["t1w"].affine))
    for space, tissue, affine in spaces:
        native = {"space": space}
        dseg = np.where(tissue <= 20, tissue, 0).astype(np.int16)
        save_nifti(dseg, truth_path(root, key, {**native, "atlas": "CIT168"}, "dseg",
                                    ".nii.gz"), affine, intent="label")
        write_tsv(labels.lookup, truth_path(root, key, {**native, "atlas": "CIT168"}, "dseg"))
        save_nifti(tissue.astype(np.int16), truth_path(root, key, {**native, "desc": "tissue"},
                                                       "dseg", ".nii.gz"), affine,
                   intent="label")
        write_tsv(_tissue_lookup(lut), truth_path(root, key, {**native, "desc": "tissue"},
                                                  "dseg"))
    native = {"space": "individual"}
    save_nifti(anat_img["vein_fraction"], truth_path(root, key, {**native, "label": "vein"},
                                                     "probseg", ".nii.gz"), grid.affine)
    save_nifti(chi_mask.astype(np.uint8), truth_path(root, key, {**native, "desc": "chi"},
                                                     "mask", ".nii.gz"), grid.affine)
    xfm = {"from": "individual", "to": atlas.TEMPLATE_NAME, "mode": "points"}
    write_json({
        "matrix": geom["A"].tolist(),
        "convention": "x_MNI = A @ (x + u(x)); x: subject world coordinates of the maps' grid "
                      "(mm, RAS), u: the cubic B-spline displacement, sampled in the companion "
                      "_desc-displacement_xfm.nii.gz (mm, world axes, on the maps' grid)",
        "orientation": f"axial-oblique, stored {geom['flip']} before the tilt",
        "deformation": {"family": "cubic B-spline free-form displacement (Rueckert 1999)",
                        "spacing_mm": geom["field"].spacing,
                        "origin_mm": geom["field"].origin.tolist(),
                        "max_control_displacement_mm": float(np.sqrt(
                            (geom["field"].coefficients ** 2).sum(0)).max())},
    }, truth_path(root, key, {**xfm, "desc": "affine"}, "xfm", ".json"))
    disp = geom["field"](grid.world()).reshape(*grid.shape, 3).astype(np.float32)
    save_nifti(disp, truth_path(root, key, {**xfm, "desc": "displacement"}, "xfm", ".nii.gz"),
               grid.affine)
    write_json({
        "matrix": geom["motion"].tolist(),
        "from": "T1w: the world (scanner) coordinates of the T1w image, mm RAS",
        "to": "individual: the world (scanner) coordinates of the maps (Chimap, R2starmap, "
              "MEGRE), mm RAS",
        "convention": "x_individual = matrix @ x_T1w (homogeneous, mm): where a point of the "
                      "head at x_T1w in the T1w session lies in the GRE session",
        "rotation_deg": geom["angles"].tolist(), "translation_mm": geom["shift"].tolist(),
        "rotation_centre_mm": geom["centre"].tolist(),
        "bounds": {"rotation_deg": cfg.max_motion_deg, "translation_mm": cfg.max_motion_mm},
    }, truth_path(root, key, {"from": "T1w", "to": "individual", "mode": "points",
                              "desc": "motion"}, "xfm", ".json"))


def write_subject(root: Path, label: str, index: int, cfg: PhantomConfig,
                  demographics: dict) -> pd.DataFrame:
    """Write one realistic subject's images and truth; return its truth table.

    Parameters
    ----------
    root : Path
        The dataset being assembled.
    label : str
        Subject label (``01``).
    index : int
        Subject number (0-based): picks the image set (``cfg.image_sets``), the storage flip
        (LPS even, LAS odd) and the χ flavour (``mixed``: tv even, l2 odd).
    cfg : PhantomConfig
        ``realism="realistic"``.
    demographics : dict
        ``age`` (years) and ``group``.

    Returns
    -------
    DataFrame
        The truth table (format of the basic phantom's), χ from ``phantom_realistic.tsv``.
    """
    rng = np.random.default_rng([cfg.seed, index, 17])
    geom = _geometry(cfg, index, rng)
    iron = subject_iron(cfg, demographics["age"], demographics["group"], rng)
    lut = tissue_lut(iron, cfg)
    lut["chi_ppm"] = chi_model.subject_chi(lut, cfg.chi_table_age, rng)
    anat_img = _anatomy(cfg, geom, lut, lut["chi_ppm"].to_numpy(np.float32), rng)

    image_set = cfg.image_sets[index % len(cfg.image_sets)]
    flags = {"T1w": cfg.with_t1w, "Chimap": cfg.with_chimap, "R2starmap": cfg.with_r2starmap,
             "MEGRE": cfg.with_megre}
    kinds = [k for k in IMAGE_SETS[image_set] if flags[k]]
    recon = cfg.chi_recon if cfg.chi_recon != "mixed" else ("tv", "l2")[index % 2]
    sub = {"sub": label}
    anat = root / f"sub-{label}" / "anat"
    phase_rng = np.random.default_rng([cfg.seed, index, 11]) if cfg.with_phase else None
    chi_mask = _write_maps(anat, sub, cfg, kinds, geom["maps"], anat_img, recon, rng,
                           phase_rng)
    t1w = None
    if "T1w" in kinds:
        t1w = _t1w(cfg, geom, rng)
        save_nifti(t1w["T1w"], anat / build_name(sub, "T1w"), geom["t1w"].affine,
                   dtype=np.int16)
        write_json({"MagneticFieldStrength": cfg.field_strength},
                   anat / build_name(sub, "T1w", ".json"))
    key = f"sub-{label}"
    _write_truth(root, key, cfg, geom, anat_img, t1w, lut, chi_mask)
    write_json({"image_set": image_set, "images": kinds, "chi_recon": recon,
                "chi_outside": cfg.chi_outside,
                "veins": [{"kind": v["kind"], "radius_mm": v["radius_mm"],
                           "chi_ppm": v["chi_ppm"]} for v in anat_img["veins"]],
                "chi_source": "phantom_realistic.tsv (not the chi template's tables)"},
               truth_path(root, key, {"desc": "realistic"}, "phantom", ".json"))
    table = truth_table(lut, anat_img["tissue"], float(np.prod(geom["maps"].voxel_size)))
    table.insert(0, "participant_id", key)
    write_tsv(table, truth_path(root, key))
    return table
