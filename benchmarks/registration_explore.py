#!/usr/bin/env python
"""Explore ANTsPy registration settings for template → native label warping (phantom benchmark).

Each phantom subject's T1w is the *fixed* image and the MNI152NLin2009cAsym T1 template the
*moving* one; brainiron's template labels are pulled into the native grid with the forward
transforms (``genericLabel``) and compared with the phantom's ground-truth dseg.

Measured per (resolution, subject, candidate):

* Dice per nucleus (SN = SNc_PBP_VTA + SNr, RN, STN, GP = GPe + GPi, Pu, Ca, Thal), left and
  right averaged;
* target registration error (TRE, mm): the template → native mapping is compared with the
  phantom's true mapping (``x_MNI = A·(x + u(x))``) at every voxel of the nuclei, by warping
  images of the template's world coordinates with the estimated transforms (linear
  interpolation of a linear function is exact). Unlike Dice, TRE is not quantised by voxel size;
* wall time of the registration and of the label warp, peak RSS of the worker process.

Every run happens in its own subprocess (one at a time: the machine has 2 cores), so the peak
RSS is that run's. Results are appended to ``<workdir>/results.jsonl``; a rerun skips the runs
already there (``--force`` redoes them), so the script can be resumed.

Usage::

    python benchmarks/registration_explore.py                 # default plan, ~20 min on 2 cores
    python benchmarks/registration_explore.py --slow          # + antsRegistrationSyN[s] and
                                                              #   SyN-CC at full 1 mm (~45 min)
    python benchmarks/registration_explore.py --res 2.5 --candidates syn,cc_local
    python benchmarks/registration_explore.py --list          # candidates and what they do

The phantoms are generated in ``<workdir>`` (default ``$TMPDIR/brainiron-regexplore``).
Results are summarised in docs/registration-explore.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import numpy as np  # noqa: E402

# Nucleus groups reported (left indices; right = left + 10).
GROUPS = {"SN": [1, 2], "RN": [3], "STN": [4], "GP": [5, 6], "Pu": [7], "Ca": [8],
          "Thal": [9]}
SMALL = ("SN", "RN", "STN")

# Phantom datasets: resolution → (seed, n_subjects, orientation). orientation="mixed" cycles
# RAS, LPS, oblique over subjects 1, 2, 3.
DATASETS = {
    "2.5": dict(seed=1, n_subjects=3, voxel=2.5, orientation="mixed"),
    "1.0": dict(seed=2, n_subjects=1, voxel=1.0, orientation="oblique"),
}

# Determinism checks: (resolution, candidate, seeds). seed None: the plan's first run (rep 0) is
# repeated once; a seed: two runs (rep 1, 2) with ants.config._random_seed = seed.
DETERMINISM = [
    ("2.5", "rs_cc_local", (None, 42)),
    ("2.5", "rs_cc_local_gc", (None, 42)),
    ("1.0", "rs_cc_local_gc", (42,)),
]

# Template-space box (mm margin around all nuclei) of the local refinement stage.
LOCAL_MARGIN_MM = 10.0


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------
# Each candidate: fn(ctx, **params) -> (transformlist, info). transformlist maps template
# (moving) → native (fixed) in ants.apply_transforms' convention.

CANDIDATES: dict[str, dict] = {}


def candidate(name, desc, res=("2.5", "1.0"), tier="core"):
    """Register a candidate; tier: "core" (default plan), "extra" (--extra), "slow" (--slow)."""
    def deco(fn):
        CANDIDATES[name] = dict(fn=fn, desc=desc, res=res, tier=tier)
        return fn
    return deco


class Ctx:
    """What a worker needs: images and a temporary folder for transform files."""

    def __init__(self, root: Path, sub: str, tmp: Path):
        import ants

        from brainiron import atlas

        self.ants = ants
        self.tmp = tmp
        self.root = root
        self.sub = sub
        self.fixed = ants.image_read(str(root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"))
        self.template = ants.image_read(str(atlas.load_reference("template").path))
        lab = np.asarray(atlas.template_labels().data, dtype=np.float32)
        self.labels_np = np.asarray(atlas.template_labels().data)
        self.labels = ants.from_numpy(lab, origin=self.template.origin,
                                      spacing=self.template.spacing,
                                      direction=self.template.direction)
        self._n = 0

    def prefix(self) -> str:
        self._n += 1
        return str(self.tmp / f"s{self._n}_")

    def like_template(self, arr):
        t = self.template
        return self.ants.from_numpy(np.asarray(arr, dtype=np.float32), origin=t.origin,
                                    spacing=t.spacing, direction=t.direction)


def _resample(ants, img, spacing_mm: float):
    """Anti-aliased linear resampling to an isotropic spacing (Gaussian FWHM² = new² − old²)."""
    old = float(np.mean(img.spacing))
    if spacing_mm > old:
        sigma = np.sqrt(spacing_mm ** 2 - old ** 2) / 2.3548
        img = ants.smooth_image(img, sigma, sigma_in_physical_coordinates=True)
    return ants.resample_image(img, (spacing_mm,) * 3, use_voxels=False, interp_type=0)


def _smooth_template_to(ants, tpl, voxel_mm: float):
    """Blur the 1 mm template to the data's resolution (FWHM = voxel size)."""
    sigma = np.sqrt(max(voxel_mm ** 2 - 1.0, 0.0)) / 2.3548
    return ants.smooth_image(tpl, sigma, sigma_in_physical_coordinates=True) if sigma > 0 else tpl


def _reg(ctx, fixed, moving, **kw):
    kw.setdefault("outprefix", ctx.prefix())
    return ctx.ants.registration(fixed, moving, **kw)


def _local_refine(ctx, stage1: list[str], *, fixed=None, moving=None, iterations=(20, 10),
                  radius=2, grad_step=0.2, flow_sigma=3.0, use_mask=False, margin=LOCAL_MARGIN_MM,
                  voxel_mm=None):
    """Second SyN restricted to a box around all nuclei, initialised with ``stage1``.

    The box (template-space bounding box of labels 1-19 + ``margin`` mm) is pulled into native
    space with the stage-1 transforms; the fixed image is cropped to its bounding box (or, with
    ``use_mask``, kept whole with the box as metric mask). The template is cropped to the box
    plus 2 × margin. ``voxel_mm`` resamples the cropped fixed image (virtual domain) first.
    Returns the full transform list (local warp, then stage 1) and info.
    """
    ants = ctx.ants
    fixed = ctx.fixed if fixed is None else fixed
    moving = ctx.template if moving is None else moving
    idx = np.argwhere(ctx.labels_np > 0)
    lo, hi = idx.min(0), idx.max(0) + 1
    m = int(round(margin))  # template is 1 mm
    box = np.zeros(ctx.labels_np.shape, np.float32)
    box[lo[0] - m:hi[0] + m, lo[1] - m:hi[1] + m, lo[2] - m:hi[2] + m] = 1
    box_native = ants.apply_transforms(fixed, ctx.like_template(box), stage1,
                                       interpolator="nearestNeighbor").numpy() > 0
    nidx = np.argwhere(box_native)
    nlo, nhi = nidx.min(0), nidx.max(0) + 1
    shape = np.array(moving.shape)
    mlo = np.maximum(lo - 3 * m, 0)
    mhi = np.minimum(hi + 3 * m, shape)
    moving_c = ants.crop_indices(moving, mlo.tolist(), mhi.tolist())
    # ``stage1`` must be one composite .h5 (write_composite_transform=True): ANTsPy turns a list
    # into a single "-r a b", which antsRegistration rejects.
    if len(stage1) != 1 or not stage1[0].endswith(".h5"):
        raise ValueError("stage 1 must be a single composite transform")
    if use_mask:
        fixed_r = fixed
        mask = ants.from_numpy(box_native.astype(np.float32), origin=fixed.origin,
                               spacing=fixed.spacing, direction=fixed.direction)
        kw = dict(mask=mask)
        n_vox = int(box_native.sum())
    else:
        fixed_r = ants.crop_indices(fixed, nlo.tolist(), nhi.tolist())
        if voxel_mm is not None:
            fixed_r = ants.resample_image(fixed_r, (voxel_mm,) * 3, use_voxels=False,
                                          interp_type=4)
        kw = {}
        n_vox = int(np.prod(fixed_r.shape))
    reg = _reg(ctx, fixed_r, moving_c, type_of_transform="SyNOnly", initial_transform=list(stage1),
               syn_metric="CC", syn_sampling=radius, reg_iterations=tuple(iterations),
               grad_step=grad_step, flow_sigma=flow_sigma, **kw)
    info = {"local_fixed_shape": list(fixed_r.shape), "local_voxels": n_vox,
            "stage2_outputs": [Path(f).name for f in reg["fwdtransforms"]]}
    # With an initial transform, antsRegistration (-z 1) writes it out again with the new
    # stage: fwdtransforms = [2Warp (local), 1Warp (stage 1), 0GenericAffine (stage 1)].
    return reg["fwdtransforms"], info


@candidate("syn", 'ants.registration(fixed, template, "SyN") — ANTsPy defaults')
def c_syn(ctx):
    reg = _reg(ctx, ctx.fixed, ctx.template, type_of_transform="SyN")
    return reg["fwdtransforms"], {}


@candidate("quick_s", 'type_of_transform="antsRegistrationSyNQuick[s]"')
def c_quick(ctx):
    reg = _reg(ctx, ctx.fixed, ctx.template, type_of_transform="antsRegistrationSyNQuick[s]")
    return reg["fwdtransforms"], {}


@candidate("quickrepro_s", 'type_of_transform="antsRegistrationSyNQuickRepro[s]" (GC + CC)',
           res=("2.5",), tier="extra")
def c_quickrepro(ctx):
    reg = _reg(ctx, ctx.fixed, ctx.template,
               type_of_transform="antsRegistrationSyNQuickRepro[s]")
    return reg["fwdtransforms"], {}


@candidate("syn_s", 'type_of_transform="antsRegistrationSyN[s]" (CC r2, 100x70x50x20)',
           res=("2.5",))
def c_syn_s(ctx):
    reg = _reg(ctx, ctx.fixed, ctx.template, type_of_transform="antsRegistrationSyN[s]")
    return reg["fwdtransforms"], {}


@candidate("syn_s_full1mm", 'antsRegistrationSyN[s] at the native 1 mm (slow: ~30 min)',
           res=("1.0",), tier="slow")
def c_syn_s_full(ctx):
    return c_syn_s(ctx)


@candidate("syn_cc", 'SyN, syn_metric="CC", syn_sampling=2, reg_iterations=(40,20,0)',
           res=("2.5",))
def c_syn_cc(ctx, fixed=None, moving=None, iterations=(40, 20, 0), composite=False):
    reg = _reg(ctx, ctx.fixed if fixed is None else fixed,
               ctx.template if moving is None else moving, type_of_transform="SyN",
               syn_metric="CC", syn_sampling=2, reg_iterations=iterations,
               write_composite_transform=composite)
    tx = reg["fwdtransforms"]
    return ([tx] if isinstance(tx, str) else tx), {}


@candidate("syn_cc_fine", "as syn_cc with reg_iterations=(40,20,10): 10 its at full resolution",
           res=("2.5",), tier="extra")
def c_syn_cc_fine(ctx):
    return c_syn_cc(ctx, iterations=(40, 20, 10))


@candidate("syn_cc_full1mm", "syn_cc at the native 1 mm (slow: ~6 min)", res=("1.0",),
           tier="slow")
def c_syn_cc_full(ctx):
    return c_syn_cc(ctx)


@candidate("syn_cc_tpl2mm", "syn_cc with the template resampled to 2 mm (moving)",
           res=("2.5",), tier="extra")
def c_syn_cc_tpl2(ctx):
    return c_syn_cc(ctx, moving=_resample(ctx.ants, ctx.template, 2.0))


@candidate("syn_cc@2mm", "syn_cc on the T1w resampled to 2 mm (fixed); transforms applied to "
           "the native 1 mm grid", res=("1.0",))
def c_syn_cc_2mm(ctx):
    return c_syn_cc(ctx, fixed=_resample(ctx.ants, ctx.fixed, 2.0))


@candidate("syn_s@2mm", "antsRegistrationSyN[s] on the T1w resampled to 2 mm; applied at 1 mm",
           res=("1.0",), tier="extra")
def c_syn_s_2mm(ctx):
    reg = _reg(ctx, _resample(ctx.ants, ctx.fixed, 2.0), ctx.template,
               type_of_transform="antsRegistrationSyN[s]")
    return reg["fwdtransforms"], {}


@candidate("cc_local", "syn_cc, then local SyNOnly CC r2 (20,10) in the native box around all "
           "nuclei (+10 mm), initialised with syn_cc (crop of the fixed image)", res=("2.5",))
def c_cc_local(ctx, global_fixed=None, **local):
    stage1, _ = c_syn_cc(ctx, fixed=global_fixed, composite=True)
    t1 = time.perf_counter()
    tx, info = _local_refine(ctx, stage1, **local)
    info["local_seconds"] = round(time.perf_counter() - t1, 2)
    return tx, info


@candidate("cc_local_fine", "as cc_local with local reg_iterations=(40,20,10)", res=("2.5",),
           tier="extra")
def c_cc_local_fine(ctx):
    return c_cc_local(ctx, iterations=(40, 20, 10))


@candidate("cc_local_mask", "as cc_local but the box is a metric mask (mask=) on the whole "
           "image instead of a crop", res=("2.5",), tier="extra")
def c_cc_local_mask(ctx):
    return c_cc_local(ctx, use_mask=True)


@candidate("cc_local@1.25", "as cc_local, local stage on the box upsampled to 1.25 mm",
           res=("2.5",), tier="extra")
def c_cc_local_up(ctx):
    return c_cc_local(ctx, voxel_mm=1.25)


def register_blur_cc_local(ctx, *, global_mm=2.0, local=True, aff_metric="mattes",
                           resample_template=False, **local_kw):
    """The recommended pipeline (see docs/registration-explore.md).

    1. Global: ``SyN`` with ``syn_metric="CC", syn_sampling=2, reg_iterations=(40, 20, 0)`` on
       a grid of ``g = max(native voxel, global_mm)`` mm: the T1w is resampled (anti-aliased) to
       ``g`` when finer, and the template is blurred to ``g`` (Gaussian, FWHM = g) or, with
       ``resample_template``, blurred and resampled onto a ``g`` mm grid.
    2. Local: ``SyNOnly`` CC r2 ``(20, 10)`` on the native grid cropped to the box around all
       nuclei, template blurred to the native voxel size, initialised with step 1.
    """
    ants = ctx.ants
    native = float(np.mean(ctx.fixed.spacing))
    g = max(native, global_mm)
    fixed_g = ctx.fixed if g <= native else _resample(ants, ctx.fixed, g)
    if resample_template:
        tpl_g = _resample(ants, ctx.template, g)
    else:
        tpl_g = _smooth_template_to(ants, ctx.template, g)
    reg = _reg(ctx, fixed_g, tpl_g, type_of_transform="SyN", syn_metric="CC", syn_sampling=2,
               reg_iterations=(40, 20, 0), aff_metric=aff_metric,
               write_composite_transform=local)
    tx = reg["fwdtransforms"]
    stage1 = [tx] if isinstance(tx, str) else tx
    info = {"global_mm": g, "global_fixed_shape": list(fixed_g.shape)}
    if not local:
        return stage1, info
    t1 = time.perf_counter()
    tpl_n = _smooth_template_to(ants, ctx.template, native)
    tx, linfo = _local_refine(ctx, stage1, moving=tpl_n, **local_kw)
    info.update(linfo, local_seconds=round(time.perf_counter() - t1, 2))
    return tx, info


@candidate("blur_cc", "syn_cc with the template blurred to the data's voxel size (FWHM = "
           "voxel); at 1 mm: T1w resampled to 2 mm and template blurred to 2 mm", tier="extra")
def c_blur_cc(ctx):
    return register_blur_cc_local(ctx, local=False)


@candidate("blur_cc_local", "blur_cc, then the local CC stage (cc_local) with the template "
           "blurred to the native voxel size", tier="extra")
def c_blur_cc_local(ctx):
    return register_blur_cc_local(ctx)


@candidate("rs_cc", "blur_cc with the template blurred AND resampled to the registration grid "
           "(2.5 mm, or 2 mm for 1 mm data)")
def c_rs_cc(ctx):
    return register_blur_cc_local(ctx, local=False, resample_template=True)


@candidate("rs_cc_local", "RECOMMENDED: rs_cc, then the local CC stage of blur_cc_local")
def c_rs_cc_local(ctx):
    return register_blur_cc_local(ctx, resample_template=True)


@candidate("rs_cc_local_gc", "rs_cc_local with aff_metric='GC' (the linear metric of the Repro "
           "presets; the metric reduction is thread-order independent)")
def c_rs_cc_local_gc(ctx):
    return register_blur_cc_local(ctx, resample_template=True, aff_metric="GC")


@candidate("rs_cc_local_40", "rs_cc_local with local reg_iterations=(40, 20)", res=("2.5",),
           tier="extra")
def c_rs_cc_local_40(ctx):
    return register_blur_cc_local(ctx, resample_template=True, iterations=(40, 20))


@candidate("rs_cc_local_gc_r1", "rs_cc_local_gc with CC radius 1 in the local stage (cheaper at "
           "1 mm)", res=("1.0",), tier="extra")
def c_rs_cc_local_gc_r1(ctx):
    return register_blur_cc_local(ctx, resample_template=True, aff_metric="GC", radius=1)


@candidate("blur_cc_local_gc", "blur_cc_local with aff_metric='GC' (Repro-style linear metric)",
           tier="extra")
def c_blur_cc_local_gc(ctx):
    return register_blur_cc_local(ctx, aff_metric="GC")


@candidate("blur_cc_local_r1", "blur_cc_local with CC radius 1 in the local stage",
           res=("1.0",), tier="extra")
def c_blur_cc_local_r1(ctx):
    return register_blur_cc_local(ctx, radius=1)


@candidate("blur_cc_local_40", "blur_cc_local with local reg_iterations=(40, 20)", tier="extra")
def c_blur_cc_local_40(ctx):
    return register_blur_cc_local(ctx, iterations=(40, 20))


@candidate("blur_syn_s", "antsRegistrationSyN[s] with the template blurred to the data's voxel "
           "size (FWHM = voxel)", res=("2.5",), tier="extra")
def c_blur_syn_s(ctx):
    tpl = _smooth_template_to(ctx.ants, ctx.template, float(np.mean(ctx.fixed.spacing)))
    reg = _reg(ctx, ctx.fixed, tpl, type_of_transform="antsRegistrationSyN[s]")
    return reg["fwdtransforms"], {}


# ----------------------------------------------------------------------------------------------
# Worker
# ----------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _dice(a: np.ndarray, b: np.ndarray, members: list[int]) -> float:
    x, y = np.isin(a, members), np.isin(b, members)
    s = x.sum() + y.sum()
    return float(2.0 * (x & y).sum() / s) if s else float("nan")


def _dice_by_group(warped: np.ndarray, truth: np.ndarray, groups: dict) -> dict:
    """Dice per group of left labels (right = left + 10): ``G`` (mean), ``G_L``, ``G_R``."""
    dice = {}
    for g, m in groups.items():
        dl, dr = _dice(warped, truth, m), _dice(warped, truth, [i + 10 for i in m])
        dice[g] = (dl + dr) / 2
        dice[f"{g}_L"], dice[f"{g}_R"] = dl, dr
    return dice


def _template_coordinates(affine: np.ndarray, shape) -> np.ndarray:
    """(3, *shape) world coordinates (mm) of every voxel centre of a grid."""
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)


def _true_mni(root: Path, sub: str, shape, affine) -> np.ndarray:
    """True MNI coordinates (RAS mm) of every native voxel centre: A·(x + u(x))."""
    import nibabel as nib
    truth = root / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat"
    stem = f"sub-{sub}_from-individual_to-MNI152NLin2009cAsym_mode-points"
    A = np.array(json.loads((truth / f"{stem}_desc-affine_xfm.json").read_text())["matrix"])
    u = np.asarray(nib.load(truth / f"{stem}_desc-displacement_xfm.nii.gz").dataobj, np.float32)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    x = affine[:3, :3] @ ijk + affine[:3, 3:4] + u.reshape(-1, 3).T
    return (A[:3, :3] @ x + A[:3, 3:4]).reshape(3, *shape)


def run_worker(spec: dict) -> dict:
    import ants
    import nibabel as nib

    from brainiron import atlas

    seed = spec.get("seed")
    if seed is not None:
        ants.config._random_seed = int(seed)  # → antsRegistration --random-seed
    root, sub, name = Path(spec["root"]), spec["sub"], spec["candidate"]
    with tempfile.TemporaryDirectory(prefix="regx-") as tmp:
        ctx = Ctx(root, sub, Path(tmp))
        truth_path = (root / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat" /
                      f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
        truth_img = nib.load(truth_path)
        truth = np.asarray(truth_img.dataobj).astype(np.int16)
        base_rss = _rss_mb()
        t0 = time.perf_counter()
        transforms, info = CANDIDATES[name]["fn"](ctx)
        t_reg = time.perf_counter() - t0
        t1 = time.perf_counter()
        warped = ants.apply_transforms(ctx.fixed, ctx.labels, transforms,
                                       interpolator="genericLabel")
        t_apply = time.perf_counter() - t1
        peak = _rss_mb()
        w = np.rint(warped.numpy()).astype(np.int16)
        if w.shape != truth.shape:
            raise RuntimeError(f"warped labels {w.shape} vs truth {truth.shape}")
        dice = _dice_by_group(w, truth, GROUPS)
        # TRE: estimated MNI coordinate of each native voxel vs the true one.
        tpl_aff = atlas.load_reference("template").affine
        coords = _template_coordinates(tpl_aff, ctx.labels_np.shape)
        est = np.stack([ants.apply_transforms(ctx.fixed, ctx.like_template(c), transforms,
                                              interpolator="linear").numpy() for c in coords])
        del coords
        true = _true_mni(root, sub, truth.shape, truth_img.affine)
        err = np.linalg.norm(est - true, axis=0)
        tre = {}
        for g, m in GROUPS.items():
            sel = np.isin(truth, m + [i + 10 for i in m])
            tre[g] = float(err[sel].mean())
        small = np.isin(truth, [i + o for g in SMALL for i in GROUPS[g] for o in (0, 10)])
        tre["small"] = float(err[small].mean())
        tre["all"] = float(err[truth > 0].mean())
        out_dir = Path(spec["workdir"]) / "warped"
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = f"{spec['res']}_{sub}_{name}_{spec.get('rep', 0)}"
        np.savez_compressed(out_dir / f"{tag}.npz", labels=w, est=est.astype(np.float32))
        n_truth = {g: [int(np.isin(truth, m).sum()), int(np.isin(truth, [i + 10 for i in m])
                                                           .sum())] for g, m in GROUPS.items()}
    return {
        **spec, "dice": dice, "tre_mm": tre, "reg_seconds": round(t_reg, 2),
        "apply_seconds": round(t_apply, 2), "peak_rss_mb": round(peak, 1),
        "base_rss_mb": round(base_rss, 1), "labels_sha256": hashlib.sha256(w.tobytes()).hexdigest(),
        "fixed_shape": list(truth.shape), "truth_voxels": n_truth, "info": info,
        "threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"),
        "ants_version": ants.__version__,
    }


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def ensure_phantoms(workdir: Path, resolutions) -> dict[str, Path]:
    from brainiron.phantom import generate_phantom
    roots = {}
    for res in resolutions:
        d = DATASETS[res]
        root = workdir / f"phantom-{res}mm"
        if not (root / "participants.tsv").exists():
            t = time.perf_counter()
            generate_phantom(root, n_subjects=d["n_subjects"], seed=d["seed"],
                             voxel_size=(d["voxel"],) * 3, orientation=d["orientation"],
                             with_megre=False, with_chimap=False, with_r2starmap=False)
            print(f"[phantom] {res} mm: {d['n_subjects']} subject(s) in "
                  f"{time.perf_counter() - t:.1f} s → {root}", flush=True)
        roots[res] = root
    return roots


def _key(r: dict) -> tuple:
    return (r["res"], r["sub"], r["candidate"], r.get("rep", 0), r.get("seed"))


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_job(spec: dict, results_path: Path, done: set, force: bool) -> dict | None:
    if _key(spec) in done and not force:
        return None
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[fail] {spec['res']} sub-{spec['sub']} {spec['candidate']} "
              f"(exit {proc.returncode}):\n"
              f"{proc.stderr[-3000:]}", flush=True)
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = round(time.perf_counter() - t, 2)
    with open(results_path, "a") as fh:
        fh.write(json.dumps(res) + "\n")
    d = res["dice"]
    print(f"[run] {spec['res']:>3} mm sub-{spec['sub']} {spec['candidate']:<16} "
          f"rep={spec.get('rep', 0)} seed={spec.get('seed')} reg {res['reg_seconds']:7.1f} s  "
          f"peak {res['peak_rss_mb']:6.0f} MB  SN {d['SN']:.3f} RN {d['RN']:.3f} "
          f"STN {d['STN']:.3f} GP {d['GP']:.3f}  TRE small {res['tre_mm']['small']:.2f} mm",
          flush=True)
    return res


def summarise(results: list[dict]) -> str:
    """Markdown table: mean over subjects (first repetition, no seed) per resolution×candidate."""
    import pandas as pd
    rows = []
    for r in results:
        if r.get("rep", 0) != 0 or r.get("seed") is not None:
            continue
        rows.append({"res": r["res"], "candidate": r["candidate"], "sub": r["sub"],
                     **{g: r["dice"][g] for g in GROUPS},
                     "TRE_small": r["tre_mm"]["small"], "TRE_all": r["tre_mm"]["all"],
                     "reg_s": r["reg_seconds"], "apply_s": r["apply_seconds"],
                     "peak_MB": r["peak_rss_mb"]})
    if not rows:
        return "(no results)"
    df = pd.DataFrame(rows)
    order = list(CANDIDATES)
    out = []
    for res, g in df.groupby("res", sort=False):
        agg = g.groupby("candidate").agg(
            n=("sub", "count"), **{k: (k, "mean") for k in GROUPS},
            TRE_small=("TRE_small", "mean"), TRE_all=("TRE_all", "mean"),
            reg_s=("reg_s", "mean"), apply_s=("apply_s", "mean"), peak_MB=("peak_MB", "max"))
        agg = agg.loc[[c for c in order if c in agg.index]]
        agg["mean7"] = agg[list(GROUPS)].mean(axis=1)
        cols = ["n", *GROUPS, "mean7", "TRE_small", "TRE_all", "reg_s", "apply_s", "peak_MB"]
        out.append(f"\n### {res} mm (mean over subjects; Dice L/R averaged; TRE in mm; "
                   f"reg_s = registration wall time; peak_MB = max worker peak RSS)\n")
        out.append("| candidate | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for name, row in agg.iterrows():
            cells = []
            for c in cols:
                v = row[c]
                cells.append(f"{int(v)}" if c in ("n", "peak_MB") else
                             f"{v:.1f}" if c in ("reg_s", "apply_s") else
                             f"{v:.2f}" if c.startswith("TRE") else f"{v:.3f}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def determinism_report(results: list[dict], workdir: Path) -> str:
    """Compare repetitions of the same (res, sub, candidate, seed)."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["res"], r["sub"], r["candidate"], r.get("seed")), []).append(r)
    lines = ["\n### Determinism (same inputs run twice, ITK threads = "
             f"{os.environ.get('ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS')})\n",
             "| res | sub | candidate | seed | runs | labels identical | voxels differing | "
             "max coord diff in nuclei (mm) | SN Dice per run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (res, sub, cand, seed), rs in groups.items():
        reps = sorted({r.get("rep", 0) for r in rs})
        if len(reps) < 2:
            continue
        rs = sorted(rs, key=lambda r: r.get("rep", 0))
        arrs = []
        for r in rs:
            f = workdir / "warped" / f"{res}_{sub}_{cand}_{r.get('rep', 0)}.npz"
            arrs.append(np.load(f) if f.exists() else None)
        same = len({r["labels_sha256"] for r in rs}) == 1
        ndiff = maxd = float("nan")
        if all(a is not None for a in arrs):
            import nibabel as nib
            tp = (Path(rs[0]["root"]) / "derivatives" / "phantom-truth" / f"sub-{sub}" / "anat" /
                  f"sub-{sub}_space-individual_atlas-CIT168_dseg.nii.gz")
            nuclei = np.asarray(nib.load(tp).dataobj) > 0  # coordinate differences in nuclei
            ndiff = max(int((arrs[0]["labels"] != a["labels"]).sum()) for a in arrs[1:])
            maxd = max(float(np.abs(arrs[0]["est"] - a["est"])[:, nuclei].max())
                       for a in arrs[1:])
        sn = ", ".join(f"{r['dice']['SN']:.3f}" for r in rs)
        lines.append(f"| {res} | {sub} | {cand} | {seed} | {len(rs)} | {same} | {ndiff} | "
                     f"{maxd:.4f} | {sn} |")
    return "\n".join(lines)


def plan(args) -> list[dict]:
    jobs = []
    for res in args.res:
        d = DATASETS[res]
        subs = [f"{i:02d}" for i in range(1, d["n_subjects"] + 1)]
        for name, c in CANDIDATES.items():
            if args.candidates and name not in args.candidates:
                continue
            if res not in c["res"]:
                continue
            if not args.candidates and ((c["tier"] == "slow" and not args.slow)
                                        or (c["tier"] == "extra" and not args.extra)):
                continue
            for sub in subs:
                jobs.append(dict(res=res, sub=sub, candidate=name, rep=0, seed=None))
    # Determinism: the recommended candidates twice without a seed, then twice with a seed.
    if not args.no_determinism:
        for res, name, seeds in DETERMINISM:
            if res not in args.res:
                continue
            for seed in seeds:
                for rep in (1, 2) if seed is not None else (1,):
                    jobs.append(dict(res=res, sub="01", candidate=name, rep=rep, seed=seed))
    return jobs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "brainiron-regexplore")
    p.add_argument("--res", type=lambda s: s.split(","), default=["2.5", "1.0"])
    p.add_argument("--candidates", type=lambda s: s.split(","), default=None)
    p.add_argument("--extra", action="store_true", help="include the exploratory variants")
    p.add_argument("--slow", action="store_true", help="include the ~30 min full-1 mm runs")
    p.add_argument("--force", action="store_true", help="redo runs already in results.jsonl")
    p.add_argument("--no-determinism", action="store_true")
    p.add_argument("--list", action="store_true")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.list:
        for name, c in CANDIDATES.items():
            print(f"{name:<18} {c['tier']:<6} res={','.join(c['res']):<8} {c['desc']}")
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    results_path = args.workdir / "results.jsonl"
    if not args.summary_only:
        roots = ensure_phantoms(args.workdir, args.res)
        done = {_key(r) for r in load_results(results_path)}
        started = time.perf_counter()
        for spec in plan(args):
            spec.update(root=str(roots[spec["res"]]), workdir=str(args.workdir))
            run_job(spec, results_path, done, args.force)
        print(f"[done] {time.perf_counter() - started:.0f} s", flush=True)
    results = load_results(results_path)
    print(summarise(results))
    print(determinism_report(results, args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
