"""R2* (= 1/T2*) maps from multi-echo gradient-echo (GRE) magnitude images.

A voxel's magnitude decays mono-exponentially with echo time,
``S(TE) = S0 · exp(−R2* · TE)`` (optionally plus a constant noise floor), and
:func:`fit_r2star` estimates R2* (1/s), S0 (signal units) and a goodness of fit for every voxel
with one of three methods:

``nlls`` (default)
    Non-linear least squares on the magnitudes, the maximum-likelihood fit for Gaussian noise.
    S0 (and the floor) are linear parameters: for a given R2* their least-squares values are
    closed form, so the fit is a search in R2* alone (variable projection, Golub & Pereyra
    1973): a safeguarded Newton iteration with exact derivatives of the projected cost (a
    Gauss–Newton step where the cost is not convex, a regula-falsi step where a step would
    leave the bracket of the minimum), vectorised over all voxels of a chunk and started from
    ``loglinear``. It agrees with ``scipy.optimize.curve_fit`` to ~1e-5 in R2*.
``loglinear``
    Weighted linear least squares on ``log S`` with weights ``S²`` (the inverse variance of
    ``log S`` under Gaussian noise); closed form, any echo spacing.
``arlo``
    Auto-Regression on Linear Operations (Pei et al. 2015, Magn Reson Med 73:843-850, with its
    erratum): closed form from Simpson's-rule integrals of evenly spaced echoes. Its
    discretisation makes it slightly biased towards low R2* even without noise (relative error
    about ``(R2*·ΔTE)⁴ / 180``, e.g. 3·10⁻⁴ at R2* = 100 1/s, ΔTE = 5 ms).

Voxels are processed in chunks (float32) by a small thread pool; NumPy releases the GIL in
its loops, so the chunks run in parallel and memory stays bounded.

See ``docs/relaxometry.md`` for the measured accuracy of each method.

Modules: :mod:`~brainiron.relaxometry.fit` (:func:`fit_r2star` with its checks and chunking;
:func:`describe` and :func:`r2star_sidecar`, the stage's methods text and JSON sidecar) and
:mod:`~brainiron.relaxometry.solvers` (the vectorised estimators).
"""

from . import solvers
from .fit import METHODS, R2starFit, describe, fit_r2star, r2star_sidecar

__all__ = ["METHODS", "R2starFit", "describe", "fit_r2star", "r2star_sidecar", "solvers"]
