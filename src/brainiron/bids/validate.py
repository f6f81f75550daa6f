"""Validation: read a subject's voxels and check values and units.

Runs in the workflow's ``validate`` rule (it reads every voxel, so not at planning time);
problems are one-line :class:`~brainiron.errors.InputError` messages that name the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import load_nifti
from .subject import MAP_UNITS, TABLE_MAP, Subject

__all__ = ["B0_UNSTATED", "UNIT_FACTORS", "ValidatedSubject", "b0_dependent_file", "load_map",
           "read_contrast", "read_map", "subject_field_strength", "unregistrable_t2star",
           "validate_subject"]

#: Declared units we understand, as the factor to the canonical unit.
UNIT_FACTORS = {
    "Chimap": {"ppm": 1.0, "ppb": 1e-3},
    "R2starmap": {"1/s": 1.0, "s-1": 1.0, "s^-1": 1.0, "hz": 1.0, "1/ms": 1e3},
    "T2starmap": {"s": 1.0, "ms": 1e-3},
}


# --------------------------------------------------------------------------------------------
# Validation of values and units
# --------------------------------------------------------------------------------------------


@dataclass
class ValidatedSubject:
    """Facts established by :func:`validate_subject` (JSON-serialisable via ``to_dict``)."""

    key: str
    unit_factors: dict[str, float]
    shape: tuple[int, int, int]
    affine: list[list[float]]
    voxel_size_mm: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _finite_checks(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Raise for all-NaN / Inf / all-zero images; return the finite non-zero values."""
    if np.isinf(data).any():
        raise InputError(path, f"{what} contains {int(np.isinf(data).sum())} infinite values; "
                               "replace them with NaN or 0 outside the brain")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(path, f"{what} is all NaN")
    values = data[finite & (data != 0)]
    if values.size == 0:
        raise InputError(path, f"{what} is all zero")
    if values.size > 1 and float(values.min()) == float(values.max()):
        raise InputError(path, f"{what} is constant (every non-zero voxel is "
                               f"{float(values[0]):g}): not a measured image")
    return values


def _scaling_note(img) -> str:
    """`` (note: the header scales ...)`` when scl_slope / scl_inter change the stored values."""
    slope, inter = img.header.get_slope_inter()
    if slope is None or (slope == 1 and not inter):
        return ""
    return (f" (note: the header scales the stored values by scl_slope {slope:g}, scl_inter "
            f"{inter or 0:g}; check that scaling first)")


def _declared_factor(kind: str, declared: str, path: Path) -> float:
    if not declared:
        return 1.0
    factors = UNIT_FACTORS[kind]
    key = declared.strip().lower().replace(" ", "")
    if key in factors:
        return factors[key]
    if kind == "R2starmap" and key in ("ms", "s"):
        raise InputError(path, f"Units {declared!r}: this is a T2* map, not R2* (1/s); name it "
                               "_T2starmap (in s)")
    raise InputError(path, f"unknown units {declared!r} for {kind} (expected "
                           f"{' or '.join(factors)})")


def unregistrable_t2star(path: str | os.PathLike, declared: str = "") -> InputError:
    """The error for a subject whose only image is a T2* map, after checking its units.

    A T2* map is quantified (as R2* = 1/T2*) but not registered: brainiron registers a T1w,
    the MEGRE magnitude, a χ map or an R2* map. Its units are checked first (declared, and a
    median above 1 s means milliseconds), so a wrong unit is reported before what is missing.

    Parameters
    ----------
    path : path
        The T2* map.
    declared : str
        Its sidecar's ``Units`` (``""`` when undeclared).

    Returns
    -------
    InputError
        Raise it: the units problem, or the missing registration image.
    """
    path = Path(path)
    try:
        factor = _declared_factor("T2starmap", declared, path)
        data, img = load_nifti(path)
        values = _finite_checks(data, path, "the T2starmap") * factor
    except InputError as exc:
        return exc
    median = float(np.median(values[values > 0])) if np.any(values > 0) else 0.0
    if median > 1.0:
        return InputError(path, f"median T2* {median:.3g} looks like milliseconds; BIDS "
                                "requires seconds (divide by 1000, or declare \"Units\": "
                                "\"ms\")" + _scaling_note(img))
    return InputError(path, "a T2starmap alone cannot be registered: this subject has no "
                            "registration image (a T1w, MEGRE magnitude echoes, a Chimap or an "
                            "R2starmap); add one of them")


def read_map(path: str | os.PathLike, kind: str, factor: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Read a quantitative map in canonical units (χ ppm, R2* 1/s; T2* becomes R2*).

    Parameters
    ----------
    path : path
        The map's NIfTI file.
    kind : {"Chimap", "R2starmap", "T2starmap"}
    factor : float
        Factor from the declared units to the canonical ones (ppb → ppm: 1e-3), as
        established by :func:`validate_subject` (``unit_factors``).

    Returns
    -------
    data : ndarray, float32
        Values in ppm (χ) or 1/s (R2*, also for a T2* map: R2* = 1/T2*, NaN where T2* <= 0).
    affine : (4, 4) ndarray
    """
    data, img = load_nifti(path)
    data *= np.float32(factor)
    if kind == "T2starmap":
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(data > 0, 1.0 / data, np.nan).astype(np.float32)
    return data, img.affine


def read_contrast(path: str | os.PathLike, kind: str, unit_factors: Mapping[str, float]
                  ) -> tuple[np.ndarray, str]:
    """The map the dentate and the refinement are segmented on, and its table name.

    Parameters
    ----------
    path : path
    kind : {"Chimap", "R2starmap", "T2starmap", "derived", "qsm"}
        A subject's raw map (read in canonical units with its ``unit_factors`` entry),
        ``derived``: the R2* map fitted by the workflow (1/s), or ``qsm``: the χ map it
        reconstructed from phase (ppm).
    unit_factors : mapping
        ``unit_factors`` of the validated inputs.

    Returns
    -------
    values : ndarray, float32
        ppm (χ) or 1/s (R2*).
    name : str
        ``Chimap`` or ``R2starmap`` (a T2* map is read as R2*).
    """
    if kind in ("derived", "qsm"):
        values, _ = load_nifti(path)
        return values, "R2starmap" if kind == "derived" else "Chimap"
    values, _ = read_map(path, kind, unit_factors[kind])
    return values, TABLE_MAP[kind]


def load_map(subject: Subject, kind: str, factor: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Load a subject's map in canonical units (:func:`read_map`).

    Parameters
    ----------
    subject : Subject
    kind : {"Chimap", "R2starmap", "T2starmap"}
    factor : float, optional
        Unit factor established by :func:`validate_subject`; default from the sidecar's
        declared ``Units``.
    """
    path = subject.maps[kind]
    if factor is None:
        factor = _declared_factor(kind, subject.units.get(kind, ""), path)
    return read_map(path, kind, factor)


B0_UNSTATED = ("MagneticFieldStrength is not stated in the sidecars; state it there or set "
               "field_strength (tesla) in the configuration")


def b0_dependent_file(subject: Subject) -> Path | None:
    """The subject's first file whose use depends on B0: an R2*/T2* map or a MEGRE echo.

    R2* (given, from T2*, or fitted from MEGRE) is checked for plausibility and converted to
    iron with a slope that scales with B0; χ in ppm does not depend on B0.
    """
    for kind in ("R2starmap", "T2starmap"):
        if kind in subject.maps:
            return subject.maps[kind]
    return subject.megre[0] if subject.megre else None


def subject_field_strength(subject: Subject, field_strength: float | None = None
                           ) -> tuple[float | None, str]:
    """B0 (T) for a subject and where it came from (``sidecar``, ``config`` or ``unstated``).

    The sidecars' ``MagneticFieldStrength`` wins; ``field_strength`` (the configuration) is
    used only when they do not state it. Unstated is an error where B0 matters (see
    :func:`b0_dependent_file`), never a silent default; a χ-only subject may leave it unstated.

    Raises
    ------
    InputError
        B0 unstated for a subject with R2*/T2*/MEGRE data (naming the first such file), or a
        configured field strength that is not a positive finite number.
    """
    if subject.field_strength is not None:
        return float(subject.field_strength), "sidecar"
    if field_strength is not None:
        b0 = float(field_strength)
        if not np.isfinite(b0) or b0 <= 0:
            raise InputError(None, f"field strength {b0:g} T: must be positive (state "
                                   "MagneticFieldStrength in the sidecars or set "
                                   "field_strength)")
        return b0, "config"
    needs = b0_dependent_file(subject)
    if needs is not None:
        raise InputError(needs, B0_UNSTATED)
    return None, "unstated"


def validate_subject(subject: Subject, field_strength: float | None = None
                     ) -> ValidatedSubject:
    """Read a subject's images and check their values and units.

    Checks: readable voxels (truncated files, the gzip CRC), no Inf, not all NaN, not all
    zero, not constant; χ maps in ppm (not ppb); R2* maps in 1/s (not a T2* map in ms) and
    not negative; T2* maps in s (not ms); magnitude echoes non-negative and of one grid; a
    field strength that is stated (in the sidecars, or ``field_strength``) and positive
    wherever R2* is involved. A unit message mentions header scaling when there is some.

    Parameters
    ----------
    subject : Subject
        From :func:`discover`, without errors.
    field_strength : float, optional
        B0 in tesla used only when the sidecars do not state ``MagneticFieldStrength`` (the
        R2* plausibility check depends on it). ``None``: it must be stated in the sidecars
        for a subject with R2*/T2*/MEGRE data (:func:`subject_field_strength`).

    Returns
    -------
    ValidatedSubject

    Raises
    ------
    InputError
        The first problem found, naming the file.
    """
    if subject.errors:
        raise InputError(None, subject.errors[0])
    b0, _ = subject_field_strength(subject, field_strength)
    factors: dict[str, float] = {}
    notes: list[str] = []
    ref_img = None
    for kind, path in subject.maps.items():
        data, img = load_nifti(path)
        ref_img = ref_img or img
        values = _finite_checks(data, path, f"the {kind}")
        factor = _declared_factor(kind, subject.units.get(kind, ""), path)
        values = values * factor
        factors[kind] = factor
        if factor != 1.0:
            notes.append(f"{path.name}: converted from {subject.units[kind]} to "
                         f"{MAP_UNITS[kind]} (x{factor:g})")
        big = float(np.percentile(np.abs(values), 99.5))
        median = float(np.median(values[values > 0])) if np.any(values > 0) else 0.0
        if kind == "Chimap" and big > 5.0:
            raise InputError(path, f"chi values reach {big:.3g} (99.5th percentile of |chi|): "
                                   "this looks like ppb, not ppm; BIDS Chimap is in ppm "
                                   "(divide by 1000, or declare \"Units\": \"ppb\" in the "
                                   "sidecar)" + _scaling_note(img))
        if kind in ("R2starmap", "T2starmap") and float(np.median(values)) < 0:
            name = kind[:2] + "*"
            raise InputError(path, f"median {name} {float(np.median(values)):.3g} is "
                                   f"negative: {name} cannot be negative (sign flipped?)"
                                   + _scaling_note(img))
        if kind == "R2starmap" and b0 is not None:
            # In-brain R2* has a median of ~15-30 1/s at 1.5-3 T; a T2* map in ms has ~40-60.
            # The limit grows with B0; at 7 T the two overlap and the check stays quiet.
            limit = 38.0 * max(1.0, b0 / 3.0)
            if b0 <= 3.5 and median > limit:
                raise InputError(path, f"median R2* {median:.3g} 1/s is implausible at "
                                       f"{b0:g} T; is this a T2* map in ms? (R2* in 1/s "
                                       "expected, ~15-30 in brain)" + _scaling_note(img))
            if median > 0 and median < 0.5:
                raise InputError(path, f"median R2* {median:.3g} looks like 1/ms or a T2* "
                                       "map in s; R2* must be in 1/s" + _scaling_note(img))
        if kind == "T2starmap" and median > 1.0:
            raise InputError(path, f"median T2* {median:.3g} looks like milliseconds; BIDS "
                                   "requires seconds (divide by 1000, or declare \"Units\": "
                                   "\"ms\")" + _scaling_note(img))
    for k, path in enumerate(subject.megre, start=1):
        data, img = load_nifti(path)
        ref_img = ref_img or img
        _finite_checks(data, path, f"MEGRE echo-{k}")
        if np.isnan(data).any():
            raise InputError(path, "magnitude image contains NaN values")
        if float(data.min()) < 0:
            raise InputError(path, "negative values in a magnitude image (is this a phase "
                                   "image? name it part-phase)")
    if subject.t1w is not None:
        data, img = load_nifti(subject.t1w)
        ref_img = ref_img or img
        _finite_checks(data, subject.t1w, "the T1w")
    grid = ref_img
    return ValidatedSubject(
        key=subject.key, unit_factors=factors, shape=tuple(int(s) for s in grid.shape[:3]),
        affine=np.asarray(grid.affine).tolist(),
        voxel_size_mm=tuple(float(z) for z in grid.header.get_zooms()[:3]), notes=notes)
