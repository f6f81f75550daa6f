"""Helpers of the QSM tests: a small head-like χ phantom, the peer forward model, metrics.

The phantom is ours (ellipsoids with deep-grey nuclei, typical 3 T values of the field
notes); the **signal** is made by the peer ``qsm-forward`` (GPL-3, test-only dependency, never
imported by brainiron): dipole field of the whole head (with a skull and air sinuses as
background sources), 2nd-order shim, phase offset, R2* decay, complex noise, wraps. Metrics
come from the peer ``qsm-ci`` (MIT): NRMSE, HFEN, XSIM.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

SHAPE = (64, 72, 60)
TES = 0.004 + 0.006 * np.arange(6)  # 4, 10, ..., 34 ms
B0_T = 3.0

#: label: (name, χ ppm, R2* 1/s, M0, centre offset mm (x, y, z) from the brain centre,
#: semi-axes mm); mirrored in x when the name has no "_" side.
NUCLEI = {
    1: ("Ca", 0.07, 24, 0.85, (7, 10, 6), (3.0, 5.0, 4.0)),
    2: ("Pu", 0.08, 27, 0.85, (14, 3, 0), (3.0, 6.0, 5.0)),
    3: ("GP", 0.18, 38, 0.80, (10, 0, -1), (2.5, 4.0, 3.0)),
    4: ("Th", 0.01, 21, 0.85, (6, -8, 2), (4.0, 5.0, 4.0)),
    5: ("SN", 0.15, 31, 0.80, (6, -6, -10), (2.5, 4.0, 2.0)),
    6: ("RN", 0.13, 31, 0.80, (3, -10, -8), (2.5, 2.5, 2.5)),
    7: ("STN", 0.12, 31, 0.80, (8, -3, -6), (2.0, 3.0, 2.0)),
    8: ("DN", 0.10, 28, 0.80, (10, -14, -6), (2.5, 3.5, 2.5)),
}
WM, GM, CSF = 20, 21, 22


def _ellipsoid(grid, centre, axes):
    x, y, z = grid
    return (((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
            + ((z - centre[2]) / axes[2]) ** 2) <= 1.0


def head_phantom():
    """χ (ppm, relative to water; bone −1.5, air 9.4), brain mask, labels, M0, R2* on SHAPE."""
    grid = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")
    c = np.array(SHAPE, float) / 2 - 0.5
    head = _ellipsoid(grid, c, (30, 34, 28))
    brain = _ellipsoid(grid, c, (25, 30, 23))
    inner = _ellipsoid(grid, c, (22, 27, 20))
    # Background sources outside the brain: a skull shell (bone, -1.5 ppm relative to water)
    # and two air sinuses (+9.4 ppm). The field of view around the head is water-like (0): an
    # air/tissue boundary enclosing the brain at 1 mm makes the peer's sampled k-space kernel
    # ring by ~3 % of 9.4 ppm inside the brain (a discretisation artefact, not physics).
    scalp = _ellipsoid(grid, c, (27, 32, 25))
    chi = np.where(head & ~scalp, -1.5, 0.0)
    for off in ((0, 26, -16), (0, 22, -20)):  # frontal air sinuses, outside the brain
        chi[_ellipsoid(grid, c + np.array(off), (6, 3, 3)) & ~brain] = 9.4
    labels = np.zeros(SHAPE, np.int16)
    labels[brain] = GM
    labels[inner] = WM
    for side in (-1, 1):
        labels[_ellipsoid(grid, c + np.array((5 * side, 4, 4)), (2.5, 7, 3))] = CSF  # ventricles
    for lab, (_, _, _, _, off, axes) in NUCLEI.items():
        for side in (-1, 1):
            centre = c + np.array((off[0] * side, off[1], off[2]))
            labels[_ellipsoid(grid, centre, axes) & brain] = lab
    values = {WM: (-0.02, 20, 0.75), GM: (0.02, 15, 0.9), CSF: (0.0, 4, 1.0)}
    values |= {k: v[1:4] for k, v in NUCLEI.items()}
    m0, r2s = np.zeros(SHAPE), np.zeros(SHAPE)
    for lab, (x, r, m) in values.items():
        sel = labels == lab
        chi[sel], r2s[sel], m0[sel] = x, r, m
    return chi.astype(np.float32), brain, labels, m0.astype(np.float32), r2s.astype(np.float32)


def run_qsm_forward(out_dir: Path, snr: float, b0_dir=(0.0, 0.0, 1.0), seed: int = 7):
    """Write the phantom as NIfTI, run qsm-forward on the paths; return its BIDS outputs.

    Returns
    -------
    dict with ``magnitude``, ``phase`` (X, Y, Z, E), ``echo_times``, ``field_strength``,
    ``affine`` (from the phase NIfTI), ``chi`` (truth), ``mask``, ``labels`` and ``sidecar``.
    """
    import qsm_forward

    out_dir = Path(out_dir)
    src = out_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    chi, brain, labels, m0, r2s = head_phantom()
    for name, arr in {"chi": chi, "mask": brain.astype(np.float32), "seg": labels,
                      "M0": m0, "R1": np.where(brain, 1.0, 0.0).astype(np.float32),
                      "R2star": r2s}.items():
        nib.save(nib.Nifti1Image(arr, np.eye(4)), src / f"{name}.nii.gz")
    tissue = qsm_forward.TissueParams(root_dir=str(src), chi="chi.nii.gz", M0="M0.nii.gz",
                                      R1="R1.nii.gz", R2star="R2star.nii.gz",
                                      mask="mask.nii.gz", seg="seg.nii.gz")
    recon = qsm_forward.ReconParams(TEs=TES, TR=0.05, flip_angle=15, B0=B0_T,
                                    B0_dir=np.asarray(b0_dir, float), peak_snr=snr,
                                    random_seed=seed, voxel_size=np.array([1.0, 1.0, 1.0]),
                                    generate_phase_offset=True, generate_shim_field=True)
    bids = out_dir / "bids"
    qsm_forward.generate_bids(tissue, recon, str(bids))
    anat = bids / "sub-1" / "anat"
    mag = np.stack([nib.load(anat / f"sub-1_echo-{i + 1}_part-mag_MEGRE.nii").get_fdata()
                    for i in range(TES.size)], -1)
    phase_img = [nib.load(anat / f"sub-1_echo-{i + 1}_part-phase_MEGRE.nii")
                 for i in range(TES.size)]
    sidecars = [json.loads((anat / f"sub-1_echo-{i + 1}_part-phase_MEGRE.json").read_text())
                for i in range(TES.size)]
    deriv = bids / "derivatives" / "qsm-forward" / "sub-1" / "anat"
    return {
        "magnitude": mag.astype(np.float32),
        "phase": np.stack([p.get_fdata() for p in phase_img], -1).astype(np.float32),
        "echo_times": np.array([s["EchoTime"] for s in sidecars]),
        "field_strength": float(sidecars[0]["MagneticFieldStrength"]),
        "affine": phase_img[0].affine,
        "chi": nib.load(deriv / "sub-1_Chimap.nii").get_fdata().astype(np.float32),
        "mask": nib.load(deriv / "sub-1_mask.nii").get_fdata() > 0.5,
        "labels": np.rint(nib.load(deriv / "sub-1_dseg.nii").get_fdata()).astype(int),
        "sidecar": sidecars[0],
    }


def metrics(chi, truth, mask, labels):
    """qsm-ci NRMSE / HFEN / XSIM and regional mean errors (ppb), both referenced to the
    mean over ``mask`` (the reconstruction's mask)."""
    from qsm_ci import qsm_eval

    m = mask & np.isfinite(chi)
    rec = np.where(m, chi - chi[m].mean(), 0.0)
    tru = np.where(m, truth - truth[m].mean(), 0.0)
    nrmse, nrmse_dt = qsm_eval.nrmse_challenge(rec, tru, m)
    core = ndimage.binary_erosion(m, iterations=4)  # without the 4 mm next to the mask's edge
    out = {"nrmse": nrmse, "nrmse_detrend": nrmse_dt, "hfen": qsm_eval.hfen(rec, tru, m),
           "xsim": qsm_eval.xsim(rec, tru, m),
           "nrmse_core": qsm_eval.nrmse_challenge(rec, tru, core)[0],
           "regions_ppb": {}, "region_voxels": {}}
    for lab, (name, *_rest) in NUCLEI.items():
        sel = m & (labels == lab)
        if sel.sum() == 0:
            continue
        out["regions_ppb"][name] = 1000 * float(rec[sel].mean() - tru[sel].mean())
        out["region_voxels"][name] = int(sel.sum())
    return out


#: T1 of the tissue classes for the peer's signal equation (1/s, 3 T-like; nuclei 0.85).
PEER_R1 = {"CSF": 0.25, "GM": 0.7, "WM": 1.0}


def _moved_t1w(src: Path, dst: Path, voxel_mm: float, rotation_deg: float, shift_mm):
    """The T1w as if scanned separately: head moved rigidly (rotation about x, shift), stored
    on its own isotropic RAS grid; trilinear resampling of the source T1w."""
    img = nib.load(src)
    a = np.radians(rotation_deg)
    motion = np.eye(4)
    motion[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    motion[:3, 3] = shift_mm
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in img.shape[:3]], indexing="ij"))
    world = nib.affines.apply_affine(img.affine, corners.reshape(3, -1).T)
    lo, hi = world.min(0) - 10, world.max(0) + 10
    shape = np.ceil((hi - lo) / voxel_mm).astype(int)
    new = np.diag([voxel_mm] * 3 + [1.0])
    new[:3, 3] = lo
    matrix = np.linalg.inv(img.affine) @ np.linalg.inv(motion) @ new
    data = ndimage.affine_transform(np.asarray(img.dataobj, np.float32), matrix[:3, :3],
                                    matrix[:3, 3], output_shape=tuple(shape), order=1)
    nib.save(nib.Nifti1Image(data.astype(np.float32), new), dst)


def peer_head(root: Path, voxel_size=(2.5, 2.5, 3.0), snr: float = 100.0, seed: int = 3,
              echo_times=(0.005, 0.012, 0.019, 0.026, 0.033)) -> dict:
    """brainiron's phantom head (1 subject, LPS) with its MEGRE signal made by the peer.

    The phantom gives the true χ (``desc-truth_Chimap``), the tissue labels and the truth
    table (proton density, R2* per region); ``qsm-forward`` turns them into magnitude + phase
    echoes (its dipole field, 2nd-order shim, phase offset, R2* decay, complex noise; B0
    along the voxel z axis, which is world z for LPS), stored uncompressed (``.nii``) with its
    own sidecars.

    Returns
    -------
    dict with ``phantom`` (the phantom's BIDS folder, truth in its derivatives), ``peer``
    (the peer's BIDS folder), ``truth_chi`` (ppm), ``labels`` (tissue dseg: nuclei, CSF, GM,
    WM) and ``label_names`` (index → name).
    """
    import pandas as pd
    import qsm_forward

    from brainiron.phantom import generate_phantom, truth_path

    root = Path(root)
    phantom = root / "phantom"
    generate_phantom(phantom, n_subjects=1, seed=seed, voxel_size=tuple(voxel_size),
                     orientation="LPS", with_phase=True, with_chimap=False,
                     with_r2starmap=False)
    truth_dir = phantom / "derivatives" / "phantom-truth" / "sub-01" / "anat"
    chi_img = nib.load(truth_dir / "sub-01_space-individual_desc-truth_Chimap.nii.gz")
    tissue = np.rint(np.asarray(nib.load(
        truth_dir / "sub-01_space-individual_desc-tissue_dseg.nii.gz").dataobj)).astype(int)
    names = pd.read_csv(truth_dir / "sub-01_space-individual_desc-tissue_dseg.tsv", sep="\t")
    truth = pd.read_csv(truth_path(phantom, "sub-01"), sep="\t")
    by_name = {(r.region if r.hemisphere not in ("L", "R") else f"{r.region}_{r.hemisphere}"): r
               for r in truth.itertuples()}
    m0, r2s, r1 = (np.zeros(tissue.shape, np.float32) for _ in range(3))
    for index, name in zip(names["index"], names["name"], strict=True):
        sel = tissue == index
        m0[sel] = by_name[name].proton_density
        r2s[sel] = by_name[name].r2star_per_s
        r1[sel] = PEER_R1.get(name, 0.85)
    brain = tissue > 0
    src = root / "peer-input"
    src.mkdir(parents=True, exist_ok=True)
    chi = np.where(brain, np.asarray(chi_img.dataobj), 0.0).astype(np.float32)
    for name, arr in {"chi": chi, "mask": brain.astype(np.float32),
                      "seg": tissue.astype(np.float32), "M0": m0, "R1": r1,
                      "R2star": r2s}.items():
        nib.save(nib.Nifti1Image(arr, chi_img.affine), src / f"{name}.nii.gz")
    tissue_params = qsm_forward.TissueParams(
        root_dir=str(src), chi="chi.nii.gz", M0="M0.nii.gz", R1="R1.nii.gz",
        R2star="R2star.nii.gz", mask="mask.nii.gz", seg="seg.nii.gz")
    recon = qsm_forward.ReconParams(
        TEs=np.asarray(echo_times), TR=0.05, flip_angle=15, B0=3.0,
        B0_dir=np.array([0.0, 0.0, 1.0]), peak_snr=snr, random_seed=seed + 100,
        voxel_size=np.asarray(voxel_size, float), generate_phase_offset=True,
        generate_shim_field=True)
    peer = root / "peer"
    qsm_forward.generate_bids(tissue_params, recon, str(peer))
    return {"phantom": phantom, "peer": peer, "truth_chi": chi, "labels": tissue,
            "label_names": dict(zip(names["index"], names["name"], strict=True))}


def peer_echoes(peer: Path):
    """The peer's magnitude and phase (X, Y, Z, E), echo times (s), B0 (T) and affine."""
    anat = Path(peer) / "sub-1" / "anat"
    mags = sorted(anat.glob("sub-1_echo-*_part-mag_MEGRE.nii"),
                  key=lambda p: int(p.name.split("_")[1].split("-")[1]))
    sidecars = [json.loads(p.with_suffix(".json").read_text()) for p in mags]
    mag = np.stack([np.asarray(nib.load(p).dataobj, np.float32) for p in mags], -1)
    phase = np.stack([np.asarray(nib.load(str(p).replace("part-mag", "part-phase")).dataobj,
                                 np.float32) for p in mags], -1)
    return (mag, phase, np.array([s["EchoTime"] for s in sidecars]),
            float(sidecars[0]["MagneticFieldStrength"]), nib.load(mags[0]).affine)


def peer_dataset(root: Path, **kw) -> Path:
    """A phase-only BIDS dataset from :func:`peer_head`: the phantom's T1w moved (4° about x,
    3 mm) onto its own 1.5 mm RAS grid and the peer's echoes; no χ map, no R2* map.

    Returns
    -------
    Path of the BIDS dataset (``root / "bids"``); the phantom (and its truth) is at
    ``root / "phantom"``.
    """
    import shutil

    head = peer_head(root, **kw)
    bids = Path(root) / "bids"
    shutil.copytree(head["phantom"], bids,
                    ignore=shutil.ignore_patterns("*MEGRE*", "*T1w.nii.gz"))
    anat = bids / "sub-01" / "anat"
    _moved_t1w(head["phantom"] / "sub-01" / "anat" / "sub-01_T1w.nii.gz",
               anat / "sub-01_T1w.nii.gz", 1.5, 4.0, (3.0, -2.0, 1.5))
    for path in sorted((head["peer"] / "sub-1" / "anat").iterdir()):
        shutil.copy(path, anat / path.name.replace("sub-1_", "sub-01_"))
    return bids


def chi_rows_against_truth(anat: Path, phantom: Path):
    """sub-01's χ atlas rows merged with the phantom's truth table, and their errors (ppb)
    against the truth referenced like the reconstruction (the truth's mean over brainiron's
    QSM mask subtracted).

    Returns
    -------
    (DataFrame, Series): the merged rows (``mean`` measured, ``chi_ppm`` truth) and the error.
    """
    import pandas as pd

    from brainiron.phantom import truth_path

    mask = np.asarray(nib.load(Path(anat) / "sub-01_space-individual_desc-qsm_mask.nii.gz")
                      .dataobj) > 0
    truth_chi = np.asarray(nib.load(truth_path(
        phantom, "sub-01", {"space": "individual", "desc": "truth"}, "Chimap", ".nii.gz"))
        .dataobj)
    reference = float(truth_chi[mask].mean())
    truth = pd.read_csv(truth_path(phantom, "sub-01"), sep="\t")
    rows = pd.read_csv(Path(anat) / "sub-01_desc-regions_stats.tsv", sep="\t")
    rows = rows[(rows["map"] == "Chimap") & (rows["segmentation"] == "atlas")]
    rows = rows.merge(truth, on=["region", "hemisphere"], suffixes=("", "_truth"))
    return rows, 1000 * (rows["mean"] - (rows["chi_ppm"] - reference))
