"""The phantom subjects' native grids and their true transforms to the template.

Each subject's native space is a random affine (rotations, translations, scaling) composed
with a smooth random displacement field, ``x_MNI = A · (x + u(x))`` (mm), sampled on the
subject's own voxel grid (RAS, LPS or oblique).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .. import atlas
from .config import ORIENTATIONS, PhantomConfig

__all__ = ["Geometry", "make_geometry", "rician", "sample", "smooth_field", "true_mapping"]


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _grid_axes(orientation: str, rng: np.random.Generator) -> np.ndarray:
    """Direction cosines (columns) of the voxel axes in world coordinates."""
    if orientation == "RAS":
        return np.eye(3)
    if orientation == "LPS":
        return np.diag([-1.0, -1.0, 1.0])
    # Oblique: an LPS-stored grid tilted like an axial slab aligned to the AC-PC line.
    tilt = _rotation([rng.uniform(12, 20), rng.uniform(-6, 6), rng.uniform(-8, 8)])
    return tilt @ np.diag([-1.0, -1.0, 1.0])


def smooth_field(shape, n_ctrl, rng, components=1) -> np.ndarray:
    """A smooth random field: Gaussian values on a coarse grid, cubic-interpolated to shape.

    Parameters
    ----------
    shape : tuple of int
        Output grid.
    n_ctrl : tuple of int
        Coarse grid (control points per axis).
    rng : numpy.random.Generator
        Source of the control values.
    components : int
        Number of independent fields.

    Returns
    -------
    (components, *shape) float32 ndarray
        Scaled to max |value| = 1 (dimensionless).
    """
    out = np.empty((components, *shape), dtype=np.float32)
    coords = np.meshgrid(*[np.linspace(0, c - 1, s, dtype=np.float32)
                           for s, c in zip(shape, n_ctrl, strict=True)], indexing="ij",
                         sparse=True)
    coords = np.broadcast_arrays(*coords)
    for k in range(components):
        ctrl = rng.standard_normal(n_ctrl)
        out[k] = ndimage.map_coordinates(ctrl, coords, order=3, mode="nearest")
    out /= max(float(np.abs(out).max()), 1e-12)
    return out


@dataclass
class Geometry:
    """A phantom subject's native grid and its true transform to the template."""

    affine: np.ndarray          # native voxel -> native world (mm)
    shape: tuple[int, int, int]
    mni_from_native: np.ndarray  # A: x_MNI = A (x + u)
    displacement: np.ndarray     # u, (3, *shape) float32, mm, world axes
    orientation: str


def make_geometry(cfg: PhantomConfig, index: int, rng: np.random.Generator) -> Geometry:
    """Draw subject ``index``'s deformation and native grid.

    Parameters
    ----------
    cfg : PhantomConfig
        Limits of the deformation, voxel size (mm), orientation and coverage.
    index : int
        Subject number (0-based; picks the orientation when ``cfg.orientation == "mixed"``).
    rng : numpy.random.Generator
        The subject's generator.

    Returns
    -------
    Geometry
        Native affine (voxel → mm) and shape, ``A`` and the displacement ``u`` (mm).
    """
    orientation = cfg.orientation if cfg.orientation != "mixed" else ORIENTATIONS[index % 3]
    rot = _rotation(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg, 3))
    scale = np.diag(1.0 + rng.uniform(-cfg.max_scaling, cfg.max_scaling, 3))
    shift = rng.uniform(-cfg.max_translation_mm, cfg.max_translation_mm, 3)
    mni_from_native = np.eye(4)
    mni_from_native[:3, :3] = rot @ scale
    mni_from_native[:3, 3] = shift

    # Field of view: the template's brain box carried into native space, padded.
    tpl = atlas.load_reference("template")
    ijk = np.argwhere(tpl.data > 0)
    lo, hi = ijk.min(0), ijk.max(0)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])]).T
    native_world = np.linalg.solve(mni_from_native, tpl.affine @ corners)[:3]
    axes = _grid_axes(orientation, rng)
    along = axes.T @ native_world  # coordinates along the grid axes
    pad = cfg.max_displacement_mm + 6.0
    pmin, pmax = along.min(1) - pad, along.max(1) + pad
    vs = np.asarray(cfg.voxel_size)
    if cfg.coverage < 1.0:
        # A slab along the slice axis centred on the midbrain (MNI (0, -15, -10)).
        centre = axes.T @ np.linalg.solve(mni_from_native, [0.0, -15.0, -10.0, 1.0])[:3]
        half = 0.5 * cfg.coverage * (pmax[2] - pmin[2] - 2 * pad)
        pmin[2], pmax[2] = centre[2] - half, centre[2] + half
    shape = tuple(int(n) for n in np.ceil((pmax - pmin) / vs).astype(int) + 1)
    affine = np.eye(4)
    affine[:3, :3] = axes * vs
    affine[:3, 3] = axes @ pmin

    n_ctrl = tuple(int(max(4, np.ceil(s * v / 30.0) + 1)) for s, v in zip(shape, vs,
                                                                             strict=True))
    u = smooth_field(shape, n_ctrl, rng, components=3)
    u *= cfg.max_displacement_mm * rng.uniform(0.6, 1.0) / max(
        float(np.sqrt((u ** 2).sum(0)).max()), 1e-12)
    return Geometry(affine, shape, mni_from_native, u, orientation)


def true_mapping(points_world: np.ndarray, mni_from_native: np.ndarray,
                 displacement: np.ndarray, native_affine: np.ndarray) -> np.ndarray:
    """Map native world points (N, 3) to MNI with the phantom's true transform.

    The displacement field is interpolated (trilinear) at the points.

    Parameters
    ----------
    points_world : (N, 3) ndarray
        Points in the subject's world coordinates (mm).
    mni_from_native : (4, 4) ndarray
        The affine ``A``.
    displacement : (3, X, Y, Z) or (X, Y, Z, 3) ndarray
        ``u`` on the native grid, mm.
    native_affine : (4, 4) ndarray
        Voxel → world of the native grid.

    Returns
    -------
    (N, 3) ndarray
        MNI coordinates in mm.
    """
    disp = np.asarray(displacement)
    if disp.shape[-1] == 3 and disp.shape[0] != 3:
        disp = np.moveaxis(disp, -1, 0)
    pts = np.asarray(points_world, float)
    ijk = np.linalg.solve(native_affine, np.c_[pts, np.ones(len(pts))].T)[:3]
    u = np.stack([ndimage.map_coordinates(d, ijk, order=1, mode="nearest") for d in disp], 1)
    moved = pts + u
    return (mni_from_native @ np.c_[moved, np.ones(len(moved))].T)[:3].T


def _template_coordinates(geom: Geometry, slab: slice) -> np.ndarray:
    """Template voxel coordinates (3, nx, Y, Z) of native voxels in ``slab`` along axis 0."""
    tpl_affine = atlas.load_reference("template").affine
    i, j, k = np.meshgrid(np.arange(slab.start, slab.stop), np.arange(geom.shape[1]),
                          np.arange(geom.shape[2]), indexing="ij")
    ijk = np.stack([i, j, k]).reshape(3, -1).astype(np.float64)
    world = geom.affine[:3, :3] @ ijk + geom.affine[:3, 3:4]
    world += geom.displacement[:, slab].reshape(3, -1)
    vox = np.linalg.inv(tpl_affine) @ geom.mni_from_native
    out = vox[:3, :3] @ world + vox[:3, 3:4]
    return out.reshape(3, *i.shape).astype(np.float32)


def sample(geom: Geometry, volumes: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Pull template-space volumes into the native grid (order 0 labels, order 1 images).

    Parameters
    ----------
    geom : Geometry
        The subject's grid and transform.
    volumes : dict of str to (ndarray, int)
        Template-grid volumes and their interpolation order.

    Returns
    -------
    dict of str to ndarray
        The volumes on the native grid (same dtypes; 0 outside the template).
    """
    out = {name: np.zeros(geom.shape, dtype=vol.dtype) for name, (vol, _) in volumes.items()}
    step = max(1, int(2_000_000 // (geom.shape[1] * geom.shape[2])))
    for start in range(0, geom.shape[0], step):
        slab = slice(start, min(start + step, geom.shape[0]))
        coords = _template_coordinates(geom, slab)
        for name, (vol, order) in volumes.items():
            out[name][slab] = ndimage.map_coordinates(vol, coords, order=order, mode="constant",
                                                      cval=0, prefilter=False)
    return out


def rician(signal: np.ndarray, sigma: float, rng, with_angle: bool = False):
    """|signal + complex noise| (Rician magnitude; noise SD ``sigma`` per channel, in the
    signal's units); with ``with_angle`` also the noise's phase angle (rad), so that a phase
    image carries the same complex noise as the magnitude. The draws are the same either way."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    mag = np.sqrt(real * real + imag * imag)
    return (mag, np.arctan2(imag, real)) if with_angle else mag
