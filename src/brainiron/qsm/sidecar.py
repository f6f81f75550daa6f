"""JSON sidecars of the QSM outputs (χ map, local field, mask) from a reconstruction record,
and the methods sentence of the report (:func:`describe`)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import __version__

__all__ = ["describe", "qsm_sidecars"]


def describe(settings, n_reconstructed: int) -> str:
    """Methods text of the QSM stage (plain text with citation markers, for the report).

    Parameters
    ----------
    settings : QSMSettings
        The reconstruction settings of the run.
    n_reconstructed : int
        Subject sessions whose χ was reconstructed from phase.

    Returns
    -------
    str
        One sentence; empty when no χ was reconstructed.
    """
    if not n_reconstructed:
        return ""
    return (f"For {int(n_reconstructed)} subject session(s) without a χ map, χ was "
            "reconstructed from the multi-echo GRE phase by brainiron following the 2024 "
            f"consensus [@qsm_consensus] ({settings.unwrapping} unwrapping per echo, weighted "
            f"least-squares echo fit, {settings.background} background field removal, "
            f"{settings.inversion} dipole inversion, {settings.reference.replace('_', ' ')} "
            "reference).")


def qsm_sidecars(record: dict, magnitude: Sequence, phase: Sequence) -> dict[str, dict]:
    """BIDS-style sidecars of the χ map, the local field and the QSM mask.

    Parameters
    ----------
    record : dict
        The ``record`` returned by :func:`brainiron.qsm.reconstruct` (consensus reporting
        items: software, each step's algorithm and parameters, units, reference region).
    magnitude, phase : sequence of path
        The MEGRE magnitude and phase echoes reconstructed, in echo order.

    Returns
    -------
    dict
        ``{"chi": ..., "local_field": ..., "mask": ...}``; the χ sidecar holds ``Units``
        (ppm), ``MagneticFieldStrength`` (T), ``EchoTime`` (s), ``Sources``,
        ``GeneratedBy`` and the whole record under ``QSM``.
    """
    sources = [str(p) for p in (*magnitude, *phase)]
    generated = {"Name": "brainiron-qsm", "Version": __version__}
    inputs = record["inputs"]
    chi = {
        "Units": "ppm",
        "Description": "magnetic susceptibility reconstructed by brainiron from the MEGRE "
                       "phase (brainiron.qsm), relative to the reference region "
                       f"({record['referencing']['reference']}"
                       "); 0 outside the QSM mask",
        "MagneticFieldStrength": inputs["field_strength_T"],
        "EchoTime": inputs["echo_times_s"],
        "Sources": sources,
        "GeneratedBy": generated,
        "QSM": record,
    }
    field = {"Units": "ppm", "Description": "local field after background field removal "
             f"({record['background_removal']['algorithm']}), ppm of B0; 0 outside the mask",
             "MagneticFieldStrength": inputs["field_strength_T"], "Sources": sources,
             "GeneratedBy": generated}
    mask = {"Type": "QSM", "Description": "QSM mask: magnitude brain mask and phase-quality "
            "mask, as eroded by background field removal", "Sources": sources,
            "GeneratedBy": generated}
    return {"chi": chi, "local_field": field, "mask": mask}
