"""Registration of a subject to MNI152NLin2009cAsym with ANTs, and labels back to the subject.

The subject's registration image is the *fixed* image and the template the *moving* one, so
ANTs' forward transforms pull template-space images (atlas labels) onto the subject's grid,
where the quantitative maps stay untouched: brainiron never resamples a map for statistics.

Defaults are chosen for small nuclei (SN, RN, STN) — see ``docs/registration.md`` for the
measurements: rigid → affine → SyN with a cross-correlation metric, computed on a grid of
``resolution_mm`` (registering at ~2 mm and applying the transform to finer data costs little
accuracy and saves ~10× time).

Images move between nibabel (RAS+ world) and ANTs (LPS physical space) with
:func:`to_ants` / :func:`from_ants`, without temporary files.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import atlas

__all__ = [
    "Registration",
    "RegistrationSettings",
    "from_ants",
    "register_to_template",
    "to_ants",
    "warp_brain_mask",
    "warp_labels",
    "warp_probabilities",
]

_LPS = np.diag([-1.0, -1.0, 1.0])


def to_ants(data: np.ndarray, affine: np.ndarray):
    """A NumPy array with a RAS+ voxel-to-world affine as an ANTs image (LPS physical space)."""
    import ants

    affine = np.asarray(affine, dtype=float)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _LPS @ affine[:3, :3] / spacing
    origin = _LPS @ affine[:3, 3]
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32),
                           origin=tuple(origin), spacing=tuple(spacing),
                           direction=direction)


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """An ANTs image as ``(data, RAS+ affine)``."""
    spacing = np.asarray(img.spacing, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = _LPS @ np.asarray(img.direction, dtype=float) * spacing
    affine[:3, 3] = _LPS @ np.asarray(img.origin, dtype=float)
    return img.numpy(), affine


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register (all configurable from ``config.yaml`` → ``registration``).

    The default is the two-stage scheme measured in ``docs/registration.md``: a global
    rigid → affine → SyN stage on a grid of ``max(voxel, resolution_mm)`` with the template
    blurred *and resampled* to that grid, then a local SyN on a box around the nuclei at the
    data's own resolution.

    Attributes
    ----------
    transform : str
        ANTsPy ``type_of_transform`` of the global stage (``SyN`` = rigid → affine → SyN).
    aff_metric : str
        Metric of the linear stages. ``GC`` (global correlation) is reproducible across
        threads; ANTs' default ``mattes`` is not, even with a seed.
    syn_metric : str
        Metric of the deformable stages for same-contrast images (``CC``).
    syn_sampling : int
        CC radius (voxels) of the deformable stages.
    reg_iterations : tuple of int
        SyN iterations per level of the global stage, coarse to fine.
    resolution_mm : float
        The global stage runs on a grid no finer than this (mm); 0 = the image's own grid.
    local_refinement : bool
        Run the second, local SyN on the nuclei's box (same-contrast images only).
    local_iterations : tuple of int
        SyN iterations per level of the local stage, for data no coarser than
        ``resolution_mm``.
    local_iterations_coarse : tuple of int
        The same for data coarser than ``resolution_mm`` (3 mm phantom: worst SN Dice 0.81
        with ``(20, 5)``, 0.90 with ``(40, 20)``, at ~3 s per subject).
    local_margin_mm : float
        Margin around the nuclei's bounding box of the local stage (mm).
    chi_local_iterations, chi_local_margin_mm : tuple of int, float
        The same for χ-only subjects (:func:`brainiron.chitemplate.register_chi`), whose
        local stage needs more iterations and context than a T1w's.
    random_seed : int
        Seed of ANTs' metric sampling (``ants.config._random_seed``).
    multicontrast_syn_metric, multicontrast_syn_sampling : str, int
        Metric and sampling of the deformable stage when the subject image is not T1-weighted
        (magnitude, χ map): mutual information instead of cross-correlation.
    """

    transform: str = "SyN"
    aff_metric: str = "GC"
    syn_metric: str = "CC"
    syn_sampling: int = 2
    reg_iterations: tuple[int, ...] = (40, 10, 0)
    resolution_mm: float = 2.0
    local_refinement: bool = True
    local_iterations: tuple[int, ...] = (20, 5)
    local_iterations_coarse: tuple[int, ...] = (40, 20)
    local_margin_mm: float = 8.0
    chi_local_iterations: tuple[int, ...] = (40, 20)
    chi_local_margin_mm: float = 15.0
    random_seed: int = 42
    multicontrast_syn_metric: str = "mattes"
    multicontrast_syn_sampling: int = 32

    @classmethod
    def from_config(cls, config: dict | None) -> RegistrationSettings:
        config = dict(config or {})
        known = {k: config[k] for k in cls.__dataclass_fields__ if k in config}
        for key in ("reg_iterations", "local_iterations", "local_iterations_coarse",
                    "chi_local_iterations"):
            if key in known:
                known[key] = tuple(int(i) for i in known[key])
        return cls(**known)


@dataclass
class Registration:
    """Result of :func:`register_to_template`.

    Attributes
    ----------
    forward : list of str
        ANTs transforms that pull template images onto the subject's grid.
    inverse : list of str
        ANTs transforms that pull subject images into the template (no inversion flags
        needed).
    qc : dict
        ``ncc`` (normalised cross-correlation of the registration image with the warped
        template inside the brain; 1 = identical up to scale), stage times in seconds, grids.
    """

    forward: list[str]
    inverse: list[str]
    settings: RegistrationSettings
    qc: dict = field(default_factory=dict)
    #: The forward chain composed into one displacement field on the subject's grid.
    forward_field: str | None = None
    #: ``forward_field`` loaded once (:func:`forward_warp`).
    warp: FieldWarp | None = field(default=None, repr=False)


def _resample_aa(img, spacing_mm: float):
    """Anti-aliased linear resampling to an isotropic grid (Gaussian FWHM² = new² − old²)."""
    import ants

    old = float(np.mean(img.spacing))
    if spacing_mm > old + 1e-6:
        sigma = np.sqrt(spacing_mm ** 2 - old ** 2) / 2.3548
        img = ants.smooth_image(img, sigma, sigma_in_physical_coordinates=True)
    return ants.resample_image(img, (spacing_mm,) * 3, use_voxels=False, interp_type=0)


def _template_image():
    tpl = atlas.load_reference("template")
    return to_ants(np.asarray(tpl.data), tpl.affine)


def register_to_template(image: np.ndarray, affine: np.ndarray, workdir: str | Path,
                         settings: RegistrationSettings | None = None,
                         mask: np.ndarray | None = None, contrast: str = "T1w") -> Registration:
    """Register a subject image (fixed) with the MNI152NLin2009cAsym T1 template (moving).

    Stage 1 (global): ``settings.transform`` on a grid of ``g = max(voxel, resolution_mm)``;
    the subject image is resampled to ``g`` when finer, the template blurred and resampled to
    ``g`` (matching the data's point-spread function matters more than any other setting).
    Stage 2 (local, T1w only): ``SyNOnly`` on the subject's own grid cropped to the nuclei's
    box + ``local_margin_mm``, against the template blurred to the subject's voxel size,
    initialised with stage 1.

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The registration image (T1w, or a magnitude / χ map).
    affine : (4, 4) ndarray
        Its voxel → world (RAS, mm) matrix.
    workdir : path
        Folder for ANTs' transform files (kept until the caller saves them).
    settings : RegistrationSettings, optional
    mask : (X, Y, Z) bool ndarray, optional
        Foreground mask of the subject image (metric restricted to it in stage 1).
    contrast : str
        ``T1w`` (same contrast as the template) or anything else (mutual information, no
        local stage).

    Returns
    -------
    Registration
    """
    import ants

    settings = settings or RegistrationSettings()
    ants.config._random_seed = int(settings.random_seed)  # registration(random_seed=) is ignored
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fixed = to_ants(image, affine)
    native = float(np.mean(fixed.spacing))
    grid = max(native, float(settings.resolution_mm or 0.0))
    fixed_g = fixed if grid <= native + 1e-6 else _resample_aa(fixed, grid)
    template = _template_image()
    same_contrast = contrast == "T1w"
    kwargs = {}
    if mask is not None:
        mask_img = to_ants(mask.astype(np.float32), affine)
        if mask_img.shape != fixed_g.shape or grid > native + 1e-6:
            mask_img = ants.resample_image_to_target(mask_img, fixed_g,
                                                     interp_type="nearestNeighbor")
        kwargs["mask"] = mask_img
    stage1 = ants.registration(
        fixed=fixed_g, moving=_resample_aa(template, grid), type_of_transform=settings.transform,
        aff_metric=settings.aff_metric,
        syn_metric=settings.syn_metric if same_contrast else settings.multicontrast_syn_metric,
        syn_sampling=(settings.syn_sampling if same_contrast
                      else settings.multicontrast_syn_sampling),
        reg_iterations=tuple(settings.reg_iterations), write_composite_transform=True,
        outprefix=str(workdir / "global_"), **kwargs)
    forward = [stage1["fwdtransforms"]] if isinstance(stage1["fwdtransforms"], str) \
        else list(stage1["fwdtransforms"])
    inverse = [stage1["invtransforms"]] if isinstance(stage1["invtransforms"], str) \
        else list(stage1["invtransforms"])
    qc = {"global_grid_mm": round(grid, 3),
          "global_seconds": round(time.perf_counter() - started, 2)}
    if settings.local_refinement and same_contrast:
        t0 = time.perf_counter()
        forward, inverse, local = _local_stage(fixed, template, forward, inverse, workdir,
                                               settings)
        qc.update(local, local_seconds=round(time.perf_counter() - t0, 2))
    reg = _composed_result(forward, inverse, settings, image.shape, affine, workdir)
    reg.qc = {**registration_qc(image, affine, reg, contrast), **qc,
              "seconds": round(time.perf_counter() - started, 2)}
    return reg


def _composed_result(forward: list[str], inverse: list[str], settings: RegistrationSettings,
                     reference_shape, reference_affine, workdir: Path) -> Registration:
    """The Registration of a transform chain, its forward chain composed on the image's grid."""
    reg = Registration(forward=forward, inverse=inverse, settings=settings)
    reg.forward_field = compose_forward(reg, reference_shape, reference_affine, workdir,
                                        name="forward_composed_")
    return reg


def _local_stage(fixed, template, stage1: list[str], stage1_inverse: list[str], workdir: Path,
                 settings: RegistrationSettings) -> tuple[list[str], list[str], dict]:
    """Second SyN on the nuclei's box at the subject's resolution, initialised by stage 1."""
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
        reg_iterations=tuple(iterations), outprefix=str(workdir / "local_"))
    # With an initial transform antsRegistration writes the whole chain
    # [2Warp (local), 1Warp, 0GenericAffine]; ANTsPy's invtransforms list is wrong there, so
    # the inverse is built from the pieces: stage 1's inverse composite, then the local one.
    forward = list(stage2["fwdtransforms"])
    inverse = [*stage1_inverse, str(workdir / "local_2InverseWarp.nii.gz")]
    return forward, inverse, {"local_box_shape": list(fixed_box.shape),
                              "local_iterations": [int(i) for i in iterations]}


def compose_forward(reg: Registration, reference_shape, reference_affine,
                    workdir: str | Path, name: str = "forward_maps_") -> str:
    """The forward chain composed into one displacement field on a grid (file path).

    The field is exact at the grid's voxel centres, so warping onto that grid (or any box of
    it) through the field gives what the chain gives. ``name``: the file's prefix in
    ``workdir`` (one per grid, so that fields of two grids do not overwrite each other).
    """
    import ants

    ref = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    return ants.apply_transforms(fixed=ref, moving=_template_image(),
                                 transformlist=list(reg.forward),
                                 compose=str(Path(workdir) / name))


@dataclass
class FieldWarp:
    """A forward chain composed into one displacement field, loaded once as an ANTs transform.

    Warping through it (linear, nearest neighbour) reads no transform file: at 1 mm each
    :func:`ants.apply_transforms` call would re-read ~100 MB of fields. ANTsPy's in-memory
    transforms have no ``genericLabel`` interpolator, so label images go through ``chain``
    (the same mapping, evaluated from the files). Build with :func:`field_transform`.
    """

    path: str
    transform: object
    chain: list[str]


def field_transform(field_path: str | Path, chain: list[str] | None = None) -> FieldWarp:
    """Load a composed displacement field (:func:`compose_forward`) as a :class:`FieldWarp`.

    Accepted as ``transforms`` by :func:`warp_labels`, :func:`warp_probabilities` and
    :func:`warp_brain_mask`. ``chain``: the transform files it was composed from (default:
    the field file itself).
    """
    import ants

    field = ants.image_read(str(field_path))
    return FieldWarp(path=str(field_path),
                     transform=ants.transform_from_displacement_field(field),
                     chain=list(chain) if chain else [str(field_path)])


def forward_warp(reg: Registration) -> FieldWarp | list[str]:
    """The registration's composed forward field, loaded on first use; else its chain."""
    if not reg.forward_field:
        return list(reg.forward)
    if reg.warp is None or reg.warp.path != str(reg.forward_field):
        reg.warp = field_transform(reg.forward_field, reg.forward)
    return reg.warp


def _apply(reference_shape, reference_affine, moving: np.ndarray, moving_affine, transforms,
           interpolator: str) -> np.ndarray:
    """Pull ``moving`` onto the reference grid through a chain of files or a loaded transform."""
    import ants

    fixed = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    moving_img = to_ants(np.asarray(moving, np.float32), moving_affine)
    if isinstance(transforms, FieldWarp) and interpolator != "genericLabel":
        out = transforms.transform.apply_to_image(moving_img, fixed, interpolator.lower())
    else:
        chain = transforms.chain if isinstance(transforms, FieldWarp) else list(transforms)
        out = ants.apply_transforms(fixed=fixed, moving=moving_img, transformlist=chain,
                                    interpolator=interpolator)
    return out.numpy()


#: QC limits below which a registration is flagged (docs/registration.md): NCC of a T1w with
#: the warped template, and the fraction of the warped template brain inside the subject's
#: foreground (contrast-independent; ~1 for any sane registration).
QC_MIN_NCC_T1W = 0.7
QC_MIN_BRAIN_COVERAGE = 0.85
#: Largest accepted SD of log(Jacobian determinant) of the template-to-subject warp inside the
#: brain: ~0.09 for the phantom's deformations, 0.33-0.39 when SyN forces the template onto a
#: mis-oriented brain (docs/registration.md).
QC_MAX_LOG_JACOBIAN_SD = 0.3


def foreground_mask(data: np.ndarray) -> np.ndarray | None:
    """Head (or brain) of an image: largest component above half Otsu, holes filled."""
    from skimage.filters import threshold_otsu

    finite = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0,
                           neginf=0.0)
    values = np.abs(finite[finite != 0])
    if values.size < 10:
        return None
    lab, n = ndimage.label(np.abs(finite) > threshold_otsu(values) * 0.5)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(lab == sizes.argmax())


def registration_qc(image: np.ndarray, affine: np.ndarray, reg: Registration,
                    contrast: str = "T1w") -> dict:
    """QC of a registration: NCC with the warped template, brain coverage, and a flag.

    Returns
    -------
    dict
        ``ncc`` — normalised cross-correlation of the subject image with the warped T1
        template inside the warped brain (meaningful for T1w; 1 = identical up to scale);
        ``brain_coverage`` — fraction of the warped template brain (within the image's field
        of view) that lies in the subject's foreground; ``log_jacobian_sd`` — SD of the log
        Jacobian determinant of the warp inside the brain (contrast-independent; large when
        SyN forced the template onto the wrong anatomy); ``flag`` — empty when all pass
        :data:`QC_MIN_NCC_T1W` (T1w only), :data:`QC_MIN_BRAIN_COVERAGE` and
        :data:`QC_MAX_LOG_JACOBIAN_SD`, else the reasons.
    """
    import ants

    tpl = atlas.load_reference("template")
    transforms = forward_warp(reg)
    warped = _apply(image.shape, affine, np.asarray(tpl.data), tpl.affine, transforms,
                    "linear")
    brain = warped > 0.1 * float(np.percentile(tpl.data[tpl.data > 0], 50))
    out: dict = {"brain_voxels": int(brain.sum())}
    if brain.sum() < 10:
        return {**out, "ncc": float("nan"), "brain_coverage": 0.0,
                "flag": "the warped template brain falls outside the image"}
    a = np.asarray(image, dtype=np.float64)[brain]
    b = warped[brain].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    out["ncc"] = round(float((a @ b) / denom), 4) if denom > 0 else float("nan")
    fg = foreground_mask(image)
    out["brain_coverage"] = round(float((brain & fg).sum() / brain.sum()), 4) \
        if fg is not None else 0.0
    if reg.forward_field:
        log_jac = ants.create_jacobian_determinant_image(
            to_ants(np.zeros(image.shape, np.float32), affine), reg.forward_field,
            do_log=True).numpy()[brain]
        out["log_jacobian_sd"] = round(float(np.std(log_jac[np.isfinite(log_jac)])), 4)
    reasons = []
    if contrast == "T1w" and not out["ncc"] >= QC_MIN_NCC_T1W:
        reasons.append(f"NCC {out['ncc']:.2f} < {QC_MIN_NCC_T1W}")
    if out["brain_coverage"] < QC_MIN_BRAIN_COVERAGE:
        reasons.append(f"brain coverage {out['brain_coverage']:.2f} < {QC_MIN_BRAIN_COVERAGE}")
    if out.get("log_jacobian_sd", 0.0) > QC_MAX_LOG_JACOBIAN_SD:
        reasons.append(f"log-Jacobian SD {out['log_jacobian_sd']:.2f} > "
                       f"{QC_MAX_LOG_JACOBIAN_SD}")
    out["flag"] = "; ".join(reasons)
    return out


def _crop_box(labels: np.ndarray, margin: int) -> tuple[slice, ...]:
    ijk = np.argwhere(labels > 0)
    lo = np.maximum(ijk.min(0) - margin, 0)
    hi = np.minimum(ijk.max(0) + margin + 1, labels.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _cropped_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in box]
    return affine @ shift


def warp_labels(reference_shape, reference_affine, transforms,
                labels: atlas.ReferenceImage | None = None) -> np.ndarray:
    """Template-space labels on the subject's grid (ANTs ``genericLabel`` interpolation).

    Parameters
    ----------
    reference_shape, reference_affine
        The subject grid (the quantitative maps' grid).
    transforms : list of str or FieldWarp
        :attr:`Registration.forward`, or the composed field (:func:`field_transform`).
    labels : ReferenceImage, optional
        Template-space labels (default :func:`brainiron.atlas.template_labels`).

    Returns
    -------
    (X, Y, Z) int16 ndarray
    """
    labels = labels or atlas.template_labels()
    box = _crop_box(np.asarray(labels.data), margin=4)
    out = _apply(reference_shape, reference_affine,
                 np.asarray(labels.data[box], dtype=np.float32),
                 _cropped_affine(labels.affine, box), transforms, "genericLabel")
    return np.rint(out).astype(np.int16)


def warp_brain_mask(reference_shape, reference_affine, transforms) -> np.ndarray:
    """The template's brain mask on the subject's grid (uint8, nearest neighbour)."""
    tpl = atlas.load_reference("template")
    out = _apply(reference_shape, reference_affine, (np.asarray(tpl.data) > 0).astype(
        np.float32), tpl.affine, transforms, "nearestNeighbor")
    return (out > 0.5).astype(np.uint8)


def warp_probabilities(reference_shape, reference_affine, transforms, label_indices,
                       native_labels: np.ndarray,
                       labels: atlas.ReferenceImage | None = None
                       ) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Partial-volume probability of each label on the subject's grid.

    Each label's one-hot template image is blurred to the subject's voxel size (Gaussian,
    FWHM = voxel size: the fraction of a subject voxel the label covers) and interpolated
    linearly through the transforms. Only a box around the native labels is kept.

    Returns
    -------
    probabilities : (x, y, z, K) uint8 ndarray
        Probability × 255 for each of ``label_indices``.
    box : tuple of slice
        Where the crop lies in the subject grid.
    """
    labels = labels or atlas.template_labels()
    data = np.asarray(labels.data)
    tbox = _crop_box(data, margin=8)
    crop_affine = _cropped_affine(labels.affine, tbox)
    native_box = _crop_box(native_labels, margin=2) if native_labels.any() else tuple(
        slice(0, s) for s in reference_shape)
    box_shape = tuple(s.stop - s.start for s in native_box)
    box_affine = _cropped_affine(reference_affine, native_box)
    voxel = np.sqrt((np.asarray(reference_affine)[:3, :3] ** 2).sum(0))
    template_voxel = np.sqrt((labels.affine[:3, :3] ** 2).sum(0))
    sigma = np.maximum(voxel.mean() / 2.3548 / template_voxel, 0)
    out = np.zeros((*box_shape, len(label_indices)), dtype=np.uint8)
    crop = data[tbox]
    for k, index in enumerate(label_indices):
        onehot = (crop == index).astype(np.float32)
        if not onehot.any():
            continue
        if sigma.max() > 0.3:
            onehot = ndimage.gaussian_filter(onehot, sigma)
        p = _apply(box_shape, box_affine, onehot, crop_affine, transforms, "linear")
        out[..., k] = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
    return out, native_box


def save_transforms(reg: Registration, reference_shape, reference_affine, forward_path: Path,
                    inverse_path: Path, workdir: Path, inverse_grid_mm: float = 2.0,
                    forward_field: str | Path | None = None) -> None:
    """Write the transforms as two displacement fields (BIDS ``_xfm.nii.gz``, float32).

    ``forward_path``: on the subject's grid; pulls template images onto it (``from-MNI…
    _to-individual``). ``inverse_path``: on the template at ``inverse_grid_mm``; pulls subject
    images into MNI152NLin2009cAsym. Either works as a one-element ``transformlist`` of
    :func:`ants.apply_transforms`, at any output grid. ``forward_field``: the forward chain
    already composed on the subject's grid (:func:`compose_forward`), reused as is.
    """
    import ants
    import nibabel as nib

    from .io import save_nifti

    reference = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    inverse_field = ants.apply_transforms(
        fixed=_resample_aa(_template_image(), inverse_grid_mm), moving=reference,
        transformlist=list(reg.inverse), compose=str(Path(workdir) / "inverse_template_"))
    if forward_field is None:
        forward_field = compose_forward(reg, reference_shape, reference_affine, workdir,
                                        name="forward_saved_")
    for composed, dst in ((inverse_field, inverse_path), (forward_field, forward_path)):
        field_img = nib.load(composed)
        hdr = field_img.header.copy()
        save_nifti(np.asarray(field_img.dataobj, dtype=np.float32), dst, field_img.affine,
                   header=hdr, dtype=np.float32, intent="vector")


def settings_dict(settings: RegistrationSettings) -> dict:
    out = asdict(settings)
    out["reg_iterations"] = list(settings.reg_iterations)
    out["local_iterations"] = list(settings.local_iterations)
    out["local_iterations_coarse"] = list(settings.local_iterations_coarse)
    out["chi_local_iterations"] = list(settings.chi_local_iterations)
    return out


def scratch_dir(parent: str | Path) -> Path:
    """A private temporary folder for ANTs' files next to the outputs (same filesystem)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".ants-", dir=parent))
