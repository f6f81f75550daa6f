"""Regional statistics of a quantitative map inside labelled regions, in one vectorised pass.

The labelled voxels are gathered once; composite regions (SN = SNc_PBP_VTA + SNr,
GP = GPe + GPi) are added as extra segments; one ``lexsort`` by (region, value) then yields
every order statistic, and ``bincount`` every moment, for all regions at once. No loop over
regions touches the image, so the cost is that of reading the labelled voxels.

Statistics use the voxels of a region whose map value is finite and non-zero (zeros are
"outside the map's mask" in QSM and R2* maps, as in QSMxT); ``coverage`` says which fraction
of the region that was. The probability-weighted mean ``mean_pw`` = Σ p·x / Σ p uses the
per-label partial-volume probabilities when given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .chi_reference import CSF_MIN_FRACTION, chi_csf_reference, chi_wholebrain_reference

__all__ = ["ATLAS_LABEL", "MAP_DESCRIPTIONS", "STATISTICS", "RegionIndex", "atlas_regions",
           "chi_csf_reference", "chi_wholebrain_reference", "describe", "map_statistics",
           "refined_regions", "regional_statistics", "regional_stats", "subject_table"]

#: The ``atlas`` column of the regional tables: CIT168 nuclei with the aseg thalamus.
ATLAS_LABEL = "CIT168+aseg"

#: Statistic columns of the regional table (values in the map's units, sizes as named).
STATISTICS = ("n_voxels", "volume_mm3", "n_valid", "coverage", "mean", "median", "sd", "p05",
              "p25", "p75", "p95", "min", "max", "mean_pw")
_QUANTILES = {"p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95}


def _segment_quantiles(sorted_values: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                       q: float) -> np.ndarray:
    """Quantile ``q`` of every segment of a segment-wise sorted array (NumPy 'linear' rule)."""
    out = np.full(len(counts), np.nan)
    has = counts > 0
    pos = q * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[has] - 1)
    frac = pos - lo
    base = starts[has]
    a = sorted_values[base + lo]
    b = sorted_values[base + hi]
    out[has] = a + (b - a) * frac
    return out


class RegionIndex:
    """The labelled voxels of a label image, grouped by region, gathered once.

    Build it once per label image; :meth:`statistics` then costs only the gather of the
    labelled voxels of each map (the deep-grey nuclei are ~1 % of a brain).

    Parameters
    ----------
    labels : (X, Y, Z) integer ndarray
        Atomic region labels (0 = background).
    regions : mapping
        ``(region, hemisphere) → [atomic label, ...]``; composites list several labels
        (see :func:`brainiron.atlas.composite_members`).
    voxel_volume_mm3 : float
        Volume of one voxel in mm³.
    """

    def __init__(self, labels: np.ndarray, regions: Mapping[tuple[str, str], Sequence[int]],
                 voxel_volume_mm3: float = 1.0):
        labels = np.asarray(labels)
        self.shape = labels.shape
        self.keys = list(regions)
        self.regions = {k: [int(x) for x in regions[k]] for k in self.keys}
        self.voxel_volume_mm3 = float(voxel_volume_mm3)
        flat_labels = labels.reshape(-1)
        idx = np.flatnonzero(flat_labels)
        lab = flat_labels[idx].astype(np.int64)
        # Group by label once; a region is then a few contiguous slices of that order.
        wanted = max([int(lab.max(initial=0))] + [x for v in self.regions.values() for x in v])
        order = idx[np.argsort(lab, kind="stable")]
        counts = np.bincount(lab, minlength=wanted + 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pieces = [(order[starts[x]:starts[x] + counts[x]], i)
                  for i, key in enumerate(self.keys) for x in self.regions[key] if x > 0]
        empty = np.zeros(0, np.int64)
        #: Flat voxel index of every (voxel, region) pair; a voxel may be in 2 regions.
        self.pair_voxel = np.concatenate([p for p, _ in pieces] or [empty])
        #: Region number (position in ``keys``) of every pair.
        self.pair_region = np.concatenate([np.full(p.size, i, np.int64) for p, i in pieces]
                                          or [empty])
        self.n_voxels = np.bincount(self.pair_region, minlength=len(self.keys))
        # Pairs are laid out region after region: every region is one contiguous segment.
        assert np.all(np.diff(self.pair_region) >= 0)

    def statistics(self, values: np.ndarray, *, probabilities: np.ndarray | None = None,
                   probability_labels: Sequence[int] | None = None,
                   probability_slices: tuple[slice, slice, slice] | None = None,
                   exclude_zero: bool = True) -> pd.DataFrame:
        """Statistics of one map in every region; see :func:`regional_statistics`."""
        values = np.asarray(values)
        if values.shape != self.shape:
            raise ValueError(f"map grid {values.shape} differs from the label grid "
                             f"{self.shape}")
        n_regions = len(self.keys)
        raw = values.reshape(-1)[self.pair_voxel]
        ok = np.isfinite(raw)
        if exclude_zero:
            ok &= raw != 0
        region_ok = self.pair_region[ok]
        raw_ok = raw[ok]
        value_ok = raw_ok.astype(np.float64)
        n_valid = np.bincount(region_ok, minlength=n_regions)
        sums = np.bincount(region_ok, weights=value_ok, minlength=n_regions)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_valid > 0, sums / np.maximum(n_valid, 1), np.nan)
            dev = value_ok - mean[region_ok]
            ss = np.bincount(region_ok, weights=dev * dev, minlength=n_regions)
            sd = np.where(n_valid > 1, np.sqrt(ss / np.maximum(n_valid - 1, 1)), np.nan)

        # Order statistics: sort each region's contiguous segment (a loop over ~24 regions,
        # several times faster than one lexsort of all pairs).
        seg_starts = np.concatenate([[0], np.cumsum(n_valid)[:-1]]).astype(np.int64)
        sorted_values = np.empty(raw_ok.size, dtype=np.float64)
        for start, n in zip(seg_starts, n_valid, strict=True):
            sorted_values[start:start + n] = np.sort(raw_ok[start:start + n])
        stats = {q: _segment_quantiles(sorted_values, seg_starts, n_valid, p)
                 for q, p in _QUANTILES.items()}
        stats["min"] = _segment_quantiles(sorted_values, seg_starts, n_valid, 0.0)
        stats["max"] = _segment_quantiles(sorted_values, seg_starts, n_valid, 1.0)

        mean_pw = np.full(n_regions, np.nan)
        if probabilities is not None:
            mean_pw = _probability_weighted(values, probabilities, probability_labels,
                                            probability_slices, self.keys, self.regions,
                                            exclude_zero)
        n_voxels = self.n_voxels
        return pd.DataFrame({
            "region": [k[0] for k in self.keys],
            "hemisphere": [k[1] for k in self.keys],
            "n_voxels": n_voxels.astype(np.int64),
            "volume_mm3": n_voxels * self.voxel_volume_mm3,
            "n_valid": n_valid.astype(np.int64),
            "coverage": np.where(n_voxels > 0, n_valid / np.maximum(n_voxels, 1), np.nan),
            "mean": mean,
            "median": stats["median"],
            "sd": sd,
            "p05": stats["p05"],
            "p25": stats["p25"],
            "p75": stats["p75"],
            "p95": stats["p95"],
            "min": stats["min"],
            "max": stats["max"],
            "mean_pw": mean_pw,
        })


def regional_statistics(
    values: np.ndarray,
    labels: np.ndarray,
    regions: Mapping[tuple[str, str], Sequence[int]],
    *,
    voxel_volume_mm3: float = 1.0,
    probabilities: np.ndarray | None = None,
    probability_labels: Sequence[int] | None = None,
    probability_slices: tuple[slice, slice, slice] | None = None,
    exclude_zero: bool = True,
) -> pd.DataFrame:
    """Statistics of ``values`` in every region of ``labels``.

    Parameters
    ----------
    values : (X, Y, Z) ndarray
        The quantitative map (χ in ppm, R2* in 1/s, ...), on the same grid as ``labels``.
    labels : (X, Y, Z) integer ndarray
        Atomic region labels (0 = background).
    regions : mapping
        ``(region, hemisphere) → [atomic label, ...]``; composites list several labels
        (see :func:`brainiron.atlas.composite_members`).
    voxel_volume_mm3 : float
        Volume of one voxel in mm³.
    probabilities : (x, y, z, K) ndarray, optional
        Partial-volume probability (0–1) of each of ``probability_labels`` on the sub-grid
        ``probability_slices`` of the map's grid (a crop around the labelled regions).
    probability_labels : sequence of int, optional
        The atomic label of each of the K probability volumes.
    probability_slices : tuple of slice, optional
        Where the probability crop lies in the map's grid (default: the whole grid).
    exclude_zero : bool
        Treat exact zeros as missing (outside the map's mask).

    Returns
    -------
    DataFrame
        One row per region: ``region, hemisphere`` and :data:`STATISTICS`, in the map's
        units. ``n_voxels`` and ``volume_mm3`` count the labelled voxels; ``n_valid`` those
        with a usable value; ``coverage = n_valid / n_voxels``; ``sd`` uses ``ddof=1``;
        percentiles follow NumPy's linear interpolation; empty regions give NaN statistics.
    """
    index = RegionIndex(labels, regions, voxel_volume_mm3)
    return index.statistics(values, probabilities=probabilities,
                            probability_labels=probability_labels,
                            probability_slices=probability_slices, exclude_zero=exclude_zero)


def _probability_weighted(values, probabilities, probability_labels, probability_slices, keys,
                          regions, exclude_zero) -> np.ndarray:
    """Σ p·x / Σ p per region; composites sum their members' numerators and denominators."""
    if probability_labels is None:
        raise ValueError("probability_labels is required with probabilities")
    if probability_slices is None:
        probability_slices = tuple(slice(0, s) for s in values.shape)
    crop = np.asarray(values[probability_slices], dtype=np.float64).reshape(-1)
    ok = np.isfinite(crop)
    if exclude_zero:
        ok &= crop != 0
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1, probabilities.shape[-1])
    if probs.shape[0] != crop.size:
        raise ValueError("probability crop does not match probability_slices")
    x = np.where(ok, crop, 0.0).astype(np.float32)
    numer = x @ probs
    denom = ok.astype(np.float32) @ probs
    column = {int(lab): k for k, lab in enumerate(probability_labels)}
    out = np.full(len(keys), np.nan)
    for i, key in enumerate(keys):
        cols = [column[lab] for lab in regions[key] if lab in column]
        if cols and denom[cols].sum() > 0:
            out[i] = float(numer[cols].sum() / denom[cols].sum())
    return out


def regional_stats(map_img, label_img, regions: Mapping | None = None, *,
                   probseg_img=None, probability_labels: Sequence[int] | None = None,
                   exclude_zero: bool = True) -> pd.DataFrame:
    """Regional statistics from images (nibabel images or paths), for notebooks.

    Parameters
    ----------
    map_img : nibabel image or path
        Quantitative map (χ in ppm, R2* in 1/s ...).
    label_img : nibabel image or path
        Label image on the same grid (e.g. brainiron's ``*_dseg.nii.gz``).
    regions : mapping, optional
        ``(region, hemisphere) → [labels]``; default brainiron's regions
        (:func:`brainiron.atlas.composite_members`), or every label present when the label
        image uses another scheme (keys ``(str(label), "")``).
    probseg_img : nibabel image or path, optional
        4D probabilities on (a crop of) the same grid, with ``probability_labels``.

    Returns
    -------
    DataFrame
        See :func:`regional_statistics`.

    Examples
    --------
    >>> import brainiron
    >>> table = brainiron.regional_stats("sub-01_Chimap.nii.gz",
    ...     "sub-01_space-individual_atlas-CIT168_dseg.nii.gz")  # doctest: +SKIP
    >>> table.set_index(["region", "hemisphere"]).loc[("SN", "L"), "mean"]  # doctest: +SKIP
    """
    import nibabel as nib

    from . import atlas
    from .bids import grids_match

    def _img(x):
        return nib.load(x) if isinstance(x, str | os.PathLike) else x

    m, lab = _img(map_img), _img(label_img)
    if not grids_match(m, lab):
        raise ValueError("the map and the label image are not on the same grid; warp the "
                         "labels to the map (brainiron never resamples maps)")
    labels = np.rint(np.asarray(lab.dataobj, dtype=np.float32)).astype(np.int32)
    if regions is None:
        present = set(np.unique(labels[labels > 0]).tolist())
        regions = {k: v for k, v in atlas.composite_members().items()
                   if set(v) <= present} if present <= set(range(1, 21)) else {
            (str(v), ""): [v] for v in sorted(present)}
    kwargs = {}
    if probseg_img is not None:
        p = _img(probseg_img)
        offset = np.linalg.solve(m.affine, p.affine)[:3, 3]
        start = np.rint(offset).astype(int)
        kwargs = {"probabilities": np.asarray(p.dataobj, dtype=np.float32),
                  "probability_labels": probability_labels,
                  "probability_slices": tuple(slice(s, s + n) for s, n in
                                              zip(start, p.shape[:3], strict=True))}
    zooms = m.header.get_zooms()[:3]
    return regional_statistics(np.asarray(m.dataobj, dtype=np.float32), labels, regions,
                               voxel_volume_mm3=float(np.prod(zooms)), exclude_zero=exclude_zero,
                               **kwargs)


#: How the methods text names each quantified map (with its units).
MAP_DESCRIPTIONS = {"Chimap": "magnetic susceptibility χ (QSM, ppm)",
                    "R2starmap": "the transverse relaxation rate R2* (1/s)"}


def describe(maps: Sequence[str], data: str, chi_reference: str = "none",
             csf_depth_mm: float = 10.0) -> str:
    """Methods text of the regional statistics (plain text, citation markers ``[@key]``).

    Parameters
    ----------
    maps : sequence of str
        Quantified maps (``Chimap``, ``R2starmap``), in the tables' order.
    data : str
        What was measured, e.g. ``"the BIDS dataset"`` or ``"brainiron's synthetic
        phantom"``.
    chi_reference : str
        ``none``, ``wholebrain`` (χ referenced to the whole-brain mean) or ``csf`` (to the
        mean of deep CSF, :func:`brainiron.chi_reference.chi_csf_reference`).
    csf_depth_mm : float
        With ``csf``: the least distance (mm) of a reference voxel from the χ map's edge.

    Returns
    -------
    str
        One or a few sentences for the report's methods paragraph.
    """
    maps_text = " and ".join(MAP_DESCRIPTIONS.get(m, m) for m in maps) or "the maps'"
    text = (f"Regional values of {maps_text} were measured in deep grey nuclei of {data}, in "
            "each subject's native space (maps are never resampled). Statistics use the "
            "voxels of a region with a finite, non-zero value; SN is SNc_PBP_VTA + SNr and GP "
            "is GPe + GPi.")
    if chi_reference == "wholebrain":
        text += " χ was referenced to the mean of the whole brain before the statistics."
    elif chi_reference == "csf":
        text += (" χ was referenced to the mean of deep (ventricular) cerebrospinal fluid before "
                 f"the statistics: the voxels ≥ {100 * CSF_MIN_FRACTION:g} % inside the "
                 "template's CSF class warped to the subject that lie inside the χ map and at "
                 "least "
                 f"{csf_depth_mm:g} mm from its edge, which leaves out sulcal CSF.")
    return text


def atlas_regions() -> dict[tuple[str, str], list[int]]:
    """``(region, hemisphere) → atomic labels`` of every region brainiron reports (atomic and
    composite, available in the atlas), from the package's region table."""
    from . import atlas

    table = atlas.region_table()
    available = table[table["available"]]
    present = set(zip(available["region"], available["hemisphere"], strict=True))
    return {k: v for k, v in atlas.composite_members(table).items() if k in present}


def refined_regions(regions: Mapping[tuple[str, str], Sequence[int]],
                    refined: Sequence[str]) -> dict[tuple[str, str], Sequence[int]]:
    """The regions made only of refined atomic nuclei (e.g. SN when SNc_PBP_VTA and SNr are
    refined): those that get a second, ``segmentation = refined`` row."""
    from . import atlas

    table = atlas.region_table()
    atomic = table[table["kind"] == "atomic"]
    wanted = set(atomic.loc[atomic["region"].isin(list(refined)), "index"].astype(int))
    return {k: v for k, v in regions.items() if v and set(v) <= wanted}


def map_statistics(index: RegionIndex, values: np.ndarray, name: str, units: str, source: str,
                   *, reference: str = "none", reference_value: float = np.nan,
                   probabilities: np.ndarray | None = None,
                   probability_labels: Sequence[int] | None = None,
                   probability_slices: tuple[slice, slice, slice] | None = None,
                   refined_index: RegionIndex | None = None) -> list[pd.DataFrame]:
    """The rows of one map: every region (``segmentation`` = ``atlas``) and, with
    ``refined_index``, the refined regions again (``refined``; hard labels, so no
    probability-weighted statistics).

    Parameters
    ----------
    index : RegionIndex
        The atlas labels on the map's grid.
    values : ndarray
        The map in ``units`` (χ in ppm, R2* in 1/s), already referenced.
    name, units, source : str
        Table map name (``Chimap``, ``R2starmap``), its units and the file it came from.
    reference, reference_value : str, float
        The χ reference subtracted (``none``, ``wholebrain``, ``csf``) and its value (ppm).
    probabilities, probability_labels, probability_slices
        Partial-volume probabilities for ``mean_pw`` (see :func:`regional_statistics`).
    refined_index : RegionIndex, optional
        Contrast-refined labels of the refined regions.

    Returns
    -------
    list of DataFrame
        Atlas rows, then refined rows when asked for.
    """
    meta = {"map": name, "units": units, "source": source, "reference": reference,
            "reference_value": reference_value}
    stats = index.statistics(values, probabilities=probabilities,
                             probability_labels=probability_labels,
                             probability_slices=probability_slices)
    rows = [stats]
    if refined_index is not None:
        rows.append(refined_index.statistics(values))
    for frame, segmentation in zip(rows, ("atlas", "refined"), strict=False):
        for k, (col, value) in enumerate(meta.items()):
            frame.insert(k, col, value)
        frame["segmentation"] = segmentation
    return rows


def subject_table(rows: Sequence[pd.DataFrame], participant_id: str, session_id: str,
                  qc: Mapping, field_strength_t: float) -> pd.DataFrame:
    """One subject's regional table (``desc-regions_stats.tsv``) from its rows.

    Parameters
    ----------
    rows : sequence of DataFrame
        From :func:`map_statistics`, map after map.
    participant_id, session_id : str
        ``sub-<label>`` and ``ses-<label>`` (``""`` without sessions).
    qc : mapping
        The registration QC record (``registration_image``, ``ncc``, ``brain_coverage``,
        ``flag``).
    field_strength_t : float
        B0 in tesla.

    Returns
    -------
    DataFrame
        Subject, session, map, units, atlas, segmentation, region, ... statistics ...,
        registration QC and field strength columns.
    """
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "participant_id", participant_id)
    out.insert(1, "session_id", session_id)
    out.insert(4, "atlas", ATLAS_LABEL)
    out.insert(5, "segmentation", out.pop("segmentation"))
    out["registration_image"] = qc["registration_image"]
    out["registration_ncc"] = qc.get("ncc")
    out["registration_brain_coverage"] = qc.get("brain_coverage")
    out["registration_flag"] = qc.get("flag", "")
    out["field_strength_T"] = field_strength_t
    return out
