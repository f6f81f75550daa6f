"""A BIDS phantom with known regional iron, known deformations and ground-truth labels.

Each phantom subject is the MNI152NLin2009cAsym template and brainiron's labels carried into a
subject-specific native space: a random affine (rotations up to ±10°, translations up to
±10 mm, scaling up to ±5 %) composed with a smooth random displacement field (up to ~5 mm),
sampled on the subject's own voxel grid (RAS, LPS or oblique; any voxel size). Inside that
space each voxel belongs to one tissue (a nucleus, or background CSF / GM / WM) whose iron is
drawn per subject around the age-dependent norm (Hallgren & Sourander), and the maps follow
from iron through named calibrations:

* ``Chimap`` (ppm) = χ calibration(Fe) + tissue offset (myelin) + Gaussian noise;
* ``R2starmap`` (1/s) = R2* calibration(Fe, B0) + tissue offset + Gaussian noise;
* ``MEGRE`` magnitude echoes = S0 · exp(−R2* · TE) · bias field, with Rician noise;
* ``T1w`` = the template's intensity (anti-aliased to the voxel size) · bias field + noise.

Maps are piecewise constant on the native truth labels (plus noise), so a region's mean in
the truth labels equals the truth table up to noise / √n. Ground truth goes to
``derivatives/phantom-truth``: native label images, per-subject truth tables (iron, χ, R2*),
and the transform ``x_MNI = A · (x + u(x))`` (``x`` in the subject's world coordinates, mm).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from . import __version__, atlas, norms
from .io import build_name, save_nifti, write_json, write_tsv

__all__ = ["PhantomConfig", "generate_phantom", "true_mapping", "TRUTH_PIPELINE"]

TRUTH_PIPELINE = "phantom-truth"

# Tissue indices inside the phantom: 1..20 are brainiron's atomic labels; these follow.
_BACKGROUND = {"CSF": 21, "GM": 22, "WM": 23}
_ORIENTATIONS = ("RAS", "LPS", "oblique")


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of a phantom dataset.

    Attributes
    ----------
    n_subjects : int
        Number of subjects; groups alternate ``control``, ``rls``, ``control``, ...
    seed : int
        Seed of every random draw; a subject's data depend only on (seed, subject number).
    voxel_size : tuple of 3 float
        Voxel size in mm (anisotropic allowed).
    field_strength : float
        B0 in tesla (recorded in sidecars; scales the iron-dependent part of R2*).
    echo_times : tuple of float
        Echo times in s of the multi-echo GRE.
    snr : float
        Signal-to-noise ratio of the first echo in white matter (Rician noise).
    rls_sn_effect : float
        Fractional iron change in SN (SNc_PBP_VTA and SNr) of the ``rls`` group (−0.15 =
        15 % lower). Other regions follow ``phantom_tissues.tsv``.
    between_subject_cv : float
        Coefficient of variation of regional iron between subjects of one age and group.
    chi_noise_ppm, r2star_noise_per_s : float
        SD of the Gaussian noise added to the χ and R2* maps.
    orientation : str
        ``RAS``, ``LPS``, ``oblique`` or ``mixed`` (cycles through the three by subject).
    coverage : float
        Fraction of the brain's extent kept along the slice axis (1 = whole brain), centred
        on the midbrain: partial-coverage slabs as in many QSM protocols.
    max_rotation_deg, max_translation_mm, max_scaling, max_displacement_mm : float
        Limits of the random deformation.
    chi_calibration, r2star_calibration : str
        Names in ``calibrations.tsv`` used to go from iron to χ and R2*.
    with_t1w, with_chimap, with_r2starmap, with_megre : bool
        Which images to write (e.g. ``with_r2starmap=False`` leaves R2* to the relaxometry
        stage; ``with_t1w=False`` makes a subject register on its magnitude or χ map).
    age_range : tuple of float
        Ages are drawn uniformly in this range (years).
    participants : tuple of str
        Subject labels (default ``01``, ``02``, ...).
    """

    n_subjects: int = 4
    seed: int = 0
    voxel_size: tuple[float, float, float] = (2.5, 2.5, 2.5)
    field_strength: float = 3.0
    echo_times: tuple[float, ...] = tuple(round(0.004 + 0.005 * k, 4) for k in range(8))
    snr: float = 100.0
    rls_sn_effect: float = -0.15
    between_subject_cv: float = 0.08
    chi_noise_ppm: float = 0.01
    r2star_noise_per_s: float = 1.0
    orientation: str = "mixed"
    coverage: float = 1.0
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 10.0
    max_scaling: float = 0.05
    max_displacement_mm: float = 5.0
    chi_calibration: str = "langkammer2012_chi"
    r2star_calibration: str = "gelman1999_invivo_r2star"
    with_t1w: bool = True
    with_chimap: bool = True
    with_r2starmap: bool = True
    with_megre: bool = True
    age_range: tuple[float, float] = (25.0, 75.0)
    participants: tuple[str, ...] = field(default=())

    def __post_init__(self):
        vs = tuple(float(v) for v in np.broadcast_to(np.asarray(self.voxel_size, float), (3,)))
        object.__setattr__(self, "voxel_size", vs)
        if min(vs) <= 0:
            raise ValueError(f"voxel size must be positive, got {vs}")
        if self.n_subjects < 1:
            raise ValueError("a phantom needs at least one subject")
        if self.orientation not in (*_ORIENTATIONS, "mixed"):
            raise ValueError(f"orientation must be one of {_ORIENTATIONS + ('mixed',)}")
        if not 0.1 <= self.coverage <= 1.0:
            raise ValueError("coverage must lie in [0.1, 1]")
        tes = np.asarray(self.echo_times, float)
        if tes.size < 2 or np.any(np.diff(tes) <= 0) or tes[0] <= 0:
            raise ValueError("echo_times must be >= 2 increasing positive values in s")
        if self.participants and len(self.participants) != self.n_subjects:
            raise ValueError("participants must have n_subjects labels")

    @property
    def subject_labels(self) -> tuple[str, ...]:
        """Subject labels: ``participants`` if given, else 01, 02, ..."""
        return self.participants or tuple(f"{i + 1:02d}" for i in range(self.n_subjects))


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


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


def _smooth_field(shape, n_ctrl, rng, components=1) -> np.ndarray:
    """A smooth random field: Gaussian values on a coarse grid, cubic-interpolated to shape.

    Returns an array of shape ``(components, *shape)`` scaled to max |value| = 1.
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
class _Geometry:
    affine: np.ndarray          # native voxel -> native world (mm)
    shape: tuple[int, int, int]
    mni_from_native: np.ndarray  # A: x_MNI = A (x + u)
    displacement: np.ndarray     # u, (3, *shape) float32, mm, world axes
    orientation: str


def _make_geometry(cfg: PhantomConfig, index: int, rng: np.random.Generator) -> _Geometry:
    orientation = cfg.orientation if cfg.orientation != "mixed" else _ORIENTATIONS[index % 3]
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
    u = _smooth_field(shape, n_ctrl, rng, components=3)
    u *= cfg.max_displacement_mm * rng.uniform(0.6, 1.0) / max(
        float(np.sqrt((u ** 2).sum(0)).max()), 1e-12)
    return _Geometry(affine, shape, mni_from_native, u, orientation)


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


def _template_coordinates(geom: _Geometry, slab: slice) -> np.ndarray:
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


def _sample(geom: _Geometry, volumes: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Pull template-space volumes into the native grid (order 0 labels, order 1 images)."""
    out = {name: np.zeros(geom.shape, dtype=vol.dtype) for name, (vol, _) in volumes.items()}
    step = max(1, int(2_000_000 // (geom.shape[1] * geom.shape[2])))
    for start in range(0, geom.shape[0], step):
        slab = slice(start, min(start + step, geom.shape[0]))
        coords = _template_coordinates(geom, slab)
        for name, (vol, order) in volumes.items():
            out[name][slab] = ndimage.map_coordinates(vol, coords, order=order, mode="constant",
                                                      cval=0, prefilter=False)
    return out


# --------------------------------------------------------------------------------------------
# Tissue properties
# --------------------------------------------------------------------------------------------


#: The phantom's dentate: an ellipsoid (semi-axes mm) in the cerebellar white matter, where
#: the real nucleus lies (field notes: around (±14, −56, −33) mm MNI).
_DENTATE = {"L": (-14.0, -56.0, -34.0), "R": (14.0, -56.0, -34.0)}
_DENTATE_SEMI_AXES_MM = np.array([5.0, 8.0, 5.0])


@functools.cache
def phantom_labels() -> atlas.ReferenceImage:
    """brainiron's template labels plus a synthetic dentate (no atlas has one offline)."""
    labels = atlas.template_labels()
    tpl = atlas.load_reference("template")
    suit = atlas.load_reference("SUIT")
    table = atlas.region_table()
    out = np.array(labels.data, dtype=np.int16)
    ijk = np.indices(out.shape, sparse=True)
    allowed = (tpl.data > 0) & (suit.data == 0) & (out == 0)
    for row in table[(table["region"] == "DN") & (table["kind"] == "atomic")].itertuples():
        centre = np.linalg.solve(tpl.affine, [*_DENTATE[row.hemisphere], 1.0])[:3]
        inside = sum(((ijk[k] - centre[k]) / _DENTATE_SEMI_AXES_MM[k]) ** 2
                     for k in range(3)) <= 1
        out[inside & allowed] = int(row.index)
    out.setflags(write=False)
    return atlas.ReferenceImage(out, labels.affine, labels.lookup, labels.path)


def _subject_iron(cfg: PhantomConfig, age: float, group: str, rng) -> dict[str, float]:
    """Iron (mg/kg) per phantom tissue key: '<region>_<hemi>' for nuclei, 'GM'/'WM'/'CSF'."""
    tissues = norms.phantom_tissues()
    table = atlas.region_table()
    iron: dict[str, float] = {}
    subject_factor = {}
    for tissue, row in tissues.iterrows():
        base = 0.0
        if isinstance(row["norm_region"], str):
            base = float(norms.expected_iron(row["norm_region"], age)) * row["relative_to_norm"]
        change = row["rls_fraction_change"]
        if tissue in ("SNc_PBP_VTA", "SNr"):
            change = cfg.rls_sn_effect
        if group == "rls":
            base *= 1.0 + change
        subject_factor[tissue] = base * (1.0 + cfg.between_subject_cv * rng.standard_normal())
    for row in table[table["kind"] == "atomic"].itertuples():
        hemi_jitter = 1.0 + 0.03 * rng.standard_normal()
        iron[f"{row.region}_{row.hemisphere}"] = max(0.0, subject_factor[row.region] * hemi_jitter)
    for tissue in _BACKGROUND:
        iron[tissue] = max(0.0, subject_factor[tissue])
    return iron


def _forward(iron: float, tissue: str, cfg: PhantomConfig) -> tuple[float, float, float]:
    """χ (ppm), R2* (1/s) and proton density of a tissue from its iron (mg/kg)."""
    from .iron import value_from_iron

    cal = norms.calibrations()
    row = norms.phantom_tissues().loc[tissue]
    chi = value_from_iron(iron, cal.loc[cfg.chi_calibration]) + row["chi_offset_ppm"]
    # The iron-dependent part of R2* grows linearly with B0 (Yao et al. 2009).
    r2s = value_from_iron(iron, cal.loc[cfg.r2star_calibration], cfg.field_strength) \
        + row["r2star_offset_per_s"]
    return float(chi), float(max(r2s, 0.5)), float(row["proton_density"])


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _rician(signal: np.ndarray, sigma: float, rng) -> np.ndarray:
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


@functools.lru_cache(maxsize=4)
def _smoothed_template(voxel_size: tuple[float, float, float]) -> np.ndarray:
    """The T1 template blurred to the native voxel size (FWHM = voxel size) before sampling."""
    tpl = atlas.load_reference("template")
    sigma = np.mean(voxel_size) / 2.3548
    if sigma < 0.5:
        return np.asarray(tpl.data, dtype=np.float32)
    return ndimage.gaussian_filter(np.asarray(tpl.data, dtype=np.float32), sigma)


def _tissue_lut(iron: dict[str, float], cfg: PhantomConfig) -> pd.DataFrame:
    """One row per phantom tissue index: key, iron, χ, R2*, proton density."""
    table = atlas.region_table()
    rows = []
    for row in table[table["kind"] == "atomic"].itertuples():
        key = f"{row.region}_{row.hemisphere}"
        chi, r2s, pd_ = _forward(iron[key], row.region, cfg)
        rows.append((int(row.index), key, row.region, row.hemisphere, iron[key], chi, r2s, pd_))
    for tissue, index in _BACKGROUND.items():
        chi, r2s, pd_ = _forward(iron[tissue], tissue, cfg)
        rows.append((index, tissue, tissue, "bilateral", iron[tissue], chi, r2s, pd_))
    return pd.DataFrame(rows, columns=["index", "key", "region", "hemisphere", "iron_mg_per_kg",
                                       "chi_ppm", "r2star_per_s", "proton_density"])


def _truth_table(lut: pd.DataFrame, tissue_index: np.ndarray, voxel_mm3: float) -> pd.DataFrame:
    """Per-region truth (atomic, composite, background) from the native tissue image."""
    counts = np.bincount(tissue_index.ravel(), minlength=len(_BACKGROUND) + 21)
    by_index = lut.set_index("index")
    rows = []
    for (region, hemi), members in atlas.composite_members().items():
        if not atlas.region_table().set_index(["region", "hemisphere"]).loc[
                (region, hemi), "available"]:
            continue
        n = np.array([counts[m] for m in members], dtype=float)
        w = n / n.sum() if n.sum() > 0 else np.full(len(members), 1.0 / len(members))
        vals = by_index.loc[members, ["iron_mg_per_kg", "chi_ppm", "r2star_per_s",
                                      "proton_density"]].to_numpy()
        rows.append((region, hemi, int(n.sum()), *(w @ vals)))
    for tissue, index in _BACKGROUND.items():
        r = by_index.loc[index]
        rows.append((tissue, "bilateral", int(counts[index]), r["iron_mg_per_kg"], r["chi_ppm"],
                     r["r2star_per_s"], r["proton_density"]))
    df = pd.DataFrame(rows, columns=["region", "hemisphere", "n_voxels", "iron_mg_per_kg",
                                     "chi_ppm", "r2star_per_s", "proton_density"])
    df.insert(3, "volume_mm3", df["n_voxels"] * voxel_mm3)
    return df


def _write_subject(root: Path, label: str, index: int, cfg: PhantomConfig,
                   demographics: dict) -> pd.DataFrame:
    rng = np.random.default_rng([cfg.seed, index, 7])
    geom = _make_geometry(cfg, index, rng)
    labels = phantom_labels()
    tissues = atlas.template_tissues()
    sampled = _sample(geom, {
        "labels": (np.asarray(labels.data), 0),
        "tissue": (np.asarray(tissues.data), 0),
        "t1": (_smoothed_template(cfg.voxel_size), 1),
    })
    tissue_index = np.where(sampled["labels"] > 0, sampled["labels"],
                            np.where(sampled["tissue"] > 0, sampled["tissue"] + 20, 0))
    tissue_index = tissue_index.astype(np.int16)
    brain = tissue_index > 0

    iron = _subject_iron(cfg, demographics["age"], demographics["group"], rng)
    lut = _tissue_lut(iron, cfg)
    size = len(_BACKGROUND) + 21
    chi_lut, r2s_lut, pd_lut = (np.zeros(size, np.float32) for _ in range(3))
    chi_lut[lut["index"]] = lut["chi_ppm"]
    r2s_lut[lut["index"]] = lut["r2star_per_s"]
    pd_lut[lut["index"]] = lut["proton_density"]

    bias = np.exp(0.15 * _smooth_field(geom.shape, (4, 4, 4), rng)[0])
    sub = {"sub": label}
    anat = root / f"sub-{label}" / "anat"
    b0 = cfg.field_strength
    written = []

    if cfg.with_chimap:
        chi = chi_lut[tissue_index]
        chi[brain] += cfg.chi_noise_ppm * rng.standard_normal(int(brain.sum()), np.float32)
        written.append(save_nifti(chi, anat / build_name(sub, "Chimap"), geom.affine))
        write_json({"Units": "ppm", "MagneticFieldStrength": b0,
                    "Description": "brainiron phantom susceptibility map (no reference "
                                   "subtraction)"}, anat / build_name(sub, "Chimap", ".json"))
    if cfg.with_r2starmap:
        r2s = r2s_lut[tissue_index]
        r2s[brain] += cfg.r2star_noise_per_s * rng.standard_normal(int(brain.sum()), np.float32)
        r2s[brain] = np.maximum(r2s[brain], 0.0)
        save_nifti(r2s, anat / build_name(sub, "R2starmap"), geom.affine)
        write_json({"Units": "1/s", "MagneticFieldStrength": b0},
                   anat / build_name(sub, "R2starmap", ".json"))
    if cfg.with_megre:
        s0 = 1000.0 * pd_lut[tissue_index] * bias
        sigma = 1000.0 * float(norms.phantom_tissues().loc["WM", "proton_density"]) / cfg.snr
        for echo, te in enumerate(cfg.echo_times, start=1):
            mag = _rician(s0 * np.exp(-r2s_lut[tissue_index] * te), sigma, rng)
            ents = {**sub, "echo": str(echo), "part": "mag"}
            save_nifti(np.rint(mag), anat / build_name(ents, "MEGRE"), geom.affine, dtype=np.int16)
            write_json({"EchoTime": te, "MagneticFieldStrength": b0, "FlipAngle": 15,
                        "RepetitionTime": round(cfg.echo_times[-1] + 0.008, 4),
                        "MRAcquisitionType": "3D", "EchoNumber": echo},
                       anat / build_name(ents, "MEGRE", ".json"))
    if cfg.with_t1w:
        t1 = 10.0 * sampled["t1"] * bias
        t1 = _rician(t1, 0.015 * 850.0, rng)
        save_nifti(np.rint(t1), anat / build_name(sub, "T1w"), geom.affine, dtype=np.int16)
        write_json({"MagneticFieldStrength": b0}, anat / build_name(sub, "T1w", ".json"))

    # Ground truth.
    truth = root / "derivatives" / TRUTH_PIPELINE / f"sub-{label}" / "anat"
    native = {**sub, "space": "individual"}
    dseg = np.where(tissue_index <= 20, tissue_index, 0).astype(np.int16)
    save_nifti(dseg, truth / build_name({**native, "atlas": "CIT168"}, "dseg"), geom.affine,
               intent="label")
    write_tsv(labels.lookup, truth / build_name({**native, "atlas": "CIT168"}, "dseg", ".tsv"))
    save_nifti(tissue_index, truth / build_name({**native, "desc": "tissue"}, "dseg"),
               geom.affine, intent="label")
    write_tsv(lut[["index", "key"]].rename(columns={"key": "name"}),
              truth / build_name({**native, "desc": "tissue"}, "dseg", ".tsv"))
    xfm = {**sub, "from": "individual", "to": atlas.TEMPLATE_NAME, "mode": "points"}
    write_json({
        "matrix": geom.mni_from_native.tolist(),
        "convention": "x_MNI = A @ (x + u(x)); x: subject world coordinates (mm, RAS), u: the "
                      "displacement field of the companion _desc-displacement_xfm.nii.gz "
                      "(mm, world axes, on the subject's native grid)",
        "orientation": geom.orientation,
    }, truth / build_name({**xfm, "desc": "affine"}, "xfm", ".json"))
    save_nifti(np.moveaxis(geom.displacement, 0, -1), truth / build_name(
        {**xfm, "desc": "displacement"}, "xfm"), geom.affine)
    table = _truth_table(lut, tissue_index, float(np.prod(cfg.voxel_size)))
    table.insert(0, "participant_id", f"sub-{label}")
    write_tsv(table, truth / build_name({**sub, "desc": "truth"}, "regions", ".tsv"))
    return table


def generate_phantom(out_dir: str | Path, config: PhantomConfig | None = None,
                     **overrides) -> pd.DataFrame:
    """Write a phantom BIDS dataset with ground truth; return the truth table.

    Parameters
    ----------
    out_dir : path
        Destination folder; must not exist or be empty. The dataset is assembled in a
        temporary sibling folder and renamed into place, so an interrupted run leaves nothing.
    config : PhantomConfig, optional
        Parameters (defaults: 4 subjects, 2.5 mm, seed 0).
    **overrides
        Fields of :class:`PhantomConfig` to change, e.g. ``n_subjects=3``.

    Returns
    -------
    DataFrame
        Truth for every subject × region × hemisphere: ``participant_id, region, hemisphere,
        n_voxels, volume_mm3, iron_mg_per_kg, chi_ppm, r2star_per_s, proton_density`` plus
        ``age, sex, group``.
    """
    import shutil
    import tempfile

    cfg = replace(config or PhantomConfig(), **overrides)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: exists and is not empty; choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    started = time.perf_counter()
    try:
        people = []
        tables = []
        for i, label in enumerate(cfg.subject_labels):
            demo_rng = np.random.default_rng([cfg.seed, i, 1])
            demo = {"participant_id": f"sub-{label}",
                    "age": round(float(demo_rng.uniform(*cfg.age_range)), 1),
                    "sex": str(demo_rng.choice(["F", "M"])),
                    "group": "control" if i % 2 == 0 else "rls"}
            people.append(demo)
            tables.append(_write_subject(tmp, label, i, cfg, demo))
        participants = pd.DataFrame(people)
        write_tsv(participants, tmp / "participants.tsv")
        write_json({
            "age": {"Description": "age at scan", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            "group": {"Description": "diagnostic group",
                      "Levels": {"control": "healthy control", "rls": "restless legs syndrome"}},
        }, tmp / "participants.json")
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
        write_json({"Name": "brainiron phantom", "BIDSVersion": "1.10.0", "DatasetType": "raw",
                    "GeneratedBy": [{"Name": "brainiron phantom", "Version": __version__}],
                    "brainironPhantom": settings}, tmp / "dataset_description.json")
        truth_root = tmp / "derivatives" / TRUTH_PIPELINE
        write_json({"Name": "brainiron phantom ground truth", "BIDSVersion": "1.10.0",
                    "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": "brainiron phantom", "Version": __version__}]},
                   truth_root / "dataset_description.json")
        truth = pd.concat(tables, ignore_index=True).merge(participants, on="participant_id")
        write_tsv(truth, truth_root / "truth.tsv")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    truth.attrs["seconds"] = time.perf_counter() - started
    return truth
