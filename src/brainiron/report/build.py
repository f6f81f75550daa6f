"""``build_report``: brainiron's HTML report from explicitly named inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..io import write_text
from .html import page
from .inputs import PathLike, SubjectInputs, load_report_data
from .sections import report_sections
from .subject import build_subject_report, read_piece

__all__ = ["build_report"]

#: The page's title and the first part of its subtitle.
TITLE = "brainiron report"
SUBTITLE = "Regional brain iron from QSM χ (ppm) and R2* (1/s) maps"


def build_report(out_html: PathLike, subjects: Sequence[SubjectInputs] = (), *,
                 regions: PathLike | None = None, comparison: PathLike | None = None,
                 failed: PathLike | None = None, ignored: PathLike | None = None,
                 description: PathLike | None = None, config: Mapping | None = None,
                 phantom_truth: Sequence[PathLike] = (), figures_dir: PathLike | None = None,
                 overlays: bool = True, pieces: Sequence[PathLike] | None = None,
                 name: str | None = None) -> Path:
    """Write brainiron's HTML report: the group page, linking to one page per subject.

    The group page embeds its group figures and shows per subject a lazily loaded thumbnail
    linking to the subject's page (its report piece,
    :func:`brainiron.report.subject.build_subject_report`: full-size overlays, registration
    facts); links are relative, so the report works wherever its folder tree is moved. The
    report reads exactly the files it is given (it never searches a folder); a missing or
    unreadable optional table leaves its section with a note.

    Parameters
    ----------
    out_html : path
        Destination (conventionally ``<deriv>/report/index.html``), written atomically.
    subjects : sequence of SubjectInputs
        Each subject (× session) to show, in page order: its registration QC sidecar, its
        label image and the images to draw the nuclei on (registration image, quantified
        maps).
    regions, comparison, failed, ignored : path, optional
        The group tables ``group/regions.tsv``, ``group/group_comparison.tsv``,
        ``group/failed.tsv`` and ``group/ignored.tsv``.
    description : path, optional
        ``dataset_description.json``: the configuration (``GeneratedBy[0].Configuration``)
        when ``config`` is not given, and the derivatives folder's name in the subtitle.
    config : mapping, optional
        The workflow configuration (default: from ``description``).
    phantom_truth : sequence of path
        The phantom's per-subject truth tables (``*_desc-truth_regions.tsv``): adds a
        measured-versus-true section.
    figures_dir : path, optional
        Where the group figures' PNGs are also written (default ``<out_html
        folder>/figures``).
    overlays : bool
        Show the subjects' pieces; ``False``: none (no thumbnails, no subject pages).
    pieces : sequence of path, optional
        Each subject's piece folder, in ``subjects`` order (the workflow's
        ``report_subject`` outputs). ``None`` (with ``overlays``): the pieces are drawn here,
        one after the other, into ``<out_html folder>/subjects/<key>/`` (the slowest part:
        ~1 s per image).
    name : str, optional
        Shown after the subtitle (default: the folder of ``description``).

    Returns
    -------
    Path
        ``out_html``.
    """
    out_html = Path(out_html)
    figs = Path(figures_dir) if figures_dir is not None else out_html.parent / "figures"
    if overlays and pieces is None:
        pieces = [out_html.parent / "subjects" / s.key for s in subjects]
        for s, folder in zip(subjects, pieces, strict=True):
            build_subject_report(s, folder, index=out_html)
    if not overlays:
        records = []
    elif len(pieces) != len(subjects):
        raise ValueError(f"report inputs out of step: {len(pieces)} report pieces for "
                         f"{len(subjects)} subjects")
    else:
        records = [read_piece(d, s.key) for s, d in zip(subjects, pieces, strict=True)]
    data = load_report_data(subjects, regions=regions, comparison=comparison, failed=failed,
                            ignored=ignored, description=description, config=config,
                            phantom_truth=phantom_truth, figures_dir=figs, overlays=overlays,
                            pieces=records, out_dir=out_html.parent)
    if name is None and description is not None:
        name = Path(description).resolve().parent.name
    subtitle = f"{SUBTITLE} · {name}" if name else SUBTITLE
    return write_text(page(report_sections(data), title=TITLE, subtitle=subtitle), out_html)
