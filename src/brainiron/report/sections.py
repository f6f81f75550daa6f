"""The report's sections, one function each: ``ReportData`` in, an HTML fragment out.

:func:`report_sections` lists them in page order as ``(anchor, title, html)``; the page
(:func:`brainiron.report.html.page`) adds the headings and the navigation.
"""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from .. import __version__
from .figures import group_figures, save_figure, truth_figure
from .html import esc, fmt, img_tag, kv_table, pretty_json, table
from .inputs import ReportData, SubjectRecord
from .methods import methods_html, methods_text
from .subject import relative_href
from .summaries import (
    MAP_UNITS,
    comparison_display,
    map_label,
    refinement_rows,
    summary_table,
    truth_comparison,
    truth_summary,
)

__all__ = [
    "comparison",
    "configuration",
    "group_figures_section",
    "methods",
    "phantom",
    "regional_summary",
    "report_sections",
    "software",
    "subjects",
    "summary",
]

#: Distributions whose versions the software section lists.
SOFTWARE = ("brainiron", "numpy", "scipy", "pandas", "nibabel", "nilearn", "matplotlib",
            "scikit-image", "statsmodels", "antspyx", "snakemake")


def _note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{text}</p>'


def summary(data: ReportData) -> str:
    """Counts, failed and ignored inputs, registration quality, refinement."""
    regions, subjects = data.regions, data.subjects
    n_subjects = regions["participant_id"].nunique() if regions is not None and \
        "participant_id" in regions else len({s.key.split("_")[0] for s in subjects})
    kv = [("subjects in the tables", n_subjects),
          ("subject sessions with registration", len(subjects)),
          ("maps", ", ".join(f"{m} ({MAP_UNITS.get(m, '?')})" for m in data.maps) or "none"),
          ("groups", ", ".join(
              f"{g} (n={regions.loc[regions['group'] == g, 'participant_id'].nunique()})"
              for g in data.groups) if regions is not None else "n/a"),
          ("failed subjects", 0 if data.failed is None else len(data.failed)),
          ("ignored files", 0 if data.ignored is None else len(data.ignored)),
          ("input", data.config.get("bids_dir") or "brainiron phantom"),
          ("report written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
          ("brainiron", __version__)]
    out = [kv_table(kv, "summary-table")]
    if regions is None:
        out.append(_note("group/regions.tsv is missing or unreadable: no tables or group "
                         "figures. Did the workflow finish?", "bad"))
    failed, ignored = data.failed, data.ignored
    if failed is not None and len(failed):
        out.append(_note("Subjects that could not be processed:", "bad"))
        out.append(table(failed, "failed-table", text_columns=list(failed.columns)))
    if ignored is not None and len(ignored):
        out.append("<details><summary>Ignored files</summary>"
                   + table(ignored, "ignored-table", text_columns=list(ignored.columns))
                   + "</details>")
    if subjects:
        out.append(_qc_table(data))
    if data.refined is not None and len(data.refined) and regions is not None:
        out.append("<h3>Contrast-aware refinement</h3><p class='small'>Regions whose "
                   "boundaries were refined from the χ / R2* contrast (refinement.enabled): "
                   "voxels and mean (map units) with the atlas labels and after refinement. "
                   "The group comparison and figures use the atlas rows; both are in "
                   "regions.tsv (segmentation column).</p>"
                   + table(refinement_rows(regions, data.refined), "refinement-table",
                           scroll=True, text_columns=["participant_id", "session_id", "map",
                                                      "region", "hemisphere"]))
    return "".join(out)


def _qc_table(data: ReportData) -> str:
    rows = []
    for s in data.subjects:
        row = {"subject": s.key, "registration image": s.qc.get("registration_image"),
               "NCC": s.qc.get("ncc"), "seconds": s.qc.get("seconds")}
        if data.regions is not None:
            pid = s.key.split("_ses-")[0]
            info = data.regions[data.regions["participant_id"] == pid]
            for c in ("group", "age", "sex"):
                if c in info:
                    row[c] = info[c].iloc[0] if len(info) else None
        rows.append(row)
    return ("<h3>Registration quality</h3><p class='small'>NCC: normalised cross-correlation "
            "of the registration image with the warped template inside the brain (1 = "
            "identical). Compare subjects with one another: a subject well below the others "
            "deserves a look at its overlays.</p>"
            + table(pd.DataFrame(rows), "qc-table",
                    text_columns=["subject", "registration image", "group", "sex"]))


def comparison(data: ReportData) -> str:
    """The group comparison table, significant rows highlighted."""
    comp = data.comparison
    if comp is None:
        return _note("No group/group_comparison.tsv: section skipped.")
    if comp.empty:
        return _note("The group comparison table is empty (one group only, or too few "
                     "subjects).")
    p_col = comp["p_fdr"] if "p_fdr" in comp else pd.Series(np.nan, index=comp.index)
    sig = pd.to_numeric(p_col, errors="coerce").lt(0.05).reset_index(drop=True)
    p_num = pd.to_numeric(p_col, errors="coerce")
    shown = comparison_display(comp)
    return (f"<p>{len(comp)} comparisons: {int(sig.sum())} with FDR-adjusted p &lt; 0.05 "
            f"(highlighted), {int(p_num.isna().sum())} without a p-value (too few subjects "
            "for the model's covariates, or a group without values).</p><p class='small'>"
            "Difference = group − reference, adjusted for the covariates, with its 95 % CI; "
            "units per row.</p>"
            + table(shown, "comparison-table", highlight=sig, scroll=True,
                    text_columns=[c for c in shown.columns if c in (
                        "outcome", "map", "units", "region", "hemisphere", "comparison",
                        "covariates")]))


def regional_summary(data: ReportData) -> str:
    """Mean ± SD by group of the regional statistic and of iron."""
    regions, statistic = data.regions, data.statistic
    if regions is None or statistic not in regions:
        return _note("No regional table.")
    out = [f"<p class='small'>Regional {esc(statistic)} (in the map's units): mean ± SD across "
           "subjects (n) by group.</p>",
           table(summary_table(regions, statistic, data.groups), "region-table", scroll=True,
                 text_columns=["map", "units", "region", "hemisphere"])]
    if "iron_mg_per_kg" in regions and regions["iron_mg_per_kg"].notna().any():
        iron = summary_table(regions, statistic, data.groups, value="iron_mg_per_kg")
        out.append("<h3>Iron by group (mg/kg wet tissue)</h3><p class='small'>Mean ± SD (n) "
                   "of iron_mg_per_kg; mean z: age-normative z-score (Hallgren & Sourander); "
                   "valid: the calibration holds in the region.</p>")
        out.append(table(iron, "iron-table", scroll=True, text_columns=[
            "map", "units", "region", "hemisphere", "calibration", "valid"]))
    else:
        out.append(_note("No iron columns in regions.tsv: iron table skipped."))
    return "".join(out)


def group_figures_section(data: ReportData) -> str:
    """Per map: the statistic by group and, with iron columns, iron versus age."""
    if data.regions is None:
        return ""
    made = group_figures(data.regions, data.figures_dir, statistic=data.statistic,
                         reference_group=data.settings.group_comparison.reference_group)
    out = []
    for name, png in made.items():
        map_name, _, what = name.partition("_")
        heading = (f"{map_label(map_name)}: iron versus age" if what == "iron_age" else
                   f"{map_label(map_name)}: regional {what} by group")
        out.append(f'<h3 id="figure-{esc(name)}">{esc(heading)}</h3>' + img_tag(png, name))
    if not any(k.endswith("_iron_age") for k in made):
        out.append(_note("No iron or age values in regions.tsv: iron-versus-age figures "
                         "skipped."))
    if not made:
        out.append(_note("No values to plot."))
    return "".join(out)


def phantom(data: ReportData) -> str:
    """Measured regional values versus the phantom's ground truth."""
    merged = truth_comparison(data.regions, data.truth) if data.truth is not None and \
        data.regions is not None else None
    if merged is None or merged.empty:
        return _note("No phantom truth tables matched the regional table.")
    png = save_figure(truth_figure(merged), data.figures_dir / "phantom_truth.png", 80)
    return ("<p class='small'>Measured regional mean (this pipeline: registered atlas labels) "
            "versus the phantom's true value in the true labels.</p>"
            + table(truth_summary(merged), "truth-table", text_columns=["quantity"])
            + img_tag(png, "phantom truth"))


def subjects(data: ReportData) -> str:
    """One small card per subject: a lazily loaded thumbnail of its first overlay and its
    key, both linking to the subject's own page (its report piece), and its NCC."""
    if not data.subjects:
        return _note("No subject with a registration QC file.")
    pieces = data.pieces or [None] * len(data.subjects)
    intro = ("<p class='small'>Each subject's nuclei overlays (registration image and maps, "
             "full size) and registration facts are on its own page: click a thumbnail.</p>"
             if data.overlays else _note("Overlays not drawn."))
    cards = [_subject_card(s, piece, data) for s, piece in zip(data.subjects, pieces,
                                                                strict=True)]
    return intro + '<div class="gallery">' + "".join(cards) + "</div>"


def _subject_card(s: SubjectRecord, piece: dict | None, data: ReportData) -> str:
    key = esc(s.key)
    caption = f"NCC {esc(fmt(s.qc.get('ncc')))}"
    voxels = s.qc.get("label_voxels") or {}
    empty = [n for n, v in voxels.items() if not v and not n.startswith("DN")]
    notes = [f"no voxel labelled for: {', '.join(empty)}"] if empty else []
    if piece is None:
        body = _note("No report page for this subject.", "bad") if data.overlays else ""
        return (f'<figure class="subject" id="{key}">{body}<figcaption>{key} · {caption}'
                f"</figcaption></figure>")
    href = relative_href(piece["dir"] / piece["page"], data.out_dir)
    notes += [n["text"] for n in piece.get("notes", []) if n.get("bad")]
    thumb = piece.get("thumbnail")
    img = ""
    if thumb:
        src = relative_href(piece["dir"] / thumb["file"], data.out_dir)
        img = (f'<a href="{href}"><img class="thumb" src="{src}" loading="lazy" '
               f'decoding="async" width="{int(thumb["width"])}" '
               f'height="{int(thumb["height"])}" alt="{key} overlay"></a>')
    bad = "".join(f"<br><span class='badtext'>{esc(n)}</span>" for n in notes)
    return (f'<figure class="subject" id="{key}">{img}<figcaption><a class="subject-page" '
            f'href="{href}">{key}</a> · {caption}{bad}</figcaption></figure>')


def methods(data: ReportData) -> str:
    """The methods paragraph from each stage's ``describe()``, with numbered references."""
    config, regions, comp = data.config, data.regions, data.comparison
    kinds = sorted({s.qc["registration_image"] for s in data.subjects
                    if s.qc.get("registration_image")})
    chi_template = any(str(s.qc.get("template_contrast", "")).startswith("chi")
                       for s in data.subjects)
    n_fitted = sum(any(kind == "derived" for _, kind in s.maps.values())
                   for s in data.subjects)
    calibrations = []
    if regions is not None and "calibration" in regions:
        calibrations = list(dict.fromkeys(regions["calibration"].dropna().astype(str)))
    covariates = None
    if comp is not None and not comp.empty:
        covariates = ", ".join(dict.fromkeys(comp["covariates"].dropna().astype(str))) \
            if "covariates" in comp else ""
    text = methods_text(
        data.settings, maps=data.maps, kinds=kinds, chi_template=chi_template,
        data="brainiron's synthetic phantom" if not config.get("bids_dir") and config
        else "the BIDS dataset", n_fitted=n_fitted, calibrations=calibrations,
        covariates=covariates,
        n_reconstructed=sum(any(kind == "qsm" for _, kind in s.maps.values())
                            for s in data.subjects))
    return methods_html(text)


def configuration(data: ReportData) -> str:
    """The run's configuration as JSON."""
    return ('<p class="small">From dataset_description.json (GeneratedBy Configuration), '
            "unless given to the report.</p>"
            f'<pre id="configuration-text">{esc(pretty_json(data.config))}</pre>')


def software(data: ReportData | None = None) -> str:
    """Versions of Python and of the packages brainiron uses."""
    versions = {"python": platform.python_version()}
    for dist in SOFTWARE:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    frame = pd.DataFrame(list(versions.items()), columns=["package", "version"])
    return table(frame, "software-table", text_columns=["package", "version"])


def report_sections(data: ReportData) -> list[tuple[str, str, str]]:
    """Every section in page order: ``(anchor, title, html)`` (the phantom section only
    when truth tables were given)."""
    out = [("summary", "Summary", summary(data)),
           ("comparison", "Group comparison", comparison(data)),
           ("regions", "Regional summary", regional_summary(data)),
           ("figures", "Group figures", group_figures_section(data))]
    if data.phantom:
        out.append(("phantom", "Phantom ground truth", phantom(data)))
    out += [("subjects", "Subjects", subjects(data)),
            ("methods", "Methods", methods(data)),
            ("configuration", "Configuration", configuration(data)),
            ("software", "Software", software(data))]
    return out
