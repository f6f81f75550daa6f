"""Figures and the HTML report: nuclei overlays, group plots and one self-contained page.

From pixels to page:

* :func:`subject_overlays` draws the native-space nuclei as coloured contours on a background
  (the registration image, a χ map, an R2* map), in sagittal, coronal and axial views through
  the substantia nigra and through the globus pallidus (:func:`nuclei_cut_coords`);
* :func:`group_figures` draws, per map, each region's statistic by group (box and points,
  left and right hemisphere side by side) and, when the table has iron columns, iron versus
  age with the age-normative curve;
* :func:`build_report` writes ``report/index.html`` from explicitly named inputs (group
  tables, ``dataset_description.json`` and, per subject, a :class:`SubjectInputs`): one HTML
  file with every image embedded as a base64 ``data:`` URI and inline CSS, so it opens
  anywhere without network access and can be mailed or archived as one file.

Modules: :mod:`~brainiron.report.overlays`, :mod:`~brainiron.report.figures`,
:mod:`~brainiron.report.summaries` (tables shown), :mod:`~brainiron.report.sections` (one
function per section), :mod:`~brainiron.report.methods` (methods text from each stage's
``describe()``, numbered citations), :mod:`~brainiron.report.html` (escaping, tables, the
page from the templates in ``_assets/``), :mod:`~brainiron.report.inputs` (what the report
reads) and :mod:`~brainiron.report.build`.

Citations: ``data/references.tsv`` (:mod:`brainiron.references`).
"""

from .build import build_report
from .figures import group_figures
from .inputs import SubjectInputs
from .methods import methods_text, number_citations
from .overlays import REGION_COLOURS, display_window, nuclei_cut_coords, subject_overlays

__all__ = [
    "REGION_COLOURS",
    "SubjectInputs",
    "build_report",
    "display_window",
    "group_figures",
    "methods_text",
    "nuclei_cut_coords",
    "number_citations",
    "subject_overlays",
]
