"""Within-subject coregistration: the T1w onto the maps' reference image (rigid, ANTs).

A T1w normally lies on its own grid (1 mm sagittal MPRAGE) and was acquired minutes apart
from the GRE, so scanner coordinates disagree by the head's motion. The T1w is registered
rigidly (or affinely) to the maps' reference image — the first-echo GRE magnitude, else the
χ map, else the R2* map — with mutual information, starting from the scanner coordinates
(identity: both images come from one session). The transform maps the maps' world onto the
T1w's; appended to the template → T1w chain (:func:`with_coregistration`) it carries the
atlas straight onto the maps' grid, interpolated once.

QC (:func:`coregistration_qc`, limits per reference contrast in :data:`COREGISTRATION_LIMITS`):
normalised mutual information after registration, the fraction of the T1w's brain that lands
inside the reference's foreground, the size of the motion found (a same-session motion
above 20° or 30 mm means the optimiser went astray or the headers disagree), and whether the
T1w matches the reference's left-right mirror image better (a reversed axis, which no rigid
transform can undo).

References
----------
.. [1] Mattes D et al. (2003) PET-CT image registration in the chest using free-form
   deformations. IEEE Trans Med Imaging 22:120-128.
.. [2] Studholme C, Hill DLG, Hawkes DJ (1999) An overlap invariant entropy measure of 3D
   medical image alignment. Pattern Recognit 32:71-86.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..masks import chi_brain_mask, foreground_mask
from ..settings import RegistrationSettings
from .images import on_grid, to_ants
from .transforms import Registration

__all__ = ["COREGISTRATION_LIMITS", "COREGISTRATION_REFERENCES", "Coregistration",
           "coregistration_qc", "coregistration_record", "coregister", "mirrored",
           "normalised_mutual_information", "read_coregistration", "rigid_motion",
           "with_coregistration"]

#: The maps' reference image, in order of preference (first present wins).
COREGISTRATION_REFERENCES = ("MEGRE", "Chimap", "R2starmap")

#: QC limits per reference contrast: smallest normalised mutual information (Studholme; 1 =
#: independent, 2 = identical), smallest fraction of the T1w brain inside the reference's
#: foreground, largest rotation (degrees) and translation (mm) of the motion found.
COREGISTRATION_LIMITS: dict[str, dict[str, float]] = {
    "MEGRE": {"min_nmi": 1.05, "min_brain_inside": 0.9, "max_rotation_deg": 20.0,
              "max_translation_mm": 30.0},
    "default": {"min_nmi": 1.02, "min_brain_inside": 0.9, "max_rotation_deg": 20.0,
                "max_translation_mm": 30.0},
}

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Coregistration:
    """Result of :func:`coregister`.

    Attributes
    ----------
    forward : str
        ANTs transform file (ITK) that pulls T1w-space images onto the maps' grid (maps
        world → T1w world, LPS inside the file).
    inverse : str
        The inverse file (T1w world → maps world).
    matrix : (4, 4) ndarray
        The same mapping in RAS world coordinates (mm): ``x_T1w = matrix @ x_maps``.
    reference_kind : str
        ``MEGRE``, ``Chimap`` or ``R2starmap``.
    qc : dict
        :func:`coregistration_qc` plus ``seconds``.
    """

    forward: str
    inverse: str
    matrix: np.ndarray
    reference_kind: str
    qc: dict = field(default_factory=dict)


def rigid_motion(matrix: np.ndarray) -> tuple[float, float]:
    """Rotation angle (degrees) and translation (mm) of a 4×4 world mapping.

    The translation is measured at the world point (0, 0, 0) mm, near the head's centre for
    scanner coordinates.

    Parameters
    ----------
    matrix : (4, 4) ndarray
        World → world (mm).

    Returns
    -------
    rotation_deg, translation_mm : float
    """
    linear = np.asarray(matrix, dtype=float)[:3, :3]
    u, _, vt = np.linalg.svd(linear)  # the nearest rotation (affine option)
    rotation = u @ vt
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos))), float(np.linalg.norm(matrix[:3, 3]))


def _ras_matrix(transform) -> np.ndarray:
    """An ANTs affine transform (LPS physical space) as a 4×4 RAS world mapping."""
    params = np.asarray(transform.parameters, dtype=float)
    center = np.asarray(transform.fixed_parameters, dtype=float)
    linear = params[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = linear
    lps[:3, 3] = params[9:12] + center - linear @ center
    return _LPS @ lps @ _LPS


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Studholme's normalised mutual information (H(A) + H(B)) / H(A, B) of two samples.

    Parameters
    ----------
    a, b : (N,) ndarray
        Paired intensities (any units).
    bins : int
        Histogram bins per image (quantile-free: equal width between the 1st and 99th
        percentile).

    Returns
    -------
    float
        1 for independent images, 2 for identical ones; NaN with fewer than 100 samples.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 100:
        return math.nan
    ranges = [np.percentile(x, [1, 99]) for x in (a, b)]
    joint, _, _ = np.histogram2d(a, b, bins=bins, range=[r if r[1] > r[0] else (r[0], r[0] + 1)
                                                          for r in ranges])
    p = joint / max(joint.sum(), 1.0)

    def entropy(q):
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(p.sum(1)) + entropy(p.sum(0))) / max(entropy(p), 1e-12)


def _reference_mask(reference: np.ndarray, kind: str) -> np.ndarray | None:
    if kind == "Chimap":
        mask = chi_brain_mask(reference)
        return mask if mask.sum() >= 1000 else None
    return foreground_mask(reference)


def coregistration_qc(t1w: np.ndarray, t1w_affine: np.ndarray, reference: np.ndarray,
                      reference_affine: np.ndarray, forward: str, matrix: np.ndarray,
                      kind: str) -> dict:
    """QC of a coregistration on the reference's grid.

    Parameters
    ----------
    t1w : (X, Y, Z) ndarray
        The T1w (moving image).
    t1w_affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    reference : (x, y, z) ndarray
        The maps' reference image.
    reference_affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    forward : str
        The transform file (maps world → T1w world).
    matrix : (4, 4) ndarray
        The same mapping in RAS (mm).
    kind : str
        The reference's contrast (limits of :data:`COREGISTRATION_LIMITS`).

    Returns
    -------
    dict
        ``nmi``, ``brain_inside``, ``rotation_deg``, ``translation_mm`` and ``flag``
        (empty when all pass, else the reasons).
    """
    import ants

    ref_mask = _reference_mask(reference, kind)
    t1w_mask = foreground_mask(t1w)
    fixed = to_ants(np.zeros(reference.shape, np.float32), reference_affine)
    warped = ants.apply_transforms(fixed, to_ants(np.nan_to_num(t1w), t1w_affine), [forward],
                                   interpolator="linear").numpy()
    rotation, translation = rigid_motion(matrix)
    out = {"rotation_deg": round(rotation, 3), "translation_mm": round(translation, 3)}
    if ref_mask is None or t1w_mask is None:
        return {**out, "nmi": math.nan, "brain_inside": 0.0,
                "flag": "no foreground in the T1w or the reference image"}
    warped_mask = ants.apply_transforms(fixed, to_ants(t1w_mask.astype(np.float32), t1w_affine),
                                        [forward], interpolator="nearestNeighbor").numpy() > 0.5
    ref = np.nan_to_num(np.asarray(reference, dtype=np.float64))
    out["nmi"] = round(normalised_mutual_information(ref[ref_mask], warped[ref_mask]), 4)
    out["brain_inside"] = round(float((warped_mask & ref_mask).sum()
                                      / max(warped_mask.sum(), 1)), 4)
    limits = COREGISTRATION_LIMITS.get(kind, COREGISTRATION_LIMITS["default"])
    reasons = []
    if not out["nmi"] >= limits["min_nmi"]:
        reasons.append(f"NMI {out['nmi']:.3f} < {limits['min_nmi']}")
    if out["brain_inside"] < limits["min_brain_inside"]:
        reasons.append(f"T1w brain inside the {kind} foreground {out['brain_inside']:.2f} < "
                       f"{limits['min_brain_inside']}")
    if rotation > limits["max_rotation_deg"]:
        reasons.append(f"rotation {rotation:.1f}° > {limits['max_rotation_deg']}°")
    if translation > limits["max_translation_mm"]:
        reasons.append(f"translation {translation:.1f} mm > {limits['max_translation_mm']} mm")
    out["flag"] = "; ".join(reasons)
    return out


def _rigid(reference: np.ndarray, reference_affine: np.ndarray, ref_mask, t1w: np.ndarray,
           t1w_affine: np.ndarray, grid: float, settings: RegistrationSettings,
           prefix: Path) -> str:
    """One ANTs registration of the T1w (moving) to the reference (fixed); the transform."""
    import ants

    fixed_g = on_grid(to_ants(reference, reference_affine), grid)
    kwargs = {}
    if ref_mask is not None:
        mask_g = ants.resample_image_to_target(to_ants(ref_mask.astype(np.float32),
                                                       reference_affine), fixed_g,
                                               interp_type="nearestNeighbor")
        kwargs["mask"] = ants.morphology(mask_g, "dilate", 2)
    result = ants.registration(
        fixed=fixed_g, moving=on_grid(to_ants(t1w, t1w_affine), grid),
        type_of_transform=settings.coregistration_transform, initial_transform="Identity",
        aff_metric="mattes", aff_sampling=32, aff_random_sampling_rate=0.25,
        aff_iterations=(200, 100, 50), aff_shrink_factors=(4, 2, 1),
        aff_smoothing_sigmas=(2, 1, 0), outprefix=str(prefix), **kwargs)
    return str(result["fwdtransforms"][0])


def mirrored(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The affine of an image reflected left-right about its mask's centre (world x).

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel → world (RAS, mm).
    mask : (X, Y, Z) bool ndarray
        The image's foreground.

    Returns
    -------
    (4, 4) ndarray
        The same voxels placed as their left-right mirror image.
    """
    centre = (affine @ np.r_[np.argwhere(mask).mean(0), 1.0])[0]
    reflect = np.eye(4)
    reflect[0, 0], reflect[0, 3] = -1.0, 2.0 * centre
    return reflect @ affine


def coregister(t1w: np.ndarray, t1w_affine: np.ndarray, reference: np.ndarray,
               reference_affine: np.ndarray, scratch: str | Path,
               settings: RegistrationSettings | None = None, *,
               reference_kind: str = "MEGRE", mirror_check: bool = True) -> Coregistration:
    """Register the T1w (moving) to the maps' reference image (fixed), rigidly by default.

    Both images are resampled to ``settings.resolution_mm`` when finer (anti-aliased);
    the metric is Mattes mutual information restricted to the reference's foreground; the
    start is the scanner coordinates (identity). A rigid transform cannot undo a reflection,
    so with ``mirror_check`` the T1w is also registered (at ≥ 4 mm) to the reference's
    left-right mirror image: when it matches the mirror better (``mirror_nmi`` ≥ ``nmi``),
    one of the two headers has an axis reversed and the QC flags it.

    Parameters
    ----------
    t1w : (X, Y, Z) ndarray
        The T1w image (arbitrary units).
    t1w_affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    reference : (x, y, z) ndarray
        First-echo magnitude (a.u.), χ map (ppm) or R2* map (1/s) on the maps' grid.
    reference_affine : (4, 4) ndarray
        Its voxel → world matrix (RAS, mm).
    scratch : path
        Folder of the transform files (prefix ``coreg_``).
    settings : RegistrationSettings, optional
        ``coregistration_transform`` (``Rigid`` or ``Affine``), ``resolution_mm``,
        ``random_seed``.
    reference_kind : {"MEGRE", "Chimap", "R2starmap"}
    mirror_check : bool
        Compare with the mirror-image alignment (about 3 s more).

    Returns
    -------
    Coregistration
    """
    import ants

    settings = settings or RegistrationSettings()
    ants.config._random_seed = int(settings.random_seed)
    started = time.perf_counter()
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    reference = np.nan_to_num(np.asarray(reference, dtype=np.float32))
    t1w = np.nan_to_num(np.asarray(t1w, dtype=np.float32))
    ref_mask = _reference_mask(reference, reference_kind)
    if reference_kind == "Chimap" and ref_mask is not None:
        reference = np.where(ref_mask, reference, 0.0).astype(np.float32)
    spacing = np.sqrt((np.asarray(reference_affine)[:3, :3] ** 2).sum(0))
    grid = max(float(spacing.min()), float(settings.resolution_mm or 0.0))
    forward = _rigid(reference, reference_affine, ref_mask, t1w, t1w_affine, grid, settings,
                     scratch / "coreg_")
    transform = ants.read_transform(forward)
    inverse = str(scratch / "coreg_inverse.mat")
    ants.write_transform(transform.invert(), inverse)
    matrix = _ras_matrix(transform)
    qc = coregistration_qc(t1w, t1w_affine, reference, reference_affine, forward, matrix,
                           reference_kind)
    if mirror_check and ref_mask is not None:
        t0 = time.perf_counter()
        mirror_affine = mirrored(np.asarray(reference_affine, float), ref_mask)
        mirror = _rigid(reference, mirror_affine, ref_mask, t1w, t1w_affine, max(grid, 4.0),
                        settings, scratch / "coreg_mirror_")
        mirror_qc = coregistration_qc(t1w, t1w_affine, reference, mirror_affine, mirror,
                                      _ras_matrix(ants.read_transform(mirror)), reference_kind)
        qc["mirror_nmi"] = mirror_qc["nmi"]
        qc["mirror_seconds"] = round(time.perf_counter() - t0, 2)
        if qc["mirror_nmi"] >= qc["nmi"]:
            qc["flag"] = "; ".join(f for f in (qc["flag"], (
                f"the T1w matches the {reference_kind}'s left-right mirror image better "
                f"(NMI {qc['mirror_nmi']:.3f} vs {qc['nmi']:.3f}): an axis of one header is "
                "reversed")) if f)
    qc["seconds"] = round(time.perf_counter() - started, 2)
    qc["grid_mm"] = round(grid, 3)
    return Coregistration(forward=forward, inverse=inverse, matrix=matrix,
                          reference_kind=reference_kind, qc=qc)


def read_coregistration(path: str | Path, scratch: str | Path) -> tuple[str, str]:
    """A saved coregistration (ITK text file) and its inverse written to ``scratch``.

    Parameters
    ----------
    path : path
        The saved transform (maps world → T1w world).
    scratch : path
        Folder for the inverse file.

    Returns
    -------
    forward, inverse : str
    """
    import ants

    inverse = str(Path(scratch) / "coreg_inverse_read.mat")
    ants.write_transform(ants.read_transform(str(path)).invert(), inverse)
    return str(path), inverse


def with_coregistration(reg: Registration, forward: str, inverse: str) -> Registration:
    """The template → T1w registration extended onto the maps' grid by a coregistration.

    Parameters
    ----------
    reg : Registration
        Registration of the T1w with the template (its QC and field stay those of the T1w).
    forward, inverse : str
        The coregistration's files (maps world → T1w world, and back).

    Returns
    -------
    Registration
        ``forward`` pulls template images onto the maps' grid, ``inverse`` pulls maps-grid
        images into the template; no composed field yet (the grids differ:
        :func:`brainiron.registration.maps_grid_warp` composes one on the maps' grid).

    Notes
    -----
    ANTs applies a transform list to a point of the output grid first-listed first (its
    registrations list ``[Warp, Affine]``: the warp lives on the fixed grid), so a maps-grid
    point goes through the coregistration first: ``[coregistration, *template chain]``
    (checked against warping in two steps in ``tests/test_coregistration.py``).
    """
    return replace(reg, forward=[forward, *reg.forward], inverse=[*reg.inverse, inverse],
                   forward_field=None, warp=None, shape=None, affine=None)


def coregistration_record(result: Coregistration, t1w_path: str | Path,
                          reference_path: str | Path, settings: RegistrationSettings) -> dict:
    """The coregistration's QC record (``desc-coregistration_qc.json``).

    Parameters
    ----------
    result : Coregistration
    t1w_path, reference_path : path
        The moving (T1w) and fixed (maps' reference) images.
    settings : RegistrationSettings

    Returns
    -------
    dict
        Images, transform type, the RAS matrix (maps world → T1w world, mm), the QC of
        :func:`coregistration_qc` and its ``flag``.
    """
    return {
        "moving_image": Path(t1w_path).name,
        "reference_image": Path(reference_path).name,
        "reference_kind": result.reference_kind,
        "transform": settings.coregistration_transform,
        "metric": "Mattes mutual information",
        "matrix_ras": np.round(result.matrix, 6).tolist(),
        "matrix_direction": "x_T1w = matrix_ras @ x_maps (world RAS, mm)",
        **result.qc,
    }
