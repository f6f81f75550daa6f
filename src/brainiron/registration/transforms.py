"""Transforms of a registration: the chain, its composed field, saving, and warping with it.

ANTs' forward transforms pull template-space images (atlas labels) onto the subject's grid.
:func:`compose_forward` composes the chain into one displacement field on a grid (exact at
its voxel centres); :func:`field_transform` loads it once as an in-memory transform
(:class:`FieldWarp`) that the warping functions accept instead of the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import atlas
from ..masks import template_brain_mask
from ..settings import RegistrationSettings
from .images import resample_antialiased, to_ants
from .templates import template_image

__all__ = [
    "FieldWarp",
    "Registration",
    "compose_forward",
    "crop_box",
    "cropped_affine",
    "field_transform",
    "forward_warp",
    "save_transforms",
    "warp_brain_mask",
    "warp_image",
    "warp_labels",
    "warp_probabilities",
]


@dataclass
class Registration:
    """Result of :func:`brainiron.registration.register`.

    Attributes
    ----------
    forward : list of str
        ANTs transforms that pull template images onto the subject's grid.
    inverse : list of str
        ANTs transforms that pull subject images into the template (no inversion flags
        needed).
    settings : RegistrationSettings
    qc : dict
        ``ncc`` (normalised cross-correlation of the registration image with the warped
        template inside the brain; 1 = identical up to scale), stage times in seconds, grids
        (:func:`brainiron.registration.registration_qc`).
    forward_field : str, optional
        The forward chain composed into one displacement field on the subject's grid.
    warp : FieldWarp, optional
        ``forward_field`` loaded once (:func:`forward_warp`).
    template : {"T1w", "chi"}
        The template the image was registered with.
    shape, affine : tuple of int, (4, 4) ndarray, optional
        The registration image's grid (that of ``forward_field``).
    """

    forward: list[str]
    inverse: list[str]
    settings: RegistrationSettings
    qc: dict = field(default_factory=dict)
    forward_field: str | None = None
    warp: FieldWarp | None = field(default=None, repr=False)
    template: str = "T1w"
    shape: tuple[int, ...] | None = None
    affine: np.ndarray | None = field(default=None, repr=False)


def compose_forward(reg: Registration, reference_shape, reference_affine,
                    workdir: str | Path, name: str = "forward_maps_") -> str:
    """The forward chain composed into one displacement field on a grid (file path).

    The field is exact at the grid's voxel centres, so warping onto that grid (or any box of
    it) through the field gives what the chain gives.

    Parameters
    ----------
    reg : Registration
    reference_shape, reference_affine : tuple of int, (4, 4) ndarray
        The grid (voxel → world, RAS, mm).
    workdir : path
        Folder of the field file.
    name : str
        The file's prefix in ``workdir`` (one per grid, so that fields of two grids do not
        overwrite each other).

    Returns
    -------
    str
        Path of the displacement field (NIfTI, mm).
    """
    import ants

    ref = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    return ants.apply_transforms(fixed=ref, moving=template_image("T1w"),
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

    Parameters
    ----------
    field_path : path
        The displacement field.
    chain : list of str, optional
        The transform files it was composed from (default: the field file itself).

    Returns
    -------
    FieldWarp
        Accepted as ``transforms`` by :func:`warp_labels`, :func:`warp_probabilities`,
        :func:`warp_brain_mask` and :func:`warp_image`.
    """
    import ants

    field_img = ants.image_read(str(field_path))
    return FieldWarp(path=str(field_path),
                     transform=ants.transform_from_displacement_field(field_img),
                     chain=list(chain) if chain else [str(field_path)])


def forward_warp(reg: Registration) -> FieldWarp | list[str]:
    """The registration's composed forward field, loaded on first use; else its chain."""
    if not reg.forward_field:
        return list(reg.forward)
    if reg.warp is None or reg.warp.path != str(reg.forward_field):
        reg.warp = field_transform(reg.forward_field, reg.forward)
    return reg.warp


def warp_image(reference_shape, reference_affine, moving: np.ndarray, moving_affine,
               transforms, interpolator: str) -> np.ndarray:
    """Pull ``moving`` onto the reference grid through a chain of files or a loaded transform.

    Parameters
    ----------
    reference_shape, reference_affine : tuple of int, (4, 4) ndarray
        The output grid (voxel → world, RAS, mm).
    moving : ndarray
        The image to warp (as float32).
    moving_affine : (4, 4) ndarray
        Its voxel → world matrix.
    transforms : list of str or FieldWarp
        ANTs transform files (``[]`` = identity) or a loaded field.
    interpolator : str
        ANTs interpolator (``linear``, ``nearestNeighbor``, ``genericLabel``).

    Returns
    -------
    ndarray
        On the reference grid (float32).
    """
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


def crop_box(labels: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of a label image's nonzero voxels plus ``margin`` voxels, clipped.

    Parameters
    ----------
    labels : ndarray
        Label image with at least one nonzero voxel.
    margin : int
        Voxels added on each side.

    Returns
    -------
    tuple of slice
    """
    ijk = np.argwhere(labels > 0)
    lo = np.maximum(ijk.min(0) - margin, 0)
    hi = np.minimum(ijk.max(0) + margin + 1, labels.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def cropped_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The voxel → world matrix of a box of a grid (``affine`` shifted to the box's start)."""
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
    box = crop_box(np.asarray(labels.data), margin=4)
    out = warp_image(reference_shape, reference_affine,
                     np.asarray(labels.data[box], dtype=np.float32),
                     cropped_affine(labels.affine, box), transforms, "genericLabel")
    return np.rint(out).astype(np.int16)


def warp_brain_mask(reference_shape, reference_affine, transforms) -> np.ndarray:
    """The template's brain mask on the subject's grid.

    Parameters
    ----------
    reference_shape, reference_affine
        The subject grid.
    transforms : list of str or FieldWarp

    Returns
    -------
    (X, Y, Z) uint8 ndarray
        1 inside the brain (nearest neighbour).
    """
    mask, mask_affine = template_brain_mask()
    out = warp_image(reference_shape, reference_affine, mask.astype(np.float32), mask_affine,
                     transforms, "nearestNeighbor")
    return (out > 0.5).astype(np.uint8)


def warp_probabilities(reference_shape, reference_affine, transforms, label_indices,
                       native_labels: np.ndarray,
                       labels: atlas.ReferenceImage | None = None
                       ) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Partial-volume probability of each label on the subject's grid.

    Each label's one-hot template image is blurred to the subject's voxel size (Gaussian,
    FWHM = voxel size: the fraction of a subject voxel the label covers) and interpolated
    linearly through the transforms. Only a box around the native labels is kept.

    Parameters
    ----------
    reference_shape, reference_affine
        The subject grid.
    transforms : list of str or FieldWarp
    label_indices : sequence of int
        The labels, in the order of the output's last axis.
    native_labels : (X, Y, Z) integer ndarray
        The labels on the subject grid (they set the box).
    labels : ReferenceImage, optional
        Template-space labels (default :func:`brainiron.atlas.template_labels`).

    Returns
    -------
    probabilities : (x, y, z, K) uint8 ndarray
        Probability × 255 for each of ``label_indices``.
    box : tuple of slice
        Where the crop lies in the subject grid.
    """
    labels = labels or atlas.template_labels()
    data = np.asarray(labels.data)
    tbox = crop_box(data, margin=8)
    crop_affine = cropped_affine(labels.affine, tbox)
    native_box = crop_box(native_labels, margin=2) if native_labels.any() else tuple(
        slice(0, s) for s in reference_shape)
    box_shape = tuple(s.stop - s.start for s in native_box)
    box_affine = cropped_affine(reference_affine, native_box)
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
        p = warp_image(box_shape, box_affine, onehot, crop_affine, transforms, "linear")
        out[..., k] = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
    return out, native_box


def save_transforms(reg: Registration, reference_shape, reference_affine, forward_path: Path,
                    inverse_path: Path, workdir: Path, inverse_grid_mm: float = 2.0,
                    forward_field: str | Path | None = None) -> None:
    """Write the transforms as two displacement fields (BIDS ``_xfm.nii.gz``, float32).

    Either file works as a one-element ``transformlist`` of :func:`ants.apply_transforms`, at
    any output grid.

    Parameters
    ----------
    reg : Registration
    reference_shape, reference_affine
        The subject grid (the maps' grid) of the forward field.
    forward_path : path
        Field on the subject's grid; pulls template images onto it (``from-MNI…
        _to-individual``).
    inverse_path : path
        Field on the template at ``inverse_grid_mm``; pulls subject images into
        MNI152NLin2009cAsym.
    workdir : path
        Folder for intermediate files.
    inverse_grid_mm : float
        Voxel size (mm) of the inverse field's grid.
    forward_field : path, optional
        The forward chain already composed on the subject's grid (:func:`compose_forward`),
        reused as is.
    """
    import ants
    import nibabel as nib

    from ..io import save_nifti

    reference = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    inverse_field = ants.apply_transforms(
        fixed=resample_antialiased(template_image("T1w"), inverse_grid_mm), moving=reference,
        transformlist=list(reg.inverse), compose=str(Path(workdir) / "inverse_template_"))
    if forward_field is None:
        forward_field = compose_forward(reg, reference_shape, reference_affine, workdir,
                                        name="forward_saved_")
    for composed, dst in ((inverse_field, inverse_path), (forward_field, forward_path)):
        field_img = nib.load(composed)
        hdr = field_img.header.copy()
        save_nifti(np.asarray(field_img.dataobj, dtype=np.float32), dst, field_img.affine,
                   header=hdr, dtype=np.float32, intent="vector")
