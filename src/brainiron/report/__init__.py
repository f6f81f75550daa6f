"""Figures and the HTML report: nuclei overlays, group plots, a group page and a page per subject.

From pixels to page:

* :func:`subject_overlays` draws the native-space nuclei as coloured contours on a background
  (the registration image, a χ map, an R2* map), in sagittal, coronal and axial views through
  the substantia nigra and through the globus pallidus (:func:`nuclei_cut_coords`);
* :func:`group_figures` draws, per map, each region's statistic by group (box and points,
  left and right hemisphere side by side) and, when the table has iron columns, iron versus
  age with the age-normative curve;
* :func:`build_subject_report` writes a subject's report piece (rule ``report_subject``, in
  parallel across subjects): its overlays, a thumbnail, its own page and a JSON record;
* :func:`build_report` writes ``report/index.html`` from explicitly named inputs (group
  tables, ``dataset_description.json`` and, per subject, a :class:`SubjectInputs` and its
  piece folder): group figures embedded as base64 ``data:`` URIs, inline CSS, and per
  subject a lazily loaded thumbnail linking to its page by a relative link, so that a
  1,000-subject report opens at once and works wherever the derivatives folder is moved.

Modules: :mod:`~brainiron.report.overlays`, :mod:`~brainiron.report.figures`,
:mod:`~brainiron.report.summaries` (tables shown), :mod:`~brainiron.report.sections` (one
function per section), :mod:`~brainiron.report.subject` (a subject's piece),
:mod:`~brainiron.report.methods` (methods text from each stage's
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
from .subject import build_subject_report

__all__ = [
    "REGION_COLOURS",
    "SubjectInputs",
    "build_report",
    "build_subject_report",
    "display_window",
    "group_figures",
    "methods_text",
    "nuclei_cut_coords",
    "number_citations",
    "subject_overlays",
]
