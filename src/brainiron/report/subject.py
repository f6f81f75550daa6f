"""A subject's report piece: its overlays, a thumbnail, its own page and a JSON record.

The workflow's ``report_subject`` rule writes one piece per subject (× session), in parallel
and only again when that subject's inputs change; the group report
(:func:`brainiron.report.build_report`) then reads the pieces' JSON records and shows one
lazily loaded thumbnail per subject linking to the subject's page, so a report of 1,000
subjects opens without loading 1,000 full-size images.

A piece folder (``<deriv>/sub-01[/ses-2]/figures/``, :func:`brainiron.layout.figures_dir`)
holds, with names from ``io_spec.json``'s ``figures`` section:

* ``<key>_report.html``: the subject's page (registration facts, labelled voxels, the nuclei
  on each background at full size, embedded as ``data:`` URIs so the page is one file); its
  link back to the group report is relative, so it works wherever the derivatives folder
  is moved;
* ``<key>_desc-registration_thumbnail.png``: the first overlay, small (a grey placeholder
  when none could be drawn), for the group report;
* ``<key>_report.json``: what the group report needs (page, thumbnail and its size, notes).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from .. import layout
from ..io import atomic_path, read_json, write_json, write_text
from .html import esc, img_tag, kv_table, page, table
from .inputs import PathLike, SubjectInputs, SubjectRecord, subject_record
from .overlays import nuclei_cut_coords, subject_overlays
from .summaries import MAP_UNITS, map_label

__all__ = ["THUMBNAIL_WIDTH", "build_subject_report", "read_piece", "relative_href",
           "subject_qc_facts"]

#: Width of the group report's thumbnails (pixels); the overlays are 1080 pixels wide.
THUMBNAIL_WIDTH = 360


def relative_href(target: PathLike, start_dir: PathLike) -> str:
    """A relative URL from ``start_dir`` to ``target`` (POSIX separators, escaped)."""
    rel = Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start_dir)))
    return esc(rel.as_posix())


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{text}</p>'


def subject_qc_facts(qc: dict) -> list[tuple[str, object]]:
    """The registration facts shown of a subject (from its registration QC record).

    The registration's duration (``seconds``) is shown in the group report's QC table, not
    here: the page stays byte-identical between two runs of the same inputs.
    """
    facts = [("registration image", qc.get("registration_image")),
             ("registration file", Path(str(qc.get("registration_image_path") or "n/a")).name),
             ("NCC", qc.get("ncc")), ("template", qc.get("template"))]
    settings = qc.get("settings") or {}
    if settings:
        facts.append(("transform", f"{settings.get('transform')} ({settings.get('syn_metric')})"))
    return facts


def _backgrounds(s: SubjectRecord) -> list[tuple[str, str, Path | None, str | None]]:
    """(slug, label, path, units) of each overlay's background: the registration image, then
    each quantified map that is not the registration image."""
    kind = s.qc.get("registration_image") or "registration"
    reg = s.registration_image
    out = [("registration", f"registration image ({kind})", reg, MAP_UNITS.get(kind))]
    for map_name, (path, source) in s.maps.items():
        if reg is not None and path is not None and path.resolve() == reg.resolve():
            continue
        shown = source if source in MAP_UNITS else map_name  # R2* from a T2* map: show T2*
        out.append((shown, map_label(shown), path, MAP_UNITS.get(shown)))
    return out


def _draw(s: SubjectRecord, tmp_dir: Path) -> tuple[list[dict], list[dict]]:
    """Draw each overlay into ``tmp_dir``; (overlays drawn, notes) as JSON-ready records
    (an overlay's ``png`` is its path, dropped from the record)."""
    drawn, notes, cuts = [], [], None
    if s.labels is None or not s.labels.is_file():
        name = f" {s.labels.name}" if s.labels is not None else ""
        return drawn, [{"text": f"Label image{name} missing: no overlays.", "bad": False}]
    for slug, label, path, units in _backgrounds(s):
        if path is None or not path.is_file():
            name = f" ({path.name})" if path is not None else ""
            notes.append({"text": f"{label}: image not found{name}.", "bad": False})
            continue
        png = tmp_dir / f"{re.sub(r'[^A-Za-z0-9]', '', slug)}.png"
        try:
            if cuts is None:
                cuts = nuclei_cut_coords(s.labels, s.lookup)
            subject_overlays(path, s.labels, png, title=f"{s.key} · {label}", cut_coords=cuts,
                             units=units, lookup=s.lookup)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the report
            notes.append({"text": f"{label}: overlay failed ({exc})", "bad": True})
            continue
        drawn.append({"label": label, "name": png.name, "source": path.name, "png": png})
    return drawn, notes


def _thumbnail(png: Path | None, out: Path, width: int) -> dict:
    """A ``width``-pixel-wide copy of ``png`` (Pillow, antialiased), or a grey placeholder
    when there is no overlay; its name and size in pixels."""
    from PIL import Image

    if png is None:
        small = Image.new("RGB", (width, width // 3), "#dddddd")
    else:
        with Image.open(png) as img:
            height = max(1, round(img.height * width / img.width))
            small = img.convert("RGB").resize((width, height), Image.LANCZOS)
    with atomic_path(out) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    return {"file": out.name, "width": small.width, "height": small.height,
            "placeholder": png is None}


def _page_html(s: SubjectRecord, drawn: list[dict], notes: list[dict],
               index_href: str | None) -> str:
    qc = s.qc
    back = f'<p><a id="index-link" href="{index_href}">← group report</a></p>' \
        if index_href else ""
    facts = kv_table(subject_qc_facts(qc), "facts-table")
    voxels = qc.get("label_voxels") or {}
    if voxels:
        empty = [n for n, v in voxels.items() if not v and not n.startswith("DN")]
        if empty:
            facts += _note(f"No voxel labelled for: {esc(', '.join(empty))}", "bad")
        facts += ("<details open><summary>Labelled voxels per nucleus</summary>"
                  + table(pd.DataFrame([voxels]), f"voxels-{s.key}") + "</details>")
    if not qc:
        facts += _note("No registration QC record.", "bad")
    shown = [_note(esc(n["text"]), "bad" if n["bad"] else "note") for n in notes]
    shown += [f"<p class='small'>{esc(d['label'])}: {esc(d['source'])}</p>"
              + img_tag(d["png"], f"{s.key} {d['label']}") for d in drawn]
    sections = [("registration", "Registration", back + facts),
                ("overlays", "Nuclei overlays", "".join(shown) or _note("No overlay."))]
    return page(sections, title=f"brainiron report · {s.key}",
                subtitle="Native-space nuclei on the registration image and the quantified maps")


def build_subject_report(subject: SubjectInputs, out_dir: PathLike, *,
                         index: PathLike | None = None,
                         thumbnail_width: int = THUMBNAIL_WIDTH) -> Path:
    """Write a subject's report piece (overlays, thumbnail, page, JSON record).

    Parameters
    ----------
    subject : SubjectInputs
        The subject's registration QC record, labels and images to draw on.
    out_dir : path
        The piece folder (created; the workflow's is :func:`brainiron.layout.figures_dir`).
    index : path, optional
        The group report the page links back to (relative link); ``None``: no link.
    thumbnail_width : int
        Width of the thumbnail in pixels.

    Returns
    -------
    Path
        The JSON record (``<key>_report.json``), written last: a piece with a record is
        complete.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = subject_record(subject)
    href = relative_href(index, out_dir) if index is not None else None
    with tempfile.TemporaryDirectory(prefix="brainiron-report-") as tmp:  # overlays: embedded
        drawn, notes = _draw(s, Path(tmp))
        thumb = _thumbnail(drawn[0]["png"] if drawn else None,
                           out_dir / layout.figure_name("report_thumbnail", s.key),
                           thumbnail_width)
        page_path = write_text(_page_html(s, drawn, notes, href),
                               out_dir / layout.figure_name("report_subject", s.key))
    record = {"key": s.key, "page": page_path.name, "thumbnail": thumb,
              "overlays": [{k: d[k] for k in ("label", "name", "source")} for d in drawn],
              "notes": notes}
    return write_json(record, out_dir / layout.figure_name("report_subject_json", s.key))


def read_piece(piece_dir: PathLike, key: str) -> dict | None:
    """A piece's JSON record with ``dir`` (the folder) added; ``None`` when it is missing
    or unreadable (the group report then notes the subject's page as missing)."""
    path = Path(piece_dir) / layout.figure_name("report_subject_json", key)
    try:
        record = dict(read_json(path))
    except Exception:  # noqa: BLE001 - a missing piece is noted, not fatal
        return None
    record["dir"] = Path(piece_dir)
    return record
