"""χ of the realistic phantom: regional values from a cited table, veins, white-matter
heterogeneity, dipole-shaped streaking, an eroded mask and two reconstruction flavours.

Regional χ does not come from the iron norms and calibrations brainiron's χ template is
built from (:mod:`brainiron.registration.templates`), but from ``phantom_realistic.tsv``:
approximate typical 3 T in-vivo values (CSF reference) with their sources. Iron-rich nuclei
take ``χ_table · Fe(subject) / Fe(norm at chi_table_age)`` (so age, group and the subject's
draw move χ with iron while the contrast between regions is the table's); the other tissues
take ``χ_table + chi_sd · N(0, 1)``.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import atlas, norms
from .geometry import smooth_field

__all__ = ["dipole_streaks", "eroded_mask", "rasterize_veins", "realistic_table",
           "reconstruct", "subject_chi", "vein_curves", "wm_field"]

#: Fixed veins (MNI mm polylines, radius mm): a straight-sinus-like tube, the internal
#: cerebral veins over the thalami and the thalamostriate veins along the lateral ventricles.
_FIXED_VEINS = {
    "straight_sinus": ([(0.0, -46.0, 6.0), (0.0, -66.0, 3.0), (0.0, -86.0, -2.0)], 2.5),
    "internal_cerebral_L": ([(-3.0, -4.0, 15.0), (-3.0, -22.0, 14.0), (-2.0, -40.0, 9.0)], 1.2),
    "internal_cerebral_R": ([(3.0, -4.0, 15.0), (3.0, -22.0, 14.0), (2.0, -40.0, 9.0)], 1.2),
    "thalamostriate_L": ([(-17.0, 4.0, 21.0), (-12.0, 0.0, 19.0), (-5.0, -5.0, 15.0)], 1.0),
    "thalamostriate_R": ([(17.0, 4.0, 21.0), (12.0, 0.0, 19.0), (5.0, -5.0, 15.0)], 1.0),
}


@functools.cache
def realistic_table() -> pd.DataFrame:
    """``phantom_realistic.tsv``: χ (ppm), its SD, T1w intensity per tissue, with sources."""
    return norms.read_data_table("phantom_realistic.tsv").set_index("tissue")


def subject_chi(lut: pd.DataFrame, table_age: float, rng: np.random.Generator) -> np.ndarray:
    """Regional χ (ppm) of one subject, one value per row of ``lut``.

    Parameters
    ----------
    lut : DataFrame
        :func:`brainiron.phantom.tissues.tissue_lut` rows (``region``, ``iron_mg_per_kg``).
    table_age : float
        Age (years) the table's values stand for.
    rng : numpy.random.Generator
        Draws the non-iron tissues' deviation.

    Returns
    -------
    (len(lut),) ndarray
        χ in ppm.
    """
    table = realistic_table()
    tissues = norms.phantom_tissues()
    out = np.empty(len(lut))
    for i, row in enumerate(lut.itertuples()):
        lit = table.loc[row.region]
        if lit["chi_scales_with_iron"] == "yes":
            t = tissues.loc[row.region]
            ref = float(norms.expected_iron(t["norm_region"], table_age)) * t["relative_to_norm"]
            out[i] = lit["chi_ppm"] * row.iron_mg_per_kg / ref
        else:
            out[i] = lit["chi_ppm"] + lit["chi_sd_ppm"] * rng.standard_normal()
    return out


@functools.cache
def _brain_depth() -> np.ndarray:
    """Depth (mm) inside the template's brain mask (1 mm grid)."""
    tpl = atlas.load_reference("template")
    return ndimage.distance_transform_edt(tpl.data > 0).astype(np.float32)


def _cortical_walks(n: int, rng: np.random.Generator, steps: int = 45) -> np.ndarray:
    """``n`` smooth random walks (n, steps, 3), template voxels, held at 3-6 mm depth."""
    depth = _brain_depth()
    tpl = atlas.load_reference("template")
    z_mni = tpl.affine[2, 2] * np.arange(depth.shape[2]) + tpl.affine[2, 3]
    shell = (depth >= 3) & (depth <= 5) & (z_mni > -15)[None, None, :]
    cand = np.argwhere(shell)
    p = cand[rng.choice(len(cand), n, replace=False)].astype(float)
    target = rng.uniform(3.0, 6.0, n)
    eye = np.eye(3)

    def normal(q):
        g = np.stack([ndimage.map_coordinates(depth, (q + e).T, order=1, mode="nearest")
                      - ndimage.map_coordinates(depth, (q - e).T, order=1, mode="nearest")
                      for e in eye], 1)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)

    d = rng.standard_normal((n, 3))
    path = np.empty((n, steps, 3))
    for s in range(steps):
        nrm = normal(p)
        d = d + 0.35 * rng.standard_normal((n, 3))
        d -= (d * nrm).sum(1, keepdims=True) * nrm
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
        p = p + d
        for _ in range(2):
            now = ndimage.map_coordinates(depth, p.T, order=1, mode="nearest")
            p = p + (target - now)[:, None] * normal(p)
        path[:, s] = p
    return path


def vein_curves(n_cortical: int, rng: np.random.Generator) -> list[dict]:
    """The subject's veins: polylines in MNI mm, radius (mm), χ (ppm) and a kind.

    Parameters
    ----------
    n_cortical : int
        Random cortical veins: smooth walks 3-6 mm under the brain's surface, above
        z = −15 mm, 45 mm long, radius 0.8-1.6 mm.
    rng : numpy.random.Generator
        Draws the walks, radii and each vein's χ (uniform in the table's
        ``chi_ppm ± 2 chi_sd_ppm`` of ``vein``: 0.25-0.5 ppm).

    Returns
    -------
    list of dict
        ``kind, points_mni (K, 3), radius_mm, chi_ppm``.
    """
    vein = realistic_table().loc["vein"]
    lo, hi = vein["chi_ppm"] - 2 * vein["chi_sd_ppm"], vein["chi_ppm"] + 2 * vein["chi_sd_ppm"]
    out = [{"kind": kind, "points_mni": np.asarray(pts), "radius_mm": r}
           for kind, (pts, r) in _FIXED_VEINS.items()]
    if n_cortical:
        tpl = atlas.load_reference("template").affine
        for walk in _cortical_walks(n_cortical, rng):
            out.append({"kind": "cortical", "points_mni": walk @ tpl[:3, :3].T + tpl[:3, 3],
                        "radius_mm": float(rng.uniform(0.8, 1.6))})
    for v in out:
        v["chi_ppm"] = float(rng.uniform(lo, hi))
    return out


def _densify(points: np.ndarray, step: float) -> np.ndarray:
    seg = np.diff(points, axis=0)
    n = np.maximum(1, np.ceil(np.linalg.norm(seg, axis=1) / step).astype(int))
    parts = [points[i] + np.outer(np.arange(n[i]) / n[i], seg[i]) for i in range(len(seg))]
    return np.vstack([*parts, points[-1:]])


def rasterize_veins(world: np.ndarray, inside: np.ndarray, veins_world: list[tuple],
                    voxel_mm) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume fraction and χ of veins at voxel centres.

    Parameters
    ----------
    world : (N, 3) ndarray
        World coordinates of the voxels (mm).
    inside : (N,) bool ndarray
        Voxels that may hold a vein (others get fraction 0).
    veins_world : list of (points (K, 3) mm, radius mm, χ ppm)
        The veins in this world.
    voxel_mm : 3 floats
        Voxel size; the fraction ramps over one (geometric-mean) voxel edge:
        ``clip((r − d) / h + 1/2, 0, 1)``, ``d`` the distance to the centre line.

    Returns
    -------
    fraction, chi : (N,) float32 ndarrays
        Vein fraction (0-1) and the χ of the nearest vein (ppm, 0 where fraction is 0).
    """
    h = float(np.prod(voxel_mm)) ** (1 / 3)
    step = 0.25 * min(min(voxel_mm), 1.0)
    pts, rad, chi = [], [], []
    for points, r, c in veins_world:
        dense = _densify(np.asarray(points, float), step)
        pts.append(dense)
        rad.append(np.full(len(dense), r))
        chi.append(np.full(len(dense), c))
    pts, rad, chi = np.vstack(pts), np.concatenate(rad), np.concatenate(chi)
    fraction = np.zeros(len(world), np.float32)
    value = np.zeros(len(world), np.float32)
    idx = np.flatnonzero(inside)
    dist, near = cKDTree(pts).query(world[idx], distance_upper_bound=rad.max() + h)
    hit = np.isfinite(dist)
    f = np.clip((rad[near[hit]] - dist[hit]) / h + 0.5, 0.0, 1.0)
    fraction[idx[hit]] = f
    value[idx[hit]] = np.where(f > 0, chi[near[hit]], 0.0)
    return fraction, value


def wm_field(shape, voxel_mm, wm: np.ndarray, sd: float, rng: np.random.Generator,
             scale_mm: float = 15.0) -> np.ndarray:
    """A smooth random field with mean 0 and SD ``sd`` over ``wm`` (0 elsewhere).

    Parameters
    ----------
    shape, voxel_mm : grid shape and voxel size (mm)
    wm : bool ndarray
        White-matter voxels.
    sd : float
        Target SD over ``wm`` (the map's unit).
    rng : numpy.random.Generator
    scale_mm : float
        Spacing (mm) of the random control values (the field's correlation length).

    Returns
    -------
    float32 ndarray
    """
    out = np.zeros(shape, np.float32)
    if sd <= 0 or not wm.any():
        return out
    n_ctrl = tuple(int(max(4, np.ceil(s * v / scale_mm) + 1)) for s, v in zip(shape, voxel_mm,
                                                                                strict=True))
    field = smooth_field(shape, n_ctrl, rng)[0]
    vals = field[wm]
    out[wm] = sd * (vals - vals.mean()) / max(float(vals.std()), 1e-12)
    return out


def dipole_streaks(shape, affine: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                   reg: float = 0.005) -> np.ndarray:
    """Streaking noise: white noise through a regularised inverse dipole kernel (SD 1).

    ``K = D / (D² + reg)``, ``D = 1/3 − (k·b0)² / |k|²`` with ``b0`` the world z axis in
    voxel axes: the noise is amplified near the magic cone, so the field streaks at the
    dipole's angles to B0 as inversion errors do; a Gaussian low-pass (σ = 1/4 of Nyquist)
    keeps the streaks a few voxels wide. Mean 0 and SD 1 over ``mask``; 0 outside.

    Parameters
    ----------
    shape : tuple of int
    affine : (4, 4) ndarray
        The grid's voxel → world (B0 along world z).
    mask : bool ndarray
    rng : numpy.random.Generator
    reg : float
        Regularisation of the inverse kernel (dimensionless).

    Returns
    -------
    float32 ndarray
    """
    vs = np.sqrt((affine[:3, :3] ** 2).sum(0))
    b0 = (affine[:3, :3] / vs).T @ np.array([0.0, 0.0, 1.0])
    k = np.meshgrid(*[np.fft.fftfreq(n, d=v) for n, v in zip(shape, vs, strict=True)],
                    indexing="ij", sparse=True)
    k2 = sum(ki ** 2 for ki in k)
    kb = sum(ki * bi for ki, bi in zip(k, b0, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(k2 > 0, 1.0 / 3.0 - kb ** 2 / k2, 0.0)
    nyq = 0.5 / vs.max()
    kernel = d / (d ** 2 + reg) * np.exp(-k2 / (2 * (0.25 * nyq) ** 2))
    noise = np.fft.ifftn(np.fft.fftn(rng.standard_normal(shape)) * kernel).real
    out = np.zeros(shape, np.float32)
    if mask.any():
        vals = noise[mask]
        out[mask] = (vals - vals.mean()) / max(float(vals.std()), 1e-12)
    return out


def eroded_mask(brain: np.ndarray, voxel_mm, erosion_mm: float) -> np.ndarray:
    """Voxels deeper than ``erosion_mm`` inside ``brain`` (distance in mm)."""
    if erosion_mm <= 0:
        return brain.copy()
    return ndimage.distance_transform_edt(brain, sampling=voxel_mm) > erosion_mm


def reconstruct(chi_true: np.ndarray, streaks: np.ndarray, mask: np.ndarray, variant: str,
                voxel_mm, noise_ppm: float, streak_ppm: float, fwhm_voxels: float,
                contrast: float, rng: np.random.Generator) -> np.ndarray:
    """The χ map a reconstruction would give: ``tv`` sharp or ``l2`` smooth.

    * ``tv``: ``chi_true`` + streaks at half ``streak_ppm`` + white noise ``noise_ppm``
      (piecewise constant up to the veins and the white-matter field);
    * ``l2``: (``chi_true`` + streaks + noise) blurred by a Gaussian of FWHM
      ``fwhm_voxels`` × the smallest voxel edge (isotropic in mm), times ``contrast``.

    Parameters
    ----------
    chi_true : float ndarray
        The noiseless χ (ppm).
    streaks : float ndarray
        :func:`dipole_streaks` (SD 1).
    mask : bool ndarray
        The map's support (values outside are set by the caller).
    variant : str
        ``tv`` or ``l2``.
    voxel_mm : 3 floats
    noise_ppm, streak_ppm, fwhm_voxels, contrast : float
    rng : numpy.random.Generator

    Returns
    -------
    float32 ndarray
        χ in ppm (not masked).
    """
    noise = noise_ppm * rng.standard_normal(chi_true.shape).astype(np.float32) * mask
    if variant == "tv":
        return (chi_true + 0.5 * streak_ppm * streaks + noise).astype(np.float32)
    sigma_mm = fwhm_voxels * min(voxel_mm) / (2 * np.sqrt(2 * np.log(2)))
    blurred = ndimage.gaussian_filter(chi_true + streak_ppm * streaks + noise,
                                      sigma_mm / np.asarray(voxel_mm, float))
    return (contrast * blurred).astype(np.float32)
