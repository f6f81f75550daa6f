"""The atlas on the maps' grid: what the register rule derives from a registration.

:func:`native_atlas` composes the forward chain once on the maps' grid, warps the atlas
labels, segments the dentate from the contrast map inside the warped search region and merges
it into the labels, warps the partial-volume probabilities (cropped to a box around the
nuclei; the contrast-segmented labels get probability 1 inside their label) and the
template's brain mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import atlas
from ..dentate import search_labels, segment_dentate
from .transforms import (
    FieldWarp,
    Registration,
    compose_forward,
    cropped_affine,
    field_transform,
    forward_warp,
    warp_brain_mask,
    warp_image,
    warp_labels,
    warp_probabilities,
)

__all__ = ["NativeAtlas", "label_lookup", "maps_grid_warp", "native_atlas", "native_tissue_mask",
           "probseg_header", "probseg_sidecar", "segmented_probabilities"]


@dataclass
class NativeAtlas:
    """The atlas on the maps' grid (:func:`native_atlas`).

    Attributes
    ----------
    labels : (X, Y, Z) int16 ndarray
        Atlas labels with the contrast-segmented dentate.
    probabilities : (x, y, z, K) uint8 ndarray
        Probability × 255 of each of ``label_indices`` in ``box``.
    box : tuple of slice
        Where ``probabilities`` lies in the maps' grid.
    box_affine : (4, 4) ndarray
        Voxel → world (RAS, mm) of ``probabilities``.
    brain_mask : (X, Y, Z) uint8 ndarray
        The template's brain on the maps' grid.
    dentate : dict
        Per hemisphere, the dentate's segmentation (:func:`brainiron.dentate.segment_dentate`).
    lookup : DataFrame
        ``index``, ``name`` (``region_hemisphere``) of every atomic label.
    label_voxels : dict
        Voxels of each label name in ``labels``.
    timing : dict
        Stage times (s): ``registration`` and each stage here.
    forward_field : str
        The forward chain composed on the maps' grid (displacement field file).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    box: tuple[slice, ...]
    box_affine: np.ndarray
    brain_mask: np.ndarray
    dentate: dict
    lookup: pd.DataFrame
    label_voxels: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float | None] = field(default_factory=dict)
    forward_field: str = ""

    @property
    def label_indices(self) -> list[int]:
        """The labels of the probabilities' last axis, in order."""
        return [int(i) for i in self.lookup["index"]]


def label_lookup() -> pd.DataFrame:
    """Every atomic label of the region table: ``index``, ``name`` (``region_hemisphere``)."""
    table = atlas.region_table()
    atomic = table[(table["kind"] == "atomic")]
    lookup = atomic[["index", "region", "hemisphere"]].copy()
    lookup["name"] = lookup["region"] + "_" + lookup["hemisphere"]
    return lookup[["index", "name"]]


def maps_grid_warp(result: Registration, shape, affine, scratch: str | Path
                   ) -> tuple[str, FieldWarp]:
    """The forward chain composed on the maps' grid and loaded in memory.

    The registration's own field when the grids coincide, else a new one in ``scratch``.

    Returns
    -------
    field_path : str
    warp : FieldWarp
    """
    same_grid = (result.shape is not None and tuple(result.shape) == tuple(shape)
                 and np.allclose(result.affine, affine, atol=1e-5))
    if same_grid and result.forward_field:
        return result.forward_field, forward_warp(result)
    field_path = compose_forward(result, shape, affine, scratch)
    return field_path, field_transform(field_path, result.forward)


def segmented_probabilities(probabilities: np.ndarray, box: tuple[slice, ...],
                            labels: np.ndarray, segmented: np.ndarray, indices) -> None:
    """Probability 1 (255) inside, 0 outside, for each label segmented from contrast.

    Parameters
    ----------
    probabilities : (x, y, z, K) uint8 ndarray
        Changed in place.
    box : tuple of slice
        Where ``probabilities`` lies in ``labels``.
    labels : (X, Y, Z) integer ndarray
        The final labels.
    segmented : (X, Y, Z) integer ndarray
        The contrast-segmented labels (0 elsewhere).
    indices : sequence of int
        The labels of the last axis.
    """
    for k, index in enumerate(indices):
        if index in set(np.unique(segmented)) - {0}:
            probabilities[..., k] = np.where(labels[box] == index, 255, 0).astype(np.uint8)


def native_atlas(result: Registration, shape, affine, contrast_values: np.ndarray,
                 contrast_kind: str, scratch: str | Path) -> NativeAtlas:
    """Atlas labels, probabilities, dentate and brain mask on the maps' grid.

    Parameters
    ----------
    result : Registration
        The subject's registration (:func:`brainiron.registration.register`).
    shape : tuple of int
        The maps' grid.
    affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    contrast_values : (X, Y, Z) ndarray
        The map the dentate is segmented on, on that grid: χ (ppm) or R2* (1/s).
    contrast_kind : {"Chimap", "R2starmap"}
        Which map ``contrast_values`` is.
    scratch : path
        Folder for the composed field when the maps' grid is not the registration image's.

    Returns
    -------
    NativeAtlas
    """
    affine = np.asarray(affine, dtype=float)
    timing: dict[str, float | None] = {"registration": result.qc.get("seconds")}
    t0 = time.perf_counter()
    # The chain composed once on the maps' grid and held in memory: probabilities and the
    # brain mask read no transform file; labels use the chain (no in-memory genericLabel).
    field_path, warp = maps_grid_warp(result, shape, affine, scratch)
    timing["compose_field"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    labels = warp_labels(shape, affine, warp)
    search = warp_labels(shape, affine, warp, search_labels())
    timing["warp_labels"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    dentate, dentate_info = segment_dentate(contrast_values, search, voxel_mm3, contrast_kind)
    free = labels == 0
    labels[free] = dentate[free]
    timing["dentate"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    lookup = label_lookup()
    indices = [int(i) for i in lookup["index"]]
    probs, box = warp_probabilities(shape, affine, warp, indices, labels)
    segmented_probabilities(probs, box, labels, dentate, indices)
    brain = warp_brain_mask(shape, affine, warp)
    timing["warp_probabilities_and_mask"] = round(time.perf_counter() - t0, 2)
    voxels = {name: int((labels == i).sum())
              for i, name in zip(lookup["index"], lookup["name"], strict=True)}
    return NativeAtlas(labels=labels, probabilities=probs, box=box,
                       box_affine=cropped_affine(affine, box), brain_mask=brain,
                       dentate=dentate_info, lookup=lookup.reset_index(drop=True),
                       label_voxels=voxels, timing=timing, forward_field=str(field_path))


def native_tissue_mask(shape, affine, transforms, tissue: str = "CSF",
                       min_fraction: float = 0.5) -> np.ndarray:
    """The voxels of the subject's grid made mostly of one tissue class of the template.

    The class's one-hot image (:func:`brainiron.atlas.template_tissues`, 1 mm) is blurred
    to the subject's voxel size (Gaussian, FWHM = voxel size, as the label probabilities)
    and warped linearly: the fraction of each subject voxel the class covers.

    Parameters
    ----------
    shape, affine : tuple of int, (4, 4) ndarray
        The subject grid (voxel → world, RAS, mm).
    transforms : list of str or FieldWarp
        The forward chain, e.g. ``[<from-MNI…_to-individual_mode-image_xfm.nii.gz>]``.
    tissue : {"CSF", "GM", "WM"}
        The class (:data:`brainiron.atlas.TISSUE_CLASSES`).
    min_fraction : float
        Least fraction (0-1) of the voxel the class must cover.

    Returns
    -------
    (X, Y, Z) bool ndarray
    """
    tissues = atlas.template_tissues()
    index = {name: i for i, name in atlas.TISSUE_CLASSES.items()}[tissue]
    onehot = (np.asarray(tissues.data) == index).astype(np.float32)
    voxel = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(0))
    template_voxel = np.sqrt((tissues.affine[:3, :3] ** 2).sum(0))
    sigma = voxel.mean() / 2.3548 / template_voxel
    if sigma.max() > 0.3:
        onehot = ndimage.gaussian_filter(onehot, sigma)
    fraction = warp_image(tuple(shape), affine, onehot, tissues.affine, transforms, "linear")
    return fraction >= min_fraction


def probseg_header():
    """NIfTI header of the uint8 probabilities: scale 1/255 (stored 0-255, read 0-1)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_slope_inter(1.0 / 255.0, 0.0)
    return header


def probseg_sidecar(native: NativeAtlas) -> dict:
    """The JSON sidecar of the probabilities (``_probseg.json``)."""
    return {
        "Description": "Partial-volume probability of each atlas label on the subject's grid "
                       "(one volume per label, in LabelIndices order); cropped to a box "
                       "around the nuclei: the affine places it in the subject grid.",
        "LabelIndices": native.label_indices,
        "LabelNames": list(native.lookup["name"]),
        "CropStartVoxel": [s.start for s in native.box],
        "Units": "probability (0-1)",
    }
