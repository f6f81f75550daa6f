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

``PhantomConfig(realism="realistic")`` (``brainiron phantom --realistic``) makes the harder
phantom of docs/phantom.md instead: the T1w on its own sagittal grid with head motion against
the axial-oblique anisotropic GRE grid, a cubic B-spline deformation, tissue-class T1w
contrast, χ from a cited literature table with veins, streaking, an eroded mask and tv / l2
flavours (:mod:`~brainiron.phantom.realistic`, :mod:`~brainiron.phantom.motion`,
:mod:`~brainiron.phantom.chi_model`).

Modules: :mod:`~brainiron.phantom.config` (:class:`PhantomConfig`),
:mod:`~brainiron.phantom.geometry` (native grids, deformations, :func:`true_mapping`),
:mod:`~brainiron.phantom.tissues` (labels, iron and the forward model),
:mod:`~brainiron.phantom.phase` (the MEGRE phase of ``with_phase``: :func:`phase_model`) and
:mod:`~brainiron.phantom.writer` (:func:`generate_phantom`; :func:`truth_dir` and
:func:`truth_path`, where the ground truth is).
"""

from .chi_model import realistic_table
from .config import IMAGE_SETS, PhantomConfig
from .geometry import true_mapping
from .motion import BSplineField, random_bspline, random_rigid
from .phase import phase_model
from .realistic import VEIN_INDEX
from .tissues import phantom_labels
from .writer import TRUTH_PIPELINE, generate_phantom, truth_dir, truth_path

__all__ = ["PhantomConfig", "generate_phantom", "phantom_labels", "true_mapping",
           "TRUTH_PIPELINE", "truth_dir", "truth_path", "IMAGE_SETS", "VEIN_INDEX",
           "BSplineField", "random_bspline", "random_rigid", "realistic_table",
           "phase_model"]
