"""The images brainiron uses for one subject (and session), and what it does with them.

:class:`Subject` is what discovery found; :meth:`Subject.plan` decides, once, what the
workflow does with it (:class:`Plan`): which image is registered and with which contrast,
which map the dentate is segmented on, which maps are quantified, whether R2* is fitted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["MAP_SUFFIXES", "MAP_UNITS", "TABLE_MAP", "Dataset", "Plan", "Subject"]

MAP_SUFFIXES = ("Chimap", "R2starmap", "T2starmap")
#: Canonical units of each quantitative map brainiron reports.
MAP_UNITS = {"Chimap": "ppm", "R2starmap": "1/s", "T2starmap": "s"}
#: BIDS suffix of each quantified map as it appears in the tables (T2* maps become R2*).
TABLE_MAP = {"Chimap": "Chimap", "R2starmap": "R2starmap", "T2starmap": "R2starmap"}


@dataclass
class Subject:
    """The images brainiron uses for one subject (and session).

    Attributes
    ----------
    subject, session : str
        BIDS labels without prefix (``"01"``; session ``""`` when the dataset has none).
    t1w : Path or None
        Anatomical image.
    maps : dict
        ``{"Chimap": path, "R2starmap": path, "T2starmap": path}`` for those present.
    megre : list of Path
        Magnitude echoes in echo order.
    phase : list of Path
        Phase echoes (``part-phase``), one per magnitude echo in the same order; empty
        without phase, or when the subject has a χ map (then they are listed as ignored).
    echo_times : list of float
        Echo times in s, one per echo.
    field_strength : float or None
        ``MagneticFieldStrength`` (T) from the sidecars.
    units : dict
        Declared ``Units`` of each map from its sidecar (``""`` when undeclared).
    ignored : list of (str, str)
        Files of this subject not used, with the reason.
    errors : list of str
        One-line problems found at discovery; a subject with errors is not processed.
    t1w_alignment : str
        How the T1w meets the maps: ``same`` (on the maps' grid), ``coregister`` (on its own
        grid, registered to the maps' reference image) or ``world`` (on its own grid,
        scanner coordinates trusted); ``""`` without a T1w.
    """

    subject: str
    session: str = ""
    t1w: Path | None = None
    maps: dict[str, Path] = field(default_factory=dict)
    megre: list[Path] = field(default_factory=list)
    phase: list[Path] = field(default_factory=list)
    echo_times: list[float] = field(default_factory=list)
    field_strength: float | None = None
    units: dict[str, str] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    t1w_alignment: str = ""

    @property
    def participant_id(self) -> str:
        return f"sub-{self.subject}"

    @property
    def session_id(self) -> str:
        return f"ses-{self.session}" if self.session else ""

    @property
    def key(self) -> str:
        """``sub-01`` or ``sub-01_ses-02``: the unit the workflow processes."""
        return "_".join(p for p in (self.participant_id, self.session_id) if p)

    @property
    def entities(self) -> dict[str, str]:
        return {"sub": self.subject, "ses": self.session}

    @property
    def registration_kind(self) -> str | None:
        """``T1w``, ``MEGRE`` (first echo), ``Chimap`` or ``R2starmap``: what gets registered."""
        if self.t1w is not None:
            return "T1w"
        if self.megre:
            return "MEGRE"
        for kind in ("Chimap", "R2starmap"):
            if kind in self.maps:
                return kind
        return None

    @property
    def coregistration_kind(self) -> str | None:
        """The maps' reference image the T1w is coregistered to (``MEGRE``: first echo,
        ``Chimap``, ``R2starmap``), or None when no coregistration is needed."""
        if self.t1w is None or self.t1w_alignment != "coregister":
            return None
        if self.megre:
            return "MEGRE"
        return next((k for k in ("Chimap", "R2starmap") if k in self.maps), None)

    @property
    def registration_image(self) -> Path | None:
        kind = self.registration_kind
        return {"T1w": self.t1w, "MEGRE": self.megre[0] if self.megre else None}.get(
            kind, self.maps.get(kind))

    def plan(self, maps: Sequence[str], deriv: str | os.PathLike) -> Plan:
        """What the workflow does with this subject (decided here, and only here).

        Parameters
        ----------
        maps : sequence of str
            The maps the configuration asks for (``Chimap``, ``R2starmap``).
        deriv : path
            brainiron's derivatives folder (where a fitted R2* map is written).

        Returns
        -------
        Plan
        """
        from .. import layout

        fitted = str(layout.subject_path(deriv, "r2star", self.key))
        reconstructed = str(layout.subject_path(deriv, "chi", self.key))
        qsm = "Chimap" in maps and "Chimap" not in self.maps and bool(self.phase)
        fit = ("R2starmap" in maps and not ({"R2starmap", "T2starmap"} & set(self.maps))
               and len(self.megre) >= 2)
        quantified: dict[str, tuple[str, str]] = {}
        for kind, path in self.maps.items():  # an R2starmap wins over a T2starmap
            name = TABLE_MAP[kind]
            if name not in quantified or kind == "R2starmap":
                quantified[name] = (str(path), kind)
        if fit:
            quantified.setdefault("R2starmap", (fitted, "derived"))
        if qsm:  # χ first, in table order
            quantified = {"Chimap": (reconstructed, "qsm"), **quantified}
        quantified = {k: v for k, v in quantified.items() if k in maps}
        contrast = ((reconstructed, "qsm") if qsm else next(
            ((str(self.maps[k]), k) for k in MAP_SUFFIXES if k in self.maps),
            (fitted, "derived")))
        image = self.registration_image
        used = contrast[1] == "derived" or any(k == "derived" for _, k in quantified.values())
        coreg = self.coregistration_kind
        coreg_image = (str(self.megre[0]) if coreg == "MEGRE"
                       else str(self.maps[coreg]) if coreg else "")
        return Plan(key=self.key, registration_kind=self.registration_kind or "",
                    registration_image=str(image) if image else "",
                    contrast_image=contrast[0], contrast_kind=contrast[1], maps=quantified,
                    fit_r2star=used, echoes=tuple(str(p) for p in self.megre),
                    coregistration_kind=coreg or "", coregistration_image=coreg_image,
                    reconstruct_chi=qsm, phase=tuple(str(p) for p in self.phase) if qsm else ())

    def to_dict(self, *, with_ignored: bool = True) -> dict:
        """JSON-serialisable form; without ``ignored`` it holds only what changes results."""
        out = asdict(self)
        out["t1w"] = str(self.t1w) if self.t1w else None
        out["maps"] = {k: str(v) for k, v in self.maps.items()}
        out["megre"] = [str(p) for p in self.megre]
        out["phase"] = [str(p) for p in self.phase]
        if not self.phase:  # as before phase existed: unchanged validate params, no re-run
            del out["phase"]
        out["key"] = self.key
        out["registration_kind"] = self.registration_kind
        if not with_ignored:
            del out["ignored"]
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Subject:
        return cls(
            subject=d["subject"], session=d.get("session", ""),
            t1w=Path(d["t1w"]) if d.get("t1w") else None,
            maps={k: Path(v) for k, v in d.get("maps", {}).items()},
            megre=[Path(p) for p in d.get("megre", [])],
            phase=[Path(p) for p in d.get("phase", [])],
            echo_times=list(d.get("echo_times", [])),
            field_strength=d.get("field_strength"), units=dict(d.get("units", {})),
            ignored=[tuple(x) for x in d.get("ignored", [])], errors=list(d.get("errors", [])),
            t1w_alignment=d.get("t1w_alignment", ""),
        )


@dataclass(frozen=True)
class Plan:
    """What the workflow does with one subject (:meth:`Subject.plan`).

    Attributes
    ----------
    key : str
        ``sub-01`` or ``sub-01_ses-2``.
    registration_kind : str
        ``T1w``, ``MEGRE`` (first echo), ``Chimap`` or ``R2starmap``: what is registered.
    registration_image : str
        Its file.
    contrast_kind, contrast_image : str
        The map the dentate (and the refinement) is segmented on: the χ map (``qsm``: the
        one reconstructed from phase), else the R2* or T2* map, else (``derived``) the R2*
        map the workflow fits.
    maps : dict
        Table map name (``Chimap``, ``R2starmap``) → (file, source kind: ``Chimap``,
        ``R2starmap``, ``T2starmap``, ``derived`` (R2* fitted by brainiron) or ``qsm`` (χ
        reconstructed by brainiron from phase)), in table order, for the configured maps the
        subject has (or gets fitted or reconstructed).
    fit_r2star : bool
        R2* is fitted from the MEGRE magnitude (rule ``relaxometry``): it is quantified (no
        R2* / T2* map, ≥ 2 echoes, R2* asked for) or it is the dentate contrast.
    echoes : tuple of str
        Magnitude echoes in echo order.
    coregistration_kind, coregistration_image : str
        The maps' reference image (``MEGRE`` first echo, ``Chimap``, ``R2starmap``) the T1w
        is coregistered to, and its file; ``""`` when the T1w needs no coregistration (none,
        on the maps' grid, or ``t1w_grid: world``).
    reconstruct_chi : bool
        χ is reconstructed from the phase echoes (rule ``qsm``): the subject has phase, no
        χ map, and χ is asked for.
    phase : tuple of str
        Phase echoes in echo order (when ``reconstruct_chi``).
    """

    key: str
    registration_kind: str
    registration_image: str
    contrast_kind: str
    contrast_image: str
    maps: Mapping[str, tuple[str, str]]
    fit_r2star: bool
    echoes: tuple[str, ...] = ()
    coregistration_kind: str = ""
    coregistration_image: str = ""
    reconstruct_chi: bool = False
    phase: tuple[str, ...] = ()

    @property
    def overlay_image(self) -> str:
        """The image the report draws the labels on: on the maps' grid (the coregistration
        reference when the T1w lies on its own grid, else the registration image)."""
        return self.coregistration_image or self.registration_image


@dataclass
class Dataset:
    """A discovered BIDS dataset.

    Attributes
    ----------
    root : Path
    subjects : list of Subject
        Every subject (× session) found; those with ``errors`` are not processed.
    participants : DataFrame or None
        ``participants.tsv`` (``participant_id`` and whatever else it has).
    ignored : list of (str, str)
        Dataset-level files and folders not used, with the reason.
    """

    root: Path
    subjects: list[Subject]
    participants: pd.DataFrame | None
    ignored: list[tuple[str, str]] = field(default_factory=list)

    @property
    def valid(self) -> list[Subject]:
        return [s for s in self.subjects if not s.errors]

    @property
    def failed(self) -> list[Subject]:
        return [s for s in self.subjects if s.errors]

    def ignored_table(self) -> pd.DataFrame:
        rows = list(self.ignored) + [x for s in self.subjects for x in s.ignored]
        return pd.DataFrame(rows, columns=["path", "reason"])
