"""The phantom's tissues: labels with a dentate, per-subject iron, and iron → χ, R2*, PD.

Each voxel belongs to one tissue (a nucleus, or background CSF / GM / WM) whose iron is drawn
per subject around the age-dependent norm (Hallgren & Sourander); χ and R2* follow from iron
through named calibrations (``calibrations.tsv``) plus a tissue offset
(``phantom_tissues.tsv``).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from .. import atlas, norms
from .config import PhantomConfig

__all__ = ["BACKGROUND", "phantom_labels", "subject_iron", "tissue_lut", "truth_table"]

#: Tissue indices inside the phantom: 1..20 are brainiron's atomic labels; these follow.
BACKGROUND = {"CSF": 21, "GM": 22, "WM": 23}

#: The phantom's dentate: an ellipsoid (semi-axes mm) in the cerebellar white matter, where
#: the real nucleus lies (field notes: around (±14, −56, −33) mm MNI).
_DENTATE = {"L": (-14.0, -56.0, -34.0), "R": (14.0, -56.0, -34.0)}
_DENTATE_SEMI_AXES_MM = np.array([5.0, 8.0, 5.0])


@functools.cache
def phantom_labels() -> atlas.ReferenceImage:
    """brainiron's template labels plus a synthetic dentate (no atlas has one offline).

    Returns
    -------
    brainiron.atlas.ReferenceImage
        Read-only int16 atomic labels on the template grid (cached).
    """
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


def subject_iron(cfg: PhantomConfig, age: float, group: str, rng) -> dict[str, float]:
    """Iron (mg/kg) per phantom tissue key: '<region>_<hemi>' for nuclei, 'GM'/'WM'/'CSF'.

    Parameters
    ----------
    cfg : PhantomConfig
        ``rls_sn_effect`` and ``between_subject_cv`` are used.
    age : float
        Age in years (the norm is age-dependent).
    group : str
        ``control`` or ``rls``.
    rng : numpy.random.Generator
        The subject's generator (one normal draw per tissue, then one per atomic region).

    Returns
    -------
    dict of str to float
        Iron in mg/kg wet tissue, ≥ 0.
    """
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
    for tissue in BACKGROUND:
        iron[tissue] = max(0.0, subject_factor[tissue])
    return iron


def _forward(iron: float, tissue: str, cfg: PhantomConfig) -> tuple[float, float, float]:
    """χ (ppm), R2* (1/s) and proton density of a tissue from its iron (mg/kg)."""
    from ..iron import value_from_iron

    cal = norms.calibrations()
    row = norms.phantom_tissues().loc[tissue]
    chi = value_from_iron(iron, cal.loc[cfg.chi_calibration]) + row["chi_offset_ppm"]
    # The iron-dependent part of R2* grows linearly with B0 (Yao et al. 2009).
    r2s = value_from_iron(iron, cal.loc[cfg.r2star_calibration], cfg.field_strength) \
        + row["r2star_offset_per_s"]
    return float(chi), float(max(r2s, 0.5)), float(row["proton_density"])


def tissue_lut(iron: dict[str, float], cfg: PhantomConfig) -> pd.DataFrame:
    """One row per phantom tissue index: key, iron, χ, R2*, proton density.

    Parameters
    ----------
    iron : dict of str to float
        Iron (mg/kg) per tissue key, from :func:`subject_iron`.
    cfg : PhantomConfig
        Calibrations and field strength.

    Returns
    -------
    DataFrame
        ``index, key, region, hemisphere, iron_mg_per_kg, chi_ppm, r2star_per_s`` (1/s),
        ``proton_density`` (relative).
    """
    table = atlas.region_table()
    rows = []
    for row in table[table["kind"] == "atomic"].itertuples():
        key = f"{row.region}_{row.hemisphere}"
        chi, r2s, pd_ = _forward(iron[key], row.region, cfg)
        rows.append((int(row.index), key, row.region, row.hemisphere, iron[key], chi, r2s, pd_))
    for tissue, index in BACKGROUND.items():
        chi, r2s, pd_ = _forward(iron[tissue], tissue, cfg)
        rows.append((index, tissue, tissue, "bilateral", iron[tissue], chi, r2s, pd_))
    return pd.DataFrame(rows, columns=["index", "key", "region", "hemisphere", "iron_mg_per_kg",
                                       "chi_ppm", "r2star_per_s", "proton_density"])


def truth_table(lut: pd.DataFrame, tissue_index: np.ndarray, voxel_mm3: float) -> pd.DataFrame:
    """Per-region truth (atomic, composite, background) from the native tissue image.

    Parameters
    ----------
    lut : DataFrame
        From :func:`tissue_lut`.
    tissue_index : ndarray of int
        The native tissue image (1..20 labels, :data:`BACKGROUND` indices, 0 outside).
    voxel_mm3 : float
        Voxel volume in mm³.

    Returns
    -------
    DataFrame
        ``region, hemisphere, n_voxels, volume_mm3, iron_mg_per_kg, chi_ppm, r2star_per_s,
        proton_density``; composites are voxel-weighted means of their members.
    """
    counts = np.bincount(tissue_index.ravel(), minlength=len(BACKGROUND) + 21)
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
    for tissue, index in BACKGROUND.items():
        r = by_index.loc[index]
        rows.append((tissue, "bilateral", int(counts[index]), r["iron_mg_per_kg"], r["chi_ppm"],
                     r["r2star_per_s"], r["proton_density"]))
    df = pd.DataFrame(rows, columns=["region", "hemisphere", "n_voxels", "iron_mg_per_kg",
                                     "chi_ppm", "r2star_per_s", "proton_density"])
    df.insert(3, "volume_mm3", df["n_voxels"] * voxel_mm3)
    return df

