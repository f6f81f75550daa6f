"""The QSM chain in one call: :func:`reconstruct` (arrays and an affine in, χ out).

Phase scaling → B0 direction → phase-offset removal → exact per-echo unwrapping → weighted
least-squares field fit → magnitude + phase-quality mask → background removal (V-SHARP) →
dipole inversion (TV-ADMM) → referencing (whole brain). Each step's algorithm, parameters,
units and time go into the returned record, which holds every item of the consensus'
reporting table [1]_ for the χ map's JSON sidecar.

References
----------
.. [1] QSM Consensus Organization Committee (2024) Magn Reson Med 91:1834-1862, Table 5.
   doi:10.1002/mrm.30006
"""

from __future__ import annotations

import time

import numpy as np

from .. import __version__, masks
from ..errors import InputError
from . import background, echoes, inversion, masking
from .constants import gamma_bar_mhz_per_t
from .geometry import b0_direction, voxel_sizes
from .reference import reference_chi
from .scaling import phase_to_radians
from .settings import QSMSettings

__all__ = ["reconstruct"]

_REFS = {
    "unwrapping": {"exact": "Abdul-Rahman H et al. (2007) Appl Opt 46:6623 (skimage unwrap_phase)",
                   "laplacian": "Schofield MA, Zhu Y (2003) Opt Lett 28:1194"},
    "offset": "MCPC-3D-S-like: Eckstein K et al. (2018) Magn Reson Med 79:2996",
    "echo_fit": "weighted least squares, weights magnitude^2: Wu B et al. (2012) NeuroImage 59:297",
    "background": {"vsharp": "Wu B et al. (2012) Magn Reson Med 67:137; Schweser F et al. "
                             "(2011) NeuroImage 54:2789",
                   "pdf": "Liu T et al. (2011) NMR Biomed 24:1129"},
    "inversion": {"tv_admm": "Bilgic B et al. (2014) Magn Reson Med 72:1444; Milovic C et al. "
                             "(2018) Magn Reson Med 80:814",
                  "l2": "Bilgic B et al. (2014) Magn Reson Med 72:1444 (closed-form L2)",
                  "tkd": "Shmueli K et al. (2009) Magn Reson Med 62:1510"},
}


def _check_inputs(magnitude, phase, echo_times_s, affine, field_strength_T, names):
    """Validated (magnitude, phase, echo_times) as 4-D float32 / 1-D float arrays."""
    mag_name, phase_name = names
    if magnitude is None:
        raise InputError(phase_name, "phase without its magnitude (part-mag) images")
    mag, ph = np.asarray(magnitude), np.asarray(phase)
    if ph.ndim not in (3, 4):
        raise InputError(phase_name, f"phase must be 3-D or 4-D (echoes last), got {ph.shape}")
    if mag.shape != ph.shape:
        raise InputError(phase_name, f"phase grid {ph.shape} differs from its magnitude's "
                                     f"{mag.shape}; both must be on the same grid")
    if ph.ndim == 3:
        mag, ph = mag[..., None], ph[..., None]
    if echo_times_s is None:
        raise InputError(phase_name, "echo times are missing (EchoTime in the sidecars, s)")
    te = np.atleast_1d(np.asarray(echo_times_s, dtype=float))
    if te.ndim != 1 or te.size != ph.shape[-1]:
        raise InputError(phase_name, f"{te.size} echo times for {ph.shape[-1]} echoes")
    if not np.all(np.isfinite(te)) or np.any(te <= 0) or np.any(np.diff(te) <= 0):
        raise InputError(phase_name, f"echo times must be positive, finite and increasing (s), "
                                     f"got {te.tolist()}")
    if np.any(te > 1.0):
        raise InputError(phase_name, f"echo times {te.tolist()} look like ms; give seconds")
    if field_strength_T is None or not np.isfinite(field_strength_T) or field_strength_T <= 0:
        raise InputError(phase_name, f"field strength must be a positive number of tesla, "
                                     f"got {field_strength_T!r}")
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise InputError(phase_name, "affine must be a finite 4 x 4 matrix")
    if not np.all(np.isfinite(mag)):
        raise InputError(mag_name, f"magnitude has {int((~np.isfinite(mag)).sum())} NaN or "
                                   "infinite voxels")
    return mag.astype(np.float32, copy=False), ph, te


def _bounding_box(mask, margin):
    """Slices of the mask's bounding box grown by ``margin`` voxels (clipped)."""
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n))
                 for i, n in zip(idx, mask.shape, strict=True))


def _background(field_ppm, mask, vox, b0, s: QSMSettings):
    """Run the configured background removal; returns (local, mask, record)."""
    if s.background == "vsharp":
        local, m = background.vsharp(field_ppm, mask, vox, s.vsharp_radii_mm,
                                     s.vsharp_threshold, s.workers)
        params = {"radii_mm": background.vsharp_radii(s.vsharp_radii_mm, vox),
                  "radii_requested_mm": list(s.vsharp_radii_mm),
                  "tsvd_threshold": s.vsharp_threshold}
    else:
        local, m = background.pdf(field_ppm, mask, vox, b0, max_iter=s.pdf_max_iter,
                                  tol=s.pdf_tol, workers=s.workers)
        params = {"max_iter": s.pdf_max_iter, "tol": s.pdf_tol, "weights": "mask"}
    return local, m, {"algorithm": s.background, "parameters": params,
                      "reference": _REFS["background"][s.background],
                      "mask_voxels_after": int(m.sum())}


def _invert(local, mask, vox, b0, s: QSMSettings):
    """Run the configured dipole inversion; returns (chi, record)."""
    if s.inversion == "tv_admm":
        chi, info = inversion.invert_tv_admm(local, mask, vox, b0, lam=s.tv_lambda, mu=s.tv_mu,
                                             max_iter=s.tv_max_iter, tol=s.tv_tol,
                                             workers=s.workers)
        params = {**info, "max_iter": s.tv_max_iter, "tol": s.tv_tol, "weights": "mask",
                  "tv": "anisotropic, forward differences"}
    elif s.inversion == "l2":
        chi = inversion.invert_l2(local, mask, vox, b0, lam=s.l2_lambda, workers=s.workers)
        params = {"lambda_mm2": s.l2_lambda, "regulariser": "||grad chi||^2"}
    else:
        chi = inversion.invert_tkd(local, mask, vox, b0, threshold=s.tkd_threshold,
                                   workers=s.workers)
        params = {"threshold": s.tkd_threshold}
    return chi, {"algorithm": s.inversion, "parameters": params,
                 "reference": _REFS["inversion"][s.inversion], "dipole_kernel":
                 "continuous k-space, D(0) = 0, zero padding 8 voxels"}


def _field(mag, ph, te, head, vox, s: QSMSettings, times):
    """Offset removal, unwrapping and echo fit; returns (omega rad/s, residual, record)."""
    n_echo = ph.shape[-1]
    offset_removed = s.remove_offset and n_echo >= 2
    t0 = time.perf_counter()
    if offset_removed:
        ph, _ = echoes.remove_phase_offset(mag, ph, te, head, vox, s.offset_smoothing_mm,
                                           s.unwrapping)
    times["offset_removal"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    unwrapped = echoes.unwrap_echoes(ph, te, head, vox, s.unwrapping, s.workers)
    times["unwrapping"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    intercept = n_echo >= 2 and (not offset_removed or s.echo_fit == "intercept")
    omega, residual = echoes.fit_field(unwrapped, mag, te, intercept=intercept)
    times["echo_fit"] = time.perf_counter() - t0
    quality = n_echo >= 3 or (n_echo == 2 and not intercept)
    rec = {
        "offset_removal": {"applied": offset_removed, "algorithm": "echo-difference, "
                           "MCPC-3D-S-like" if offset_removed else "none (single echo or "
                           "disabled)", "smoothing_sigma_mm": s.offset_smoothing_mm,
                           "reference": _REFS["offset"]},
        "unwrapping": {"algorithm": s.unwrapping, "dimensions": 3, "per_echo": True,
                       "temporal_2pi_alignment": "each echo to the previous echo x TE ratio",
                       "reference": _REFS["unwrapping"][s.unwrapping]},
        "echo_combination": {"algorithm": "weighted least-squares fit of phase = omega * TE"
                             + (" + phi0" if intercept else ""), "weights": "magnitude^2",
                             "single_echo": n_echo == 1, "reference": _REFS["echo_fit"]},
    }
    return omega, (residual if quality else None), rec


def reconstruct(magnitude, phase, echo_times_s, affine, field_strength_T,
                settings: QSMSettings | None = None, csf_mask=None, brain_mask=None,
                names=("magnitude", "phase")):
    """Susceptibility map from multi-echo GRE magnitude and phase.

    Parameters
    ----------
    magnitude, phase : (X, Y, Z, E) or (X, Y, Z) array_like
        Magnitude (any units) and phase (radians, vendor integers or another linear scaling,
        detected) of E echoes on one grid.
    echo_times_s : (E,) array_like
        Echo times (s), increasing.
    affine : (4, 4) array_like
        Voxel → world (mm) of the grid; gives voxel sizes and the B0 direction.
    field_strength_T : float
        B0 (T).
    settings : QSMSettings, optional
        Algorithms and parameters (default: V-SHARP + TV-ADMM, whole-brain reference).
    csf_mask, brain_mask : (X, Y, Z) bool array_like, optional
        CSF region (for ``reference="csf"``) and a brain mask to use instead of the
        magnitude foreground.
    names : (str, str)
        Names of the magnitude and phase inputs (files) for error messages.

    Returns
    -------
    chi : (X, Y, Z) float32 ndarray
        χ (ppm) relative to the reference region, 0 outside the mask.
    local_field : (X, Y, Z) float32 ndarray
        Local field (ppm of B0), 0 outside the mask.
    mask : (X, Y, Z) bool ndarray
        The final QSM mask.
    record : dict
        Consensus reporting items: software and version, inputs, each step's algorithm,
        parameters and reference, units, the reference region, stage times (s).

    Raises
    ------
    InputError
        Unknown phase scaling, NaN phase or magnitude, shape mismatch, missing or invalid
        echo times or field strength, no foreground in the magnitude, no V-SHARP radius as
        large as the coarsest voxel (one line each).
    """
    s = settings or QSMSettings()
    times, t_all = {}, time.perf_counter()
    mag, ph, te = _check_inputs(magnitude, phase, echo_times_s, affine, field_strength_T,
                                names)
    vox, b0 = voxel_sizes(affine), b0_direction(affine, s.b0_world)
    if s.background == "vsharp":
        try:
            background.vsharp_radii(s.vsharp_radii_mm, vox)
        except ValueError as err:
            raise InputError(names[1], str(err)) from None
    t0 = time.perf_counter()
    ph, scaling = phase_to_radians(ph, names[1])
    times["scaling"] = time.perf_counter() - t0
    rss = np.sqrt((mag ** 2).sum(-1))
    head = masks.foreground_mask(rss) if brain_mask is None else np.asarray(brain_mask, bool)
    if head is None or not head.any():
        raise InputError(names[0], "magnitude has no foreground (nothing above half Otsu)")
    box = _bounding_box(head, 2)
    mag_c, ph_c, head_c = mag[box], ph[box], head[box]
    omega, residual, rec = _field(mag_c, ph_c, te, head_c, vox, s, times)
    field_ppm = omega / np.float32(2 * np.pi * gamma_bar_mhz_per_t() * field_strength_T)
    t0 = time.perf_counter()
    mask_c, mask_rec = masking.qsm_mask(mag_c, residual, vox, s.residual_max_rad,
                                        s.mask_erosion_mm, brain_mask=head_c)
    mask_rec["source"] = ("given brain mask" if brain_mask is not None else
                          "magnitude foreground (root sum of squares over echoes; half Otsu, "
                          "largest component, holes filled)")
    if not mask_c.any():
        raise InputError(names[1], "the QSM mask is empty: no voxel with a reliable phase fit")
    times["mask"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local_c, mask_c, bg_rec = _background(field_ppm * mask_c, mask_c, vox, b0, s)
    times["background"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    chi_c, inv_rec = _invert(local_c, mask_c, vox, b0, s)
    times["inversion"] = time.perf_counter() - t0
    chi_c, ref_rec = reference_chi(chi_c, mask_c, s.reference,
                                   None if csf_mask is None else np.asarray(csf_mask)[box])
    chi, local, mask = (np.zeros(head.shape, np.float32), np.zeros(head.shape, np.float32),
                        np.zeros(head.shape, bool))
    chi[box], local[box], mask[box] = chi_c, local_c, mask_c
    times["total"] = time.perf_counter() - t_all
    record = {
        "software": {"name": "brainiron", "version": __version__, "module": "brainiron.qsm"},
        "units": {"chi": "ppm", "local_field": "ppm", "echo_times": "s",
                  "field_strength": "T"},
        "inputs": {"shape": list(ph.shape), "echoes": int(te.size), "echo_times_s":
                   te.tolist(), "field_strength_T": float(field_strength_T),
                   "voxel_size_mm": vox.tolist(), "b0_direction_voxel": b0.tolist(),
                   "gamma_bar_MHz_per_T": gamma_bar_mhz_per_t()},
        "phase_scaling": scaling, **rec,
        "mask": mask_rec, "background_removal": bg_rec, "dipole_inversion": inv_rec,
        "referencing": ref_rec, "settings": s.to_config(),
        "timings_s": {k: round(v, 3) for k, v in times.items()},
    }
    return chi, local, mask, record
