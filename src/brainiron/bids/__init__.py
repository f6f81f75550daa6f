"""Find, select and validate a subject's images in a BIDS dataset.

Discovery (:func:`discover`) reads only file names, sidecars and NIfTI headers, so it is fast
enough to run when the workflow is planned; :func:`validate_subject` then reads the voxels and
checks values and units. Both report problems as one-line
:class:`~brainiron.errors.InputError` messages that name the file.

What brainiron looks for, per subject (and session), in ``sub-<label>[/ses-<label>]/anat/``:

========================  ===========================================  ==================
suffix                    what                                         units
========================  ===========================================  ==================
``Chimap``                magnetic susceptibility map                  ppm
``R2starmap``             R2* map                                      1/s
``T2starmap``             T2* map (turned into R2* = 1/T2*)             s
``MEGRE`` (``echo-<n>``,  multi-echo GRE magnitude, one file per echo  sidecar EchoTime
``part-mag`` or no part)                                               in s
``MEGRE`` ``part-phase``  phase twin of each magnitude echo: χ is      rad or vendor
                          reconstructed from it without a ``Chimap``   integers
``T1w``                   anatomical image for registration            —
========================  ===========================================  ==================

Selection rule when one kind has several candidates (``acq-``, ``rec-``, ``run-`` ...):
images with a ``space-`` entity other than the subject's own are not native and are skipped;
the ``select`` filter given by the user (e.g. ``{"acq": "qsm"}``) keeps only matching files;
among the rest the candidate with the fewest entities wins, ties broken by the highest
``run`` and then by name. Nothing is skipped silently: every file not used is listed in
``Dataset.ignored`` (and the workflow's ``ignored.tsv``) with the reason. Entities never need
to agree between kinds: a ``T1w`` with ``acq-mprage`` registers a ``Chimap`` with ``acq-qsm``.

Registration image rule: the T1w if present, else the first-echo magnitude, else the χ map,
else the R2* map (see :attr:`Subject.registration_kind`). A T1w on its own grid is
coregistered to the maps' reference image — the first-echo magnitude, else the χ map, else
the R2* map (:attr:`Plan.coregistration_image`).
"""

from .discover import discover, grids_match, parse_ages, sidecar
from .subject import MAP_SUFFIXES, MAP_UNITS, TABLE_MAP, Dataset, Plan, Subject
from .validate import (
    UNIT_FACTORS,
    ValidatedSubject,
    load_map,
    read_contrast,
    read_map,
    subject_field_strength,
    unregistrable_t2star,
    validate_subject,
)

__all__ = [
    "MAP_SUFFIXES",
    "MAP_UNITS",
    "TABLE_MAP",
    "UNIT_FACTORS",
    "Dataset",
    "Plan",
    "Subject",
    "ValidatedSubject",
    "discover",
    "grids_match",
    "load_map",
    "parse_ages",
    "read_contrast",
    "read_map",
    "sidecar",
    "subject_field_strength",
    "unregistrable_t2star",
    "validate_subject",
]
