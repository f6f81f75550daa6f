"""``build_report``: brainiron's HTML report from explicitly named inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..io import write_text
from .html import page
from .inputs import PathLike, SubjectInputs, load_report_data
from .sections import report_sections

__all__ = ["build_report"]

#: The page's title and the first part of its subtitle.
TITLE = "brainiron report"
SUBTITLE = "Regional brain iron from QSM χ (ppm) and R2* (1/s) maps"


def build_report(out_html: PathLike, subjects: Sequence[SubjectInputs] = (), *,
                 regions: PathLike | None = None, comparison: PathLike | None = None,
                 failed: PathLike | None = None, ignored: PathLike | None = None,
                 description: PathLike | None = None, config: Mapping | None = None,
                 phantom_truth: Sequence[PathLike] = (), figures_dir: PathLike | None = None,
                 overlays: bool = True, name: str | None = None) -> Path:
    """Write brainiron's HTML report: one self-contained file with every figure embedded.

    The report reads exactly the files it is given (it never searches a folder); a missing
    or unreadable optional table leaves its section with a note.

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
        Where the PNGs are also written (default ``<out_html folder>/figures``).
    overlays : bool
        Draw the per-subject overlays (the slowest part: ~1 s per image).
    name : str, optional
        Shown after the subtitle (default: the folder of ``description``).

    Returns
    -------
    Path
        ``out_html``.
    """
    out_html = Path(out_html)
    figs = Path(figures_dir) if figures_dir is not None else out_html.parent / "figures"
    data = load_report_data(subjects, regions=regions, comparison=comparison, failed=failed,
                            ignored=ignored, description=description, config=config,
                            phantom_truth=phantom_truth, figures_dir=figs, overlays=overlays)
    if name is None and description is not None:
        name = Path(description).resolve().parent.name
    subtitle = f"{SUBTITLE} · {name}" if name else SUBTITLE
    return write_text(page(report_sections(data), title=TITLE, subtitle=subtitle), out_html)
