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

import os
import shutil
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

    Attributes
    ----------
    transform : str
        ANTsPy ``type_of_transform`` (``SyN``, ``SyNRA``, ``Affine``, ``antsRegistrationSyN[s]``
        ...). ``SyN`` runs rigid → affine → SyN.
    syn_metric : str
        Metric of the deformable stage (``CC`` for same-contrast images; ``mattes`` for
        multi-contrast).
    syn_sampling : int
        CC radius (voxels) or MI bins of the deformable stage.
    reg_iterations : tuple of int
        SyN iterations per level, coarse to fine.
    resolution_mm : float
        Register on an isotropic grid of this spacing (0 = the image's own grid) when the image
        is finer; the transform then applies to the image's own grid.
    random_seed : int
        Seed of ANTs' metric sampling, for reproducible runs.
    multicontrast_syn_metric, multicontrast_syn_sampling : str, int
        Metric and sampling of the deformable stage when the subject image is not T1-weighted
        (magnitude, χ map): mutual information instead of cross-correlation.
    """

    transform: str = "SyN"
    syn_metric: str = "CC"
    syn_sampling: int = 2
    reg_iterations: tuple[int, ...] = (40, 20, 0)
    resolution_mm: float = 2.0
    random_seed: int = 42
    multicontrast_syn_metric: str = "mattes"
    multicontrast_syn_sampling: int = 32

    @classmethod
    def from_config(cls, config: dict | None) -> RegistrationSettings:
        config = dict(config or {})
        known = {k: config[k] for k in cls.__dataclass_fields__ if k in config}
        if "reg_iterations" in known:
            known["reg_iterations"] = tuple(int(i) for i in known["reg_iterations"])
        return cls(**known)


@dataclass
class Registration:
    """Result of :func:`register_to_template`.

    Attributes
    ----------
    forward : list of str
        Transform files that pull template images onto the subject (``[warp, affine]``).
    inverse : list of str
        Transform files that pull subject images into the template (``[affine, warp]``), with
        ``inverse_invert`` flags.
    qc : dict
        ``ncc``: normalised cross-correlation of the registration image with the warped
        template inside the warped brain mask (1 = identical up to scale); ``seconds``.
    """

    forward: list[str]
    inverse: list[str]
    inverse_invert: list[bool]
    settings: RegistrationSettings
    qc: dict = field(default_factory=dict)


def _template_at(resolution_mm: float):
    import ants

    tpl = atlas.load_reference("template")
    img = to_ants(np.asarray(tpl.data), tpl.affine)
    if resolution_mm and resolution_mm > 1.0:
        img = ants.resample_image(img, (resolution_mm,) * 3, use_voxels=False, interp_type=0)
    return img


def register_to_template(image: np.ndarray, affine: np.ndarray, out_prefix: str | Path,
                         settings: RegistrationSettings | None = None,
                         mask: np.ndarray | None = None, contrast: str = "T1w") -> Registration:
    """Register a subject image (fixed) with the MNI152NLin2009cAsym T1 template (moving).

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The registration image (T1w, or a magnitude / contrast-matched image).
    affine : (4, 4) ndarray
        Its voxel → world (RAS, mm) matrix.
    out_prefix : path
        Where ANTs writes its transform files (``<prefix>0GenericAffine.mat``,
        ``<prefix>1Warp.nii.gz``, ``<prefix>1InverseWarp.nii.gz``).
    settings : RegistrationSettings, optional
    mask : (X, Y, Z) bool ndarray, optional
        Brain mask of the subject image (metric restricted to it).
    contrast : str
        ``T1w`` (same contrast as the template) or anything else (multi-contrast metric).

    Returns
    -------
    Registration
    """
    import ants

    settings = settings or RegistrationSettings()
    started = time.perf_counter()
    fixed = to_ants(image, affine)
    spacing = np.asarray(fixed.spacing)
    if settings.resolution_mm and spacing.min() < settings.resolution_mm - 1e-6:
        fixed = ants.resample_image(fixed, (settings.resolution_mm,) * 3, use_voxels=False,
                                    interp_type=0)
    moving = _template_at(settings.resolution_mm or float(spacing.min()))
    kwargs = {}
    if mask is not None:
        mask_img = to_ants(mask.astype(np.float32), affine)
        if mask_img.shape != fixed.shape:
            mask_img = ants.resample_image_to_target(mask_img, fixed, interp_type="nearestNeighbor")
        kwargs["mask"] = mask_img
    out_prefix = str(out_prefix)
    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    same_contrast = contrast == "T1w"
    result = ants.registration(
        fixed=fixed, moving=moving, type_of_transform=settings.transform,
        syn_metric=settings.syn_metric if same_contrast else settings.multicontrast_syn_metric,
        syn_sampling=(settings.syn_sampling if same_contrast
                      else settings.multicontrast_syn_sampling),
        reg_iterations=tuple(settings.reg_iterations), outprefix=out_prefix,
        random_seed=settings.random_seed, **kwargs)
    fwd = list(result["fwdtransforms"])
    inv = list(result["invtransforms"])
    invert = [path.endswith(".mat") for path in inv]
    reg = Registration(forward=fwd, inverse=inv, inverse_invert=invert, settings=settings)
    reg.qc = registration_qc(image, affine, reg)
    reg.qc["seconds"] = round(time.perf_counter() - started, 2)
    return reg


def _apply(reference_shape, reference_affine, moving: np.ndarray, moving_affine, transforms,
           interpolator: str) -> np.ndarray:
    import ants

    fixed = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    out = ants.apply_transforms(fixed=fixed, moving=to_ants(moving, moving_affine),
                                transformlist=list(transforms), interpolator=interpolator)
    return out.numpy()


def registration_qc(image: np.ndarray, affine: np.ndarray, reg: Registration) -> dict:
    """Similarity of the subject image and the template warped onto it (NCC in the brain)."""
    tpl = atlas.load_reference("template")
    warped = _apply(image.shape, affine, np.asarray(tpl.data), tpl.affine, reg.forward,
                    "linear")
    brain = warped > 0.1 * float(np.percentile(tpl.data[tpl.data > 0], 50))
    a = np.asarray(image, dtype=np.float64)[brain]
    b = warped[brain].astype(np.float64)
    if a.size < 10:
        return {"ncc": float("nan"), "brain_voxels": int(a.size)}
    a -= a.mean()
    b -= b.mean()
    ncc = float((a @ b) / np.sqrt((a @ a) * (b @ b)))
    return {"ncc": round(ncc, 4), "brain_voxels": int(a.size)}


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
    transforms : list of str
        :attr:`Registration.forward`.
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


def save_transforms(reg: Registration, forward_affine: Path, forward_warp: Path,
                    inverse_warp: Path) -> None:
    """Move ANTs' transform files to their BIDS-Derivatives names (atomic renames)."""
    affine_file = next(p for p in reg.forward if p.endswith(".mat"))
    warp_file = next((p for p in reg.forward if p.endswith(".nii.gz")), None)
    inv_warp = next((p for p in reg.inverse if p.endswith(".nii.gz")), None)
    for src, dst in ((affine_file, forward_affine), (warp_file, forward_warp),
                     (inv_warp, inverse_warp)):
        if src is None:
            continue
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def settings_dict(settings: RegistrationSettings) -> dict:
    out = asdict(settings)
    out["reg_iterations"] = list(settings.reg_iterations)
    return out


def scratch_dir(parent: str | Path) -> Path:
    """A private temporary folder for ANTs' files next to the outputs (same filesystem)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".ants-", dir=parent))
