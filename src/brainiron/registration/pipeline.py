"""Registration of a subject image to MNI152NLin2009cAsym with ANTs: one pipeline per contrast.

The subject's registration image is the *fixed* image and the template the *moving* one, so
ANTs' forward transforms pull template-space images (atlas labels) onto the subject's grid,
where the quantitative maps stay untouched: brainiron never resamples a map for statistics.

Defaults are chosen for small nuclei (SN, RN, STN) — see ``docs/registration.md`` for the
measurements: rigid → affine → SyN computed on a grid of ``resolution_mm`` (registering at
~2 mm and applying the transform to finer data costs little accuracy and saves ~10× time),
then a local SyN on the nuclei's box at the data's resolution. By contrast:

* **T1w** — against the T1 template, cross-correlation, with the local stage;
* **magnitude (MEGRE), R2*, χ without the χ template** — against the T1 template, mutual
  information, the metric restricted to the image's foreground, no local stage;
* **χ (Chimap) with** ``settings.chi_template`` — what worked on real 3 T χ maps: an initial
  affine between *binary brain masks* (χ has little large-scale contrast for an intensity
  metric to lock on to, but the brain's outline is unambiguous), then SyN with
  cross-correlation against the χ-contrast template
  (:func:`brainiron.registration.chi_template`; same contrast, so CC applies), then the
  local stage with ``chi_local_iterations`` / ``chi_local_margin_mm``.

References
----------
.. [1] Avants BB et al. (2008) Symmetric diffeomorphic image registration with
   cross-correlation. Med Image Anal 12:26-41.
.. [2] Tustison NJ et al. (2021) The ANTsX ecosystem for quantitative biological and medical
   imaging. Sci Rep 11:9068.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import atlas, layout
from ..masks import chi_brain_mask, foreground_mask
from ..settings import RegistrationSettings
from .images import on_grid, resample_antialiased, to_ants
from .qc import registration_qc
from .templates import template_brain_mask_image, template_image
from .transforms import Registration, compose_forward

__all__ = ["align_brain_masks", "chi_local_settings", "describe", "local_stage", "register",
           "registration_input", "scratch_dir", "uses_chi_template"]


def uses_chi_template(contrast: str, settings: RegistrationSettings) -> bool:
    """Whether an image of ``contrast`` is registered with the χ-contrast template."""
    return contrast == "Chimap" and bool(settings.chi_template)


def registration_input(image: np.ndarray, contrast: str, template: str,
                       mask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """The image as registered and its mask (NaN and ±inf → 0).

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The registration image.
    contrast : str
        ``T1w``, ``MEGRE``, ``Chimap`` or ``R2starmap``.
    template : {"T1w", "chi"}
        The template it is registered with.
    mask : (X, Y, Z) bool ndarray, optional
        A mask to use instead of the default: none for a T1w (skull-stripped, like the
        template), the χ map's support (:func:`brainiron.masks.chi_brain_mask`; the image is
        zeroed outside it) against the χ template, else
        :func:`brainiron.masks.foreground_mask`.

    Returns
    -------
    image : (X, Y, Z) ndarray
    mask : (X, Y, Z) bool ndarray or None

    Raises
    ------
    ValueError
        A χ map with fewer than 1000 brain voxels.
    """
    if template == "chi":
        chi = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0,
                            neginf=0.0)
        brain = chi_brain_mask(chi) if mask is None else np.asarray(mask, bool)
        if brain.sum() < 1000:
            raise ValueError("the χ map has fewer than 1000 nonzero voxels: no brain to "
                             "register")
        return np.where(brain, chi, 0.0).astype(np.float32), brain
    image = np.nan_to_num(np.asarray(image), nan=0.0, posinf=0.0, neginf=0.0)
    if mask is None and contrast != "T1w":
        mask = foreground_mask(image)
    return image, mask


def align_brain_masks(brain: np.ndarray, affine: np.ndarray, grid_mm: float,
                      scratch: Path) -> tuple[list[str], float]:
    """Affine of the template's brain mask onto the subject's (global correlation).

    Both masks are blurred and resampled to ``grid_mm``.

    Parameters
    ----------
    brain : (X, Y, Z) bool ndarray
        The subject's brain.
    affine : (4, 4) ndarray
        Voxel → world (RAS, mm).
    grid_mm : float
        Registration grid (mm).
    scratch : path
        Folder of ANTs' files (prefix ``mask_``).

    Returns
    -------
    transforms : list of str
        The affine (ANTs forward transform list).
    dice : float
        Dice of the two masks after it.
    """
    import ants

    fixed_mask = on_grid(to_ants(brain.astype(np.float32), affine), grid_mm)
    moving_mask = resample_antialiased(template_brain_mask_image(), grid_mm)
    init = ants.registration(fixed=fixed_mask, moving=moving_mask, type_of_transform="Affine",
                             aff_metric="GC", outprefix=str(scratch / "mask_"))
    init_tx = _as_list(init["fwdtransforms"])
    warped_mask = ants.apply_transforms(fixed_mask, moving_mask, init_tx).numpy() > 0.5
    fm = fixed_mask.numpy() > 0.5
    dice = 2.0 * (warped_mask & fm).sum() / max(warped_mask.sum() + fm.sum(), 1)
    return init_tx, float(dice)


def _as_list(transforms) -> list[str]:
    return [transforms] if isinstance(transforms, str) else list(transforms)


def _written(transforms: list[str]) -> list[str]:
    """The transforms, each NIfTI one read back whole: ANTs' NIfTI writer ignores a failed
    write (a full disk, a file size limit), and a truncated warp is a wrong registration."""
    import nibabel as nib

    for path in transforms:
        if str(path).endswith((".nii", ".nii.gz")):
            try:
                np.asarray(nib.load(path).dataobj)
            except Exception as exc:  # EOF, zlib or header errors of a cut-off file
                raise OSError(f"{path}: transform written incompletely ({exc}): the disk is "
                              "full or a file size limit was reached (File too large)") from None
    return transforms


def _global_stage(fixed, template, grid: float, settings: RegistrationSettings,
                  same_contrast: bool, scratch: Path, mask_img=None,
                  initial: list[str] | None = None, composite: bool = True
                  ) -> tuple[list[str], list[str]]:
    """Stage 1: ``settings.transform`` of the image (on ``grid``) with the template.

    ``composite``: one composite file (what the local stage's initial transform must be)
    instead of ``[Warp, Affine]``; a composite placed after a coregistration in a transform
    list was applied wrongly by ANTs (nucleus Dice 0.04 instead of 0.79, one T1w subject),
    so a chain without the local stage keeps the separate files.
    """
    import ants

    native = float(np.mean(fixed.spacing))
    fixed_g = on_grid(fixed, grid)
    kwargs = {}
    if initial is not None:
        kwargs["initial_transform"] = initial
    if mask_img is not None:
        if mask_img.shape != fixed_g.shape or grid > native + 1e-6:
            mask_img = ants.resample_image_to_target(mask_img, fixed_g,
                                                     interp_type="nearestNeighbor")
        kwargs["mask"] = mask_img
    stage1 = ants.registration(
        fixed=fixed_g, moving=resample_antialiased(template, grid),
        type_of_transform=settings.transform, aff_metric=settings.aff_metric,
        syn_metric=settings.syn_metric if same_contrast else settings.multicontrast_syn_metric,
        syn_sampling=(settings.syn_sampling if same_contrast
                      else settings.multicontrast_syn_sampling),
        reg_iterations=tuple(settings.reg_iterations), write_composite_transform=composite,
        outprefix=str(scratch / "global_"), **kwargs)
    return _written(_as_list(stage1["fwdtransforms"])), _as_list(stage1["invtransforms"])


def local_stage(fixed, template, stage1: list[str], stage1_inverse: list[str], scratch: Path,
                settings: RegistrationSettings) -> tuple[list[str], list[str], dict]:
    """Second SyN on the nuclei's box at the subject's resolution, initialised by stage 1.

    Parameters
    ----------
    fixed : ants.ANTsImage
        The subject image on its own grid.
    template : ants.ANTsImage
        The (unblurred) template; blurred here to the subject's voxel size.
    stage1, stage1_inverse : list of str
        Stage 1's forward (one composite file) and inverse transforms.
    scratch : path
        Folder of ANTs' files (prefix ``local_``).
    settings : RegistrationSettings
        ``local_iterations`` (data no coarser than ``resolution_mm``),
        ``local_iterations_coarse``, ``local_margin_mm``, ``syn_metric``, ``syn_sampling``.

    Returns
    -------
    forward, inverse : list of str
        The whole chain.
    info : dict
        ``local_box_shape`` and ``local_iterations``, or ``local_stage`` (why skipped).
    """
    import ants

    labels = atlas.template_labels()
    ijk = np.argwhere(np.asarray(labels.data) > 0)
    margin = int(round(settings.local_margin_mm))  # the template grid is 1 mm
    lo, hi = ijk.min(0), ijk.max(0) + 1
    box = np.zeros(labels.data.shape, np.float32)
    box[tuple(slice(max(a - margin, 0), b + margin) for a, b in zip(lo, hi, strict=True))] = 1
    box_native = ants.apply_transforms(fixed, to_ants(box, labels.affine), stage1,
                                       interpolator="nearestNeighbor").numpy() > 0
    if box_native.sum() < 27:
        return stage1, stage1_inverse, {"local_stage": "skipped: the nuclei are outside the image"}
    nijk = np.argwhere(box_native)
    fixed_box = ants.crop_indices(fixed, nijk.min(0).tolist(), (nijk.max(0) + 1).tolist())
    native = float(np.mean(fixed.spacing))
    # Fine data: the full-resolution level is costly and converges in few iterations;
    # coarse data need more of them (docs/registration.md).
    iterations = (settings.local_iterations
                  if native <= float(settings.resolution_mm or 0.0) + 1e-6
                  else settings.local_iterations_coarse)
    sigma = np.sqrt(max(native ** 2 - 1.0, 0.0)) / 2.3548
    moving = ants.smooth_image(template, sigma, sigma_in_physical_coordinates=True) \
        if sigma > 0 else template
    mlo = np.maximum(lo - 3 * margin, 0)
    mhi = np.minimum(hi + 3 * margin, labels.data.shape)
    moving_box = ants.crop_indices(moving, mlo.tolist(), mhi.tolist())
    # stage1 must be ONE composite file: ANTsPy turns a list into an invalid "-r a b".
    stage2 = ants.registration(
        fixed=fixed_box, moving=moving_box, type_of_transform="SyNOnly",
        initial_transform=list(stage1), syn_metric=settings.syn_metric,
        syn_sampling=settings.syn_sampling if native > 1.5 else 1,
        reg_iterations=tuple(iterations), outprefix=str(scratch / "local_"))
    # With an initial transform antsRegistration writes the whole chain
    # [2Warp (local), 1Warp, 0GenericAffine]; ANTsPy's invtransforms list is wrong there, so
    # the inverse is built from the pieces: stage 1's inverse composite, then the local one.
    forward = _written(list(stage2["fwdtransforms"]))
    # local_2Warp after a composite (affine + warp) start, local_1Warp after a field.
    inverse = [*stage1_inverse, forward[0].replace("Warp.nii.gz", "InverseWarp.nii.gz")]
    return forward, inverse, {"local_box_shape": list(fixed_box.shape),
                              "local_iterations": [int(i) for i in iterations]}


def chi_local_settings(settings: RegistrationSettings) -> RegistrationSettings:
    """The settings of a χ (or R2*) local stage: ``chi_local_iterations_fine`` for data no
    coarser than ``resolution_mm``, ``chi_local_iterations`` else, ``chi_local_margin_mm``."""
    # χ needs the heavier local stage (docs/registration.md): SN Dice 0.87 with the T1w
    # default (20,5) / 8 mm, 0.91 with (40,20) / 15 mm at 3 mm.
    # At <= resolution_mm the full-resolution level is the costly one and converges sooner:
    # (40, 10) there costs 0.004 mean Dice and saves a third of the stage at 1x1x2 mm.
    return replace(settings, local_iterations=tuple(settings.chi_local_iterations_fine),
                   local_iterations_coarse=tuple(settings.chi_local_iterations),
                   local_margin_mm=float(settings.chi_local_margin_mm))


def register(image: np.ndarray, affine: np.ndarray, scratch: str | Path,
             settings: RegistrationSettings | None = None, *, contrast: str = "T1w",
             mask: np.ndarray | None = None) -> Registration:
    """Register a subject image (fixed) with the template of its contrast (moving).

    Stage 0 (χ with the χ template only): affine of the template's brain mask onto the
    χ map's (:func:`align_brain_masks`). Stage 1 (global): ``settings.transform`` on a grid
    of ``g = max(voxel, resolution_mm)``; the subject image is resampled to ``g`` when
    finer, the template blurred and resampled to ``g`` (matching the data's point-spread
    function matters more than any other setting). Stage 2 (local; T1w, and χ with the χ
    template): ``SyNOnly`` on the subject's own grid cropped to the nuclei's box + margin,
    against the template blurred to the subject's voxel size (:func:`local_stage`).

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The registration image (T1w, magnitude, R2* or χ map).
    affine : (4, 4) ndarray
        Its voxel → world (RAS, mm) matrix.
    scratch : path
        Folder for ANTs' transform files (kept until the caller saves them).
    settings : RegistrationSettings, optional
    contrast : {"T1w", "MEGRE", "Chimap", "R2starmap"}
        The image's contrast: ``T1w`` is the template's (cross-correlation, local stage);
        ``Chimap`` uses the χ-contrast template when ``settings.chi_template``; anything
        else mutual information and no local stage.
    mask : (X, Y, Z) bool ndarray, optional
        Foreground (brain) mask restricting the metric; default in
        :func:`registration_input`.

    Returns
    -------
    Registration
        ``qc``: :func:`brainiron.registration.registration_qc`, plus ``global_grid_mm``, the
        stage times (s), ``local_box_shape`` / ``local_iterations``, and for the χ template
        ``mask_dice`` (the brain masks after stage 0).

    Raises
    ------
    ValueError
        A χ map with fewer than 1000 brain voxels.
    """
    import ants

    settings = settings or RegistrationSettings()
    ants.config._random_seed = int(settings.random_seed)  # registration(random_seed=) is ignored
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    template = "chi" if uses_chi_template(contrast, settings) else "T1w"
    image, mask = registration_input(image, contrast, template, mask)
    fixed = to_ants(image, affine)
    grid = max(float(np.mean(fixed.spacing)), float(settings.resolution_mm or 0.0))
    same_contrast = template == "chi" or contrast == "T1w"
    qc: dict = {}
    initial, mask_img, t0 = None, None, started
    if template == "chi":
        initial, dice = align_brain_masks(mask, affine, grid, scratch)
        qc.update(mask_affine_seconds=round(time.perf_counter() - t0, 2),
                  mask_dice=round(dice, 4))
        t0 = time.perf_counter()
    elif mask is not None:
        mask_img = to_ants(mask.astype(np.float32), affine)
    template_img = template_image(template)
    local = bool(settings.local_refinement and same_contrast)
    forward, inverse = _global_stage(fixed, template_img, grid, settings, same_contrast,
                                     scratch, mask_img=mask_img, initial=initial,
                                     composite=local)
    qc.update(global_grid_mm=round(grid, 3), global_seconds=round(time.perf_counter() - t0, 2))
    if local:
        t0 = time.perf_counter()
        local_settings = chi_local_settings(settings) if template == "chi" else settings
        forward, inverse, box = local_stage(fixed, template_img, forward, inverse, scratch,
                                            local_settings)
        qc.update(box, local_seconds=round(time.perf_counter() - t0, 2))
    reg = Registration(forward=forward, inverse=inverse, settings=settings, template=template,
                       shape=tuple(image.shape), affine=np.asarray(affine, dtype=float))
    reg.forward_field = compose_forward(reg, image.shape, affine, scratch,
                                        name="forward_composed_")
    brain = mask if template == "chi" else None
    reg.qc = {**registration_qc(image, affine, reg, contrast, brain_mask=brain), **qc,
              "seconds": round(time.perf_counter() - started, 2)}
    return reg


def scratch_dir(parent: str | Path) -> Path:
    """A private temporary folder for ANTs' files next to the outputs (same filesystem)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".ants-", dir=parent))


def describe(settings: RegistrationSettings, kinds: Sequence[str], chi_template: bool) -> str:
    """Methods text of the registration (plain text, citation markers ``[@key]``).

    Parameters
    ----------
    settings : RegistrationSettings
    kinds : sequence of str
        The registration images' contrasts in the run (``T1w``, ``MEGRE``, ...).
    chi_template : bool
        Whether χ-only subjects were registered with the χ-contrast template.

    Returns
    -------
    str
    """
    kinds = sorted(dict.fromkeys(k for k in kinds if k))
    metrics = {settings.syn_metric if k == "T1w" or (k == "Chimap" and chi_template)
               else settings.multicontrast_syn_metric for k in kinds or ["T1w"]}
    text = (
        f"The {' / '.join(kinds) or 'registration'} image of each subject was registered to the "
        f"{layout.TEMPLATE} template [@fonov] with ANTs (ANTsPy, "
        f"{settings.transform}, metric {' / '.join(sorted(metrics))}) [@avants], and the "
        f"{layout.ATLAS} subcortical nuclei [@pauli] with the FreeSurfer aseg thalamus "
        "[@fischl] were carried to the subject's grid through the inverse transform "
        "(nearest-neighbour labels, partial-volume probabilities).")
    if "T1w" in kinds and settings.t1w_grid == "coregister":
        text += (
            " A T1w on its own grid was first registered "
            f"{settings.coregistration_transform.lower()}ly (ANTs, Mattes mutual information) "
            "to the subject's first-echo magnitude (else its χ or R2* map), and the template → "
            "T1w and T1w → maps transforms were composed so that the labels were interpolated "
            "once onto the maps' grid.")
    if settings.chi_local_stage and set(kinds) - {"Chimap"}:
        text += (
            " Subjects registered through a T1w or magnitude image that had a χ map were "
            "aligned again on the nuclei by a local SyN (cross-correlation) of brainiron's "
            "χ-contrast template onto their χ map.")
    if chi_template:
        text += (
            " Subjects with a χ map only were registered to a χ-contrast version of the "
            "template built by brainiron (normative χ of each nucleus, tissue class and a "
            "typical dentate, from the Hallgren & Sourander iron norms through the χ "
            "calibration), after an affine alignment of the brain masks.")
    return text
