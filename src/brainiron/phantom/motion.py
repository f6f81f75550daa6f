"""Geometry of the realistic phantom: two grids, head motion, a cubic B-spline deformation.

Three worlds (mm): the template's (MNI), the GRE session's scanner coordinates ``x_G`` (the
maps' world, called ``individual`` in the truth) and the T1w session's ``x_T``. The head
moved rigidly between the sessions: ``x_G = M @ x_T``. The anatomy in the GRE world maps to
the template by ``x_MNI = A @ (x_G + u(x_G))``, with ``A`` a random affine and ``u`` a cubic
B-spline free-form displacement on a coarse control lattice (Rueckert et al. 1999), a family
unlike the diffeomorphic SyN flows brainiron registers with. ``|u|`` never exceeds the
largest control-point displacement (B-spline weights are positive and sum to one), and a
lattice spacing of at least 2.5 × that displacement keeps ``u`` one-to-one (Choi & Lee 2000).

References
----------
.. [1] Rueckert D et al. (1999) Nonrigid registration using free-form deformations:
   application to breast MR images. IEEE Trans Med Imaging 18:712-721.
.. [2] Choi Y, Lee S (2000) Injectivity conditions of 2D and 3D uniform cubic B-spline
   functions. Graph Models 62:411-427.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .. import atlas

__all__ = ["BSplineField", "Grid", "axial_oblique_grid", "invert_points", "pull",
           "random_bspline", "random_rigid", "rotation", "sagittal_grid", "world_to_template"]


def rotation(angles_deg) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` of three angles (degrees) about x, y and z."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rigid(max_deg: float, max_mm: float, rng: np.random.Generator,
                 centre_mm=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random rigid motion: rotation about ``centre_mm`` and a translation.

    Parameters
    ----------
    max_deg, max_mm : float
        Bounds of each rotation angle (degrees) and of each translation component (mm);
        angles and shifts are uniform in ``[-max, max]``.
    rng : numpy.random.Generator
        Source of the draw.
    centre_mm : 3 floats
        Centre of rotation (mm), e.g. the head's centre.

    Returns
    -------
    matrix : (4, 4) ndarray
        ``x_out = matrix @ x_in`` (mm).
    angles_deg, shift_mm : (3,) ndarray
        The drawn angles and translation (the translation of ``centre_mm``).
    """
    angles = rng.uniform(-max_deg, max_deg, 3)
    shift = rng.uniform(-max_mm, max_mm, 3)
    rot = rotation(angles)
    c = np.asarray(centre_mm, float)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = c + shift - rot @ c
    return out, angles, shift


@dataclass
class BSplineField:
    """A cubic B-spline displacement field on a world-aligned control lattice (mm)."""

    coefficients: np.ndarray  # (3, nx, ny, nz), mm, world axes
    origin: np.ndarray        # world position of control point (0, 0, 0), mm
    spacing: float            # mm

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Displacement (N, 3) mm at world points (N, 3) mm (exact B-spline evaluation)."""
        idx = ((np.asarray(points, float) - self.origin) / self.spacing).T
        return np.stack([ndimage.map_coordinates(c, idx, order=3, prefilter=False,
                                                 mode="nearest") for c in self.coefficients],
                        axis=1)


def random_bspline(lo_mm, hi_mm, spacing_mm: float, max_mm: float,
                   rng: np.random.Generator) -> BSplineField:
    """Random B-spline displacement covering the box ``[lo_mm, hi_mm]``.

    Parameters
    ----------
    lo_mm, hi_mm : 3 floats
        World box to cover (mm); the lattice extends two control points beyond it.
    spacing_mm : float
        Control-point spacing (mm).
    max_mm : float
        Largest control-point displacement (mm), hence the bound of ``|u|``; the drawn
        field reaches 60-100 % of it.
    rng : numpy.random.Generator
        Source of the coefficients (Gaussian).

    Returns
    -------
    BSplineField
    """
    lo, hi = np.asarray(lo_mm, float), np.asarray(hi_mm, float)
    origin = lo - 2 * spacing_mm
    n = np.ceil((hi - lo) / spacing_mm).astype(int) + 5
    coef = rng.standard_normal((3, *n))
    coef *= max_mm * rng.uniform(0.6, 1.0) / max(float(np.sqrt((coef ** 2).sum(0)).max()),
                                                 1e-12)
    return BSplineField(coef, origin, float(spacing_mm))


@dataclass
class Grid:
    """A voxel grid: ``affine`` (voxel → world mm) and ``shape``."""

    affine: np.ndarray
    shape: tuple[int, int, int]

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths (mm)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(0))

    def world(self, slab: slice | None = None) -> np.ndarray:
        """World coordinates (N, 3) mm of the voxels (of ``slab`` along axis 0), C order."""
        slab = slab or slice(0, self.shape[0])
        ijk = np.indices((slab.stop - slab.start, *self.shape[1:]), dtype=np.float64)
        ijk[0] += slab.start
        return (self.affine[:3, :3] @ ijk.reshape(3, -1) + self.affine[:3, 3:4]).T


def _box_grid(axes: np.ndarray, voxel, corners_world: np.ndarray, pad_lo, pad_hi) -> Grid:
    """The grid with voxel axes ``axes`` (columns) covering ``corners_world`` plus padding."""
    along = axes.T @ corners_world
    pmin = along.min(1) - np.asarray(pad_lo, float)
    pmax = along.max(1) + np.asarray(pad_hi, float)
    vs = np.asarray(voxel, float)
    shape = tuple(int(n) for n in np.ceil((pmax - pmin) / vs).astype(int) + 1)
    affine = np.eye(4)
    affine[:3, :3] = axes * vs
    affine[:3, 3] = axes @ pmin
    return Grid(affine, shape)


def axial_oblique_grid(corners_world: np.ndarray, voxel, flip: str, rng: np.random.Generator,
                       pad_mm: float, coverage: float = 1.0, centre_world=None) -> Grid:
    """An axial grid tilted like an AC-PC-aligned slab, stored LPS or x-flipped (LAS).

    Parameters
    ----------
    corners_world : (3, K) ndarray
        Points (mm) the field of view must hold (the brain's box in this world).
    voxel : 3 floats
        Voxel size (mm), the third along the slice axis.
    flip : str
        ``LPS`` or ``LAS`` (x-flipped): how the grid is stored before the tilt.
    rng : numpy.random.Generator
        Draws the tilt (12-20° about x, ±6° about y, ±8° about z).
    pad_mm : float
        Margin around the points (mm).
    coverage : float
        Fraction of the points' extent kept along the slice axis, centred on
        ``centre_world`` (partial coverage; 1 = all).
    centre_world : 3 floats, optional
        Centre of the slab (mm).

    Returns
    -------
    Grid
    """
    flips = {"LPS": np.diag([-1.0, -1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0])}
    axes = rotation([rng.uniform(12, 20), rng.uniform(-6, 6), rng.uniform(-8, 8)]) @ flips[flip]
    grid = _box_grid(axes, voxel, corners_world, pad_mm, pad_mm)
    if coverage < 1.0:
        vs = np.asarray(voxel, float)
        along = axes[:, 2] @ corners_world
        centre = float(axes[:, 2] @ np.asarray(centre_world, float))
        half = 0.5 * coverage * float(along.max() - along.min())
        lo = axes[:, 2] @ grid.affine[:3, 3]
        k0 = max(0, int(np.floor((centre - half - lo) / vs[2])))
        k1 = min(grid.shape[2], int(np.ceil((centre + half - lo) / vs[2])) + 1)
        grid.affine[:3, 3] += axes[:, 2] * vs[2] * k0
        grid.shape = (grid.shape[0], grid.shape[1], k1 - k0)
    return grid


def sagittal_grid(corners_world: np.ndarray, voxel) -> Grid:
    """A sagittal grid (axes P, I, L: slices along left-right), with neck room below.

    Parameters
    ----------
    corners_world : (3, K) ndarray
        Points (mm) the field of view must hold.
    voxel : 3 floats
        Voxel size (mm).

    Returns
    -------
    Grid
        Padding 12 mm, 20 mm more anteriorly and 35 mm more inferiorly (a head-and-neck
        field of view unlike the GRE slab's).
    """
    axes = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    # Axis 0 runs posterior (-y), axis 1 inferior (-z), axis 2 left (-x).
    return _box_grid(axes, voxel, corners_world, (32.0, 12.0, 12.0), (12.0, 47.0, 12.0))


def world_to_template(affine_a: np.ndarray, field: BSplineField,
                      motion: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The true map from a world's points (N, 3) to template voxel coordinates (3, N).

    ``x_G = motion @ x`` (identity when None), then ``x_MNI = A @ (x_G + u(x_G))``, then the
    template's voxel grid.
    """
    vox = np.linalg.inv(atlas.load_reference("template").affine) @ affine_a

    def to_template(points: np.ndarray) -> np.ndarray:
        pts = points if motion is None else points @ motion[:3, :3].T + motion[:3, 3]
        moved = pts + field(pts)
        return vox[:3, :3] @ moved.T + vox[:3, 3:4]

    return to_template


def pull(grid: Grid, to_template: Callable[[np.ndarray], np.ndarray],
         volumes: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Sample template-grid volumes onto ``grid`` through ``to_template`` (slab by slab).

    Parameters
    ----------
    grid : Grid
        Destination grid.
    to_template : callable
        World points (N, 3) mm → template voxel coordinates (3, N).
    volumes : dict of str to (ndarray, int)
        Template-grid volumes and their interpolation order (0 labels, 1 images).

    Returns
    -------
    dict of str to ndarray
        The volumes on ``grid`` (same dtypes; 0 outside the template).
    """
    out = {name: np.zeros(grid.shape, dtype=vol.dtype) for name, (vol, _) in volumes.items()}
    step = max(1, int(1_000_000 // (grid.shape[1] * grid.shape[2])))
    for start in range(0, grid.shape[0], step):
        slab = slice(start, min(start + step, grid.shape[0]))
        coords = to_template(grid.world(slab)).reshape(3, slab.stop - start, *grid.shape[1:])
        for name, (vol, order) in volumes.items():
            out[name][slab] = ndimage.map_coordinates(vol, coords, order=order, mode="constant",
                                                      cval=0, prefilter=False)
    return out


def invert_points(points_mni: np.ndarray, affine_a: np.ndarray, field: BSplineField,
                  iterations: int = 30) -> np.ndarray:
    """GRE-world points (N, 3) whose image under ``A (x + u(x))`` is ``points_mni`` (mm).

    Fixed-point iteration ``x ← A⁻¹ y − u(x)``, a contraction while ``|∇u| < 1`` (the
    lattice spacing condition of :func:`random_bspline` keeps ``|∇u|`` well below it).
    """
    inv = np.linalg.inv(affine_a)
    target = np.asarray(points_mni, float) @ inv[:3, :3].T + inv[:3, 3]
    x = target.copy()
    for _ in range(iterations):
        x = target - field(x)
    return x
