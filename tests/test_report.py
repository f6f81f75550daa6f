"""Figures and the HTML report (brainiron.report), on a small phantom with its true labels.

The fixture needs no registration: the phantom's ground-truth label images stand in for the
warped atlas, and the regional table is computed from them with ``regional_stats``.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from brainiron import atlas, generate_phantom, layout, norms, regional_stats
from brainiron.io import read_tsv, write_json, write_tsv
from brainiron.phantom import truth_dir, truth_path
from brainiron.references import reference, references
from brainiron.report import (
    REGION_COLOURS,
    SubjectInputs,
    build_report,
    build_subject_report,
    group_figures,
    methods_text,
    nuclei_cut_coords,
    number_citations,
    subject_overlays,
)
from brainiron.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CALIBRATIONS = {"Chimap": "langkammer2012_chi", "R2starmap": "gelman1999_invivo_r2star"}
UNITS = {"Chimap": "ppm", "R2starmap": "1/s"}
DSEG = "space-individual_atlas-CIT168_dseg"


# --------------------------------------------------------------------------------------------
# Fixture: a derivatives folder made from the phantom's truth
# --------------------------------------------------------------------------------------------


def _add_iron(regions: pd.DataFrame) -> pd.DataFrame:
    """Iron columns as the iron stage writes them, from the calibration lines."""
    cal = norms.calibrations()
    out = regions.copy()
    out["calibration"] = out["map"].map(CALIBRATIONS)
    slope = out["calibration"].map(cal["slope"]).astype(float)
    intercept = out["calibration"].map(cal["intercept"]).astype(float)
    out["calibration_valid"] = out["region"] != "Thal"
    out["iron_mg_per_kg"] = (out["mean"] - intercept) / slope
    out["iron_sd_mg_per_kg"] = out["sd"] / slope / np.sqrt(out["n_valid"].clip(lower=1))
    norm_of = atlas.region_table().drop_duplicates("region").set_index("region")["norm_region"]
    out["norm_region"] = out["region"].map(norm_of)
    out["iron_expected_mg_per_kg"] = [
        float(norms.expected_iron(r, a)) for r, a in zip(out["norm_region"], out["age"],
                                                          strict=True)]
    sd = out["norm_region"].map(norms.iron_norms()["sd_mg_per_kg"])
    out["iron_z"] = (out["iron_mg_per_kg"] - out["iron_expected_mg_per_kg"]) / sd
    return out


def _comparison(regions: pd.DataFrame) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(3)
    keys = regions[regions["mean"].notna()].drop_duplicates(["map", "region", "hemisphere"])
    for k, row in enumerate(keys.itertuples()):
        d = regions[(regions["map"] == row.map) & (regions["region"] == row.region)
                    & (regions["hemisphere"] == row.hemisphere)]
        ref = d.loc[d["group"] == "control", "mean"]
        grp = d.loc[d["group"] == "rls", "mean"]
        diff = float(grp.mean() - ref.mean())
        p = 0.001 if k == 0 else float(rng.uniform(0.05, 1))
        rows.append({"outcome": "mean", "map": row.map, "units": row.units,
                     "region": row.region, "hemisphere": row.hemisphere,
                     "reference_group": "control", "group": "rls", "n_reference": len(ref),
                     "n_group": len(grp), "mean_reference": ref.mean(), "sd_reference": np.nan,
                     "mean_group": grp.mean(), "sd_group": np.nan, "difference": diff,
                     "ci_low": diff - 0.01, "ci_high": diff + 0.01, "p": p,
                     "p_fdr": min(1.0, p * 10), "cohens_d": 0.5, "covariates": "age"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """Phantom (2 subjects, 4 mm: sub-01 RAS, sub-02 LPS) and derivatives with iron columns."""
    root = tmp_path_factory.mktemp("report")
    bids = root / "bids"
    generate_phantom(bids, n_subjects=2, voxel_size=(4.0, 4.0, 4.0))
    truth = truth_dir(bids)
    deriv = root / "brainiron"
    people = read_tsv(bids / "participants.tsv")
    frames = []
    for pid in people["participant_id"]:
        anat = deriv / pid / "anat"
        anat.mkdir(parents=True)
        for ext in (".nii.gz", ".tsv"):
            shutil.copy(truth_dir(bids, pid) / f"{pid}_{DSEG}{ext}", anat)
        dseg = anat / f"{pid}_{DSEG}.nii.gz"
        labels = np.asarray(nib.load(dseg).dataobj)
        lookup = read_tsv(anat / f"{pid}_{DSEG}.tsv")
        raw = bids / pid / "anat"
        write_json({"registration_image": "T1w",
                    "registration_image_path": str(raw / f"{pid}_T1w.nii.gz"),
                    "template": "MNI152NLin2009cAsym",
                    "settings": {"transform": "SyN", "syn_metric": "CC"},
                    "ncc": 0.95, "seconds": 1.5,
                    "label_voxels": {n: int((labels == i).sum()) for i, n in
                                     zip(lookup["index"], lookup["name"], strict=True)}},
                   anat / f"{pid}_desc-registration_qc.json")
        write_json({"subject": {"maps": {m: str(raw / f"{pid}_{m}.nii.gz") for m in UNITS},
                                "t1w": str(raw / f"{pid}_T1w.nii.gz")}},
                   anat / f"{pid}_desc-validated_inputs.json")
        for map_name, units in UNITS.items():
            table = regional_stats(raw / f"{pid}_{map_name}.nii.gz", dseg)
            table.insert(0, "participant_id", pid)
            table.insert(1, "session_id", np.nan)
            table.insert(2, "map", map_name)
            table.insert(3, "units", units)
            table.insert(4, "source", f"{pid}_{map_name}.nii.gz")
            frames.append(table)
    regions = pd.concat(frames, ignore_index=True).merge(people, on="participant_id")
    regions["registration_image"] = "T1w"
    regions["registration_ncc"] = 0.95
    regions = _add_iron(regions)
    write_tsv(regions, deriv / "group" / "regions.tsv")
    write_tsv(_comparison(regions), deriv / "group" / "group_comparison.tsv")
    write_tsv(pd.DataFrame({"subject": ["sub-09"], "error": ["sub-09: no Chimap found"]}),
              deriv / "group" / "failed.tsv")
    config = {"bids_dir": "", "maps": ["Chimap", "R2starmap"],
              "registration": {"transform": "SyN", "syn_metric": "CC"},
              "iron": {"calibrations": CALIBRATIONS, "statistic": "mean"},
              "group_comparison": {"reference_group": "control", "covariates": ["age"],
                                   "statistic": "mean"}}
    write_json({"Name": "brainiron regional iron", "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "brainiron", "Configuration": config}]},
               deriv / "dataset_description.json")
    return {"root": root, "bids": bids, "truth": truth, "deriv": deriv, "regions": regions,
            "pids": list(people["participant_id"])}


def _group_inputs(deriv: Path) -> dict:
    """The group tables and dataset description, as the report rule names them."""
    group = deriv / "group"
    return {"regions": group / "regions.tsv", "comparison": group / "group_comparison.tsv",
            "failed": group / "failed.tsv", "ignored": group / "ignored.tsv",
            "description": deriv / "dataset_description.json"}


def _subject(deriv: Path, key: str, raw: Path, pid: str) -> SubjectInputs:
    """A subject's QC and labels in ``deriv``; its T1w, χ and R2* images in ``raw``."""
    return SubjectInputs.from_layout(
        deriv, key, registration_image=raw / f"{pid}_T1w.nii.gz",
        maps={m: raw / f"{pid}_{m}.nii.gz" for m in UNITS})


def _subjects(workspace: dict, bids: Path | None = None) -> list[SubjectInputs]:
    bids = workspace["bids"] if bids is None else bids
    return [_subject(workspace["deriv"], pid, bids / pid / "anat", pid)
            for pid in workspace["pids"]]


def _truth_tables(workspace: dict) -> list[Path]:
    return [truth_path(workspace["bids"], pid) for pid in workspace["pids"]]


def _pieces(deriv: Path, subjects: list[SubjectInputs], index: Path) -> list[Path]:
    """Each subject's report piece, where the workflow's report_subject rule puts it."""
    folders = [layout.figures_dir(deriv, s.key) for s in subjects]
    for s, folder in zip(subjects, folders, strict=True):
        build_subject_report(s, folder, index=index)
    return folders


@pytest.fixture(scope="module")
def report(workspace) -> Path:
    """The group report as the workflow makes it: the pieces first, then the group page."""
    out = workspace["deriv"] / "report" / "index.html"
    subjects = _subjects(workspace)
    return build_report(out, subjects, **_group_inputs(workspace["deriv"]),
                        phantom_truth=_truth_tables(workspace),
                        pieces=_pieces(workspace["deriv"], subjects, out))


# --------------------------------------------------------------------------------------------
# HTML parsing
# --------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Tables (by id: header cells, body rows), images, and the text of elements by id."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.images: list[str] = []
        self.image_attrs: list[dict] = []
        self.anchors: list[str] = []
        self.ids: list[str] = []
        self.scripts = 0
        self.links: list[str] = []
        self._table = None
        self._in_head = self._in_body = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "a" and a.get("href"):
            self.anchors.append(a["href"])
        if tag == "table":
            self._table = a.get("id", f"table-{len(self.tables)}")
            self.tables[self._table] = {"header": [], "rows": []}
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src", ""))
            self.image_attrs.append(a)
        elif tag == "script":
            self.scripts += 1
            if a.get("src"):
                self.links.append(a["src"])
        elif tag == "link" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            key = "header" if self._in_head else "rows"
            if key == "header":
                self.tables[self._table]["header"] = self._row
            else:
                self.tables[self._table]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> tuple[_Page, str]:
    text = path.read_text()
    page = _Page()
    page.feed(text)
    return page, text


def _index_link(text: str) -> str:
    """The subject page's link back to the group report."""
    return re.search(r'id="index-link" href="([^"]+)"', text).group(1)


def _png(path: Path) -> np.ndarray:
    return imread(path)[..., :3]


# --------------------------------------------------------------------------------------------
# Cuts and overlays
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", ["sub-01", "sub-02"])  # RAS, LPS
def test_cut_coords_pass_through_the_nuclei(workspace, pid):
    dseg = workspace["deriv"] / pid / "anat" / f"{pid}_{DSEG}.nii.gz"
    img = nib.load(dseg)
    labels = np.asarray(img.dataobj)
    cuts = nuclei_cut_coords(dseg)
    assert set(cuts) == {"SN", "GP"}
    for name, members in (("SN", [1, 2]), ("GP", [5, 6])):
        xyz = np.asarray(cuts[name])
        ijk = np.linalg.solve(img.affine, np.r_[xyz, 1.0])[:3]
        left = np.argwhere(np.isin(labels, members))
        right = np.argwhere(np.isin(labels, [m + 10 for m in members]))
        # The cut point lies within ~2 voxels of the left nucleus, far from the right one.
        assert np.min(np.linalg.norm(left - ijk, axis=1)) < 2.5
        assert np.min(np.linalg.norm(right - ijk, axis=1)) > 2.5


def test_subjects_carry_their_lookup_table(workspace, tmp_path):
    """The label names come from the given lookup table (the rule's ``labels_tsv``); a
    missing one falls back to brainiron's region table, never to a guessed path."""
    from dataclasses import replace

    from brainiron.report.inputs import load_report_data

    s = _subjects(workspace)[0]
    assert s.lookup == workspace["deriv"] / "sub-01" / "anat" / f"sub-01_{DSEG}.tsv"
    data = load_report_data([s, replace(s, lookup=tmp_path / "missing.tsv")],
                            figures_dir=tmp_path)
    table = read_tsv(s.lookup)
    assert data.subjects[0].lookup == dict(zip(table["index"], table["name"], strict=True))
    assert data.subjects[1].lookup is None
    assert nuclei_cut_coords(s.labels, s.lookup) == nuclei_cut_coords(s.labels, table) \
        == nuclei_cut_coords(s.labels)


def _colour_pixels(image: np.ndarray, hex_colour: str, tol: float = 0.12) -> int:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    return int((np.abs(image - rgb).max(axis=-1) < tol).sum())


@pytest.mark.parametrize("pid", ["sub-01", "sub-02"])
def test_subject_overlay_png(workspace, tmp_path, pid):
    raw = workspace["bids"] / pid / "anat"
    dseg = workspace["deriv"] / pid / "anat" / f"{pid}_{DSEG}.nii.gz"
    out = subject_overlays(raw / f"{pid}_Chimap.nii.gz", dseg, tmp_path / "chi.png",
                           title=f"{pid} chi", units="ppm")
    assert out == tmp_path / "chi.png"
    assert out.stat().st_size > 30_000
    image = _png(out)
    assert image.shape[1] == 12 * 90  # 12 inches at 90 dpi
    assert image.std() > 0.1  # not blank
    # Every nucleus of both rows is drawn in its colour (contours are a few pixels wide).
    for region in ("SNc_PBP_VTA", "SNr", "GPe", "GPi", "Pu", "Ca"):
        assert _colour_pixels(image, REGION_COLOURS[region]) > 30, region
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_overlay_does_not_depend_on_voxel_order(workspace, tmp_path):
    """The same image stored RAS and LPS (same world coordinates) gives the same picture."""
    raw = workspace["bids"] / "sub-01" / "anat"
    dseg = workspace["deriv"] / "sub-01" / "anat" / f"sub-01_{DSEG}.nii.gz"
    chi, lab = nib.load(raw / "sub-01_Chimap.nii.gz"), nib.load(dseg)
    assert nib.aff2axcodes(chi.affine) == ("R", "A", "S")
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(chi.shape[:2]) - 1  # voxel (i, j) -> (n - 1 - i, m - 1 - j)

    def lps(img):
        data = np.asarray(img.dataobj)[::-1, ::-1, :]
        return nib.Nifti1Image(data, img.affine @ flip)

    assert nib.aff2axcodes(lps(chi).affine) == ("L", "P", "S")
    lookup = read_tsv(dseg.with_name(f"sub-01_{DSEG}.tsv"))
    a = subject_overlays(chi, lab, tmp_path / "ras.png", lookup=lookup)
    b = subject_overlays(lps(chi), lps(lab), tmp_path / "lps.png", lookup=lookup)
    np.testing.assert_array_equal(_png(a), _png(b))


def test_oblique_overlay(workspace, tmp_path):
    """An oblique grid (rotated 20° about two axes) is drawn with its nuclei."""
    raw = workspace["bids"] / "sub-01" / "anat"
    dseg = workspace["deriv"] / "sub-01" / "anat" / f"sub-01_{DSEG}.nii.gz"
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ \
        np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]])

    def oblique(path):
        img = nib.load(path)
        return nib.Nifti1Image(np.asarray(img.dataobj), rot @ img.affine)

    out = subject_overlays(oblique(raw / "sub-01_R2starmap.nii.gz"), oblique(dseg),
                           tmp_path / "oblique.png", units="1/s",
                           lookup=read_tsv(dseg.with_name(f"sub-01_{DSEG}.tsv")))
    image = _png(out)
    assert image.std() > 0.1
    for region in ("SNr", "GPi", "Pu"):
        assert _colour_pixels(image, REGION_COLOURS[region]) > 30, region


# --------------------------------------------------------------------------------------------
# Group figures
# --------------------------------------------------------------------------------------------


def test_group_figures_with_and_without_iron(workspace, tmp_path):
    regions = workspace["regions"]
    made = group_figures(regions, tmp_path / "with")
    assert list(made) == ["Chimap_mean", "Chimap_iron_age", "R2starmap_mean",
                          "R2starmap_iron_age"]
    for path in made.values():
        assert path.stat().st_size > 20_000
        assert _png(path).std() > 0.05
    plain = regions.drop(columns=[c for c in regions.columns if "iron" in c
                                  or c.startswith("calibration")])
    made = group_figures(plain, tmp_path / "without", statistic="median")
    assert list(made) == ["Chimap_median", "R2starmap_median"]
    # No group column: everyone in one group.
    assert list(group_figures(plain.drop(columns=["group"]), tmp_path / "nogroup")) == [
        "Chimap_mean", "R2starmap_mean"]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def test_report_tables(workspace, report):
    page, text = _parse(report)
    regions = workspace["regions"]
    comparison = read_tsv(workspace["deriv"] / "group" / "group_comparison.tsv")
    table = page.tables["region-table"]
    assert table["header"][:4] == ["map", "units", "region", "hemisphere"]
    assert {"control", "rls"} <= set(table["header"])
    expected = regions[regions["mean"].notna()].drop_duplicates(["map", "region", "hemisphere"])
    assert len(table["rows"]) == len(expected)
    assert "n/a" not in {row[0] for row in table["rows"]}
    iron = page.tables["iron-table"]
    assert len(iron["rows"]) == len(expected)
    assert "calibration" in iron["header"]
    thal = [r for r in iron["rows"] if r[2] == "Thal"]
    assert thal and all(r[-1] == "no" for r in thal)  # calibration not valid there
    comp = page.tables["comparison-table"]
    assert len(comp["rows"]) == len(comparison)
    assert {"p", "p_fdr", "cohens_d", "difference [95% CI]"} <= set(comp["header"])
    assert text.count('<tr class="sig">') == int((comparison["p_fdr"] < 0.05).sum())
    qc = page.tables["qc-table"]
    assert [r[0] for r in qc["rows"]] == ["sub-01", "sub-02"]
    assert page.tables["failed-table"]["rows"] == [["sub-09", "sub-09: no Chimap found"]]
    versions = dict(page.tables["software-table"]["rows"])
    assert versions["brainiron"] != "not installed"
    assert {"numpy", "scipy", "nibabel", "nilearn", "antspyx", "snakemake"} <= set(versions)
    truth = {r[0]: r for r in page.tables["truth-table"]["rows"]}
    assert float(truth["χ (ppm)"][-1]) > 0.99  # true labels: measured = truth up to noise
    assert "&quot;langkammer2012_chi&quot;" in text  # the configuration section


def _local_targets(page: _Page, folder: Path) -> list[Path]:
    """Every image and link of a page that is a file (not data:, not #anchor), resolved."""
    refs = [r for r in [*page.images, *page.anchors] if not r.startswith(("data:", "#"))]
    for ref in refs:
        assert not re.match(r"^([a-z]+:)?/", ref), f"not a relative link: {ref}"
    return [(folder / ref).resolve() for ref in refs]


def test_report_embeds_group_figures_and_links_each_subject_page(workspace, report):
    """The group page embeds its few group figures; per subject one lazily loaded,
    360-pixel-wide thumbnail file, linking (relatively) to the subject's page."""
    page, text = _parse(report)
    embedded = [s for s in page.images if s.startswith("data:")]
    assert len(embedded) == 2 * 2 + 1  # 2 group figures per map and the phantom truth
    for src in embedded:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    thumbs = [a for a in page.image_attrs if not a["src"].startswith("data:")]
    assert len(thumbs) == len(workspace["pids"])
    for pid, attrs in zip(workspace["pids"], thumbs, strict=True):
        assert attrs["loading"] == "lazy"
        png = (report.parent / attrs["src"]).resolve()
        assert png == layout.figures_dir(workspace["deriv"], pid) / layout.figure_name(
            "report_thumbnail", pid)
        image = _png(png)
        assert image.shape[:2] == (int(attrs["height"]), int(attrs["width"])) and \
            image.shape[1] == 360
        assert image.std() > 0.05
    pages = {layout.figures_dir(workspace["deriv"], pid) / layout.figure_name(
        "report_subject", pid) for pid in workspace["pids"]}
    targets = _local_targets(page, report.parent)
    assert pages <= set(targets) and all(p.is_file() for p in targets)
    assert not page.links  # no external script or style sheet
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)
    assert page.scripts == 1 and "imagesLoaded" in text
    for png in (report.parent / "figures").glob("*.png"):
        assert png.stat().st_size > 20_000


def test_subject_page_shows_its_qc_and_full_size_overlays(workspace, report):
    """A subject's page: the registration QC record's values, the voxels of each nucleus
    (counted here in the label image), its three overlays (T1w, χ, R2*) at full size."""
    for pid in workspace["pids"]:
        folder = layout.figures_dir(workspace["deriv"], pid)
        page, text = _parse(folder / layout.figure_name("report_subject", pid))
        qc = json.loads(layout.subject_path(workspace["deriv"], "registration_qc", pid)
                        .read_text())
        facts = dict(page.tables["facts-table"]["rows"])
        assert float(facts["NCC"]) == qc["ncc"] == 0.95
        assert facts["registration image"] == "T1w" and facts["template"] == qc["template"]
        assert facts["registration file"] == f"{pid}_T1w.nii.gz"
        dseg = layout.subject_path(workspace["deriv"], "dseg", pid)
        labels = np.asarray(nib.load(dseg).dataobj)
        lookup = read_tsv(layout.subject_path(workspace["deriv"], "dseg_tsv", pid))
        voxels = page.tables[f"voxels-{pid}"]
        counts = dict(zip(voxels["header"], map(int, voxels["rows"][0]), strict=True))
        assert counts == {n: int((labels == i).sum()) for i, n in
                          zip(lookup["index"], lookup["name"], strict=True)}
        assert len(page.images) == 3
        for src in page.images:  # embedded: the page is one file
            assert src.startswith("data:image/png;base64,")
            image = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))[..., :3]
            assert image.shape[1] == 12 * 90 and image.std() > 0.1
        assert (folder / _index_link(text)).resolve() == report.resolve()  # back to the index
        record = json.loads((folder / layout.figure_name("report_subject_json", pid))
                            .read_text())
        assert [o["source"] for o in record["overlays"]] == [
            f"{pid}_{m}.nii.gz" for m in ("T1w", "Chimap", "R2starmap")]
        assert record["notes"] == [] and not record["thumbnail"]["placeholder"]


def test_report_links_survive_moving_the_derivatives(workspace, report, tmp_path):
    """Every link of the group page and of the subject pages is relative: a moved copy of
    the derivatives folder opens its own files, none of the original's."""
    moved = tmp_path / "elsewhere" / "brainiron"
    shutil.copytree(workspace["deriv"], moved)
    index = moved / "report" / "index.html"
    page, _ = _parse(index)
    targets = _local_targets(page, index.parent)
    for pid in workspace["pids"]:
        sub_page = layout.figures_dir(moved, pid) / layout.figure_name("report_subject", pid)
        sub, _ = _parse(sub_page)
        targets += _local_targets(sub, sub_page.parent)
    # per subject: on the group page its thumbnail and two links to its page; on its page
    # the link back (its overlays are embedded)
    assert len(targets) == 3 * len(workspace["pids"]) + len(workspace["pids"])
    for target in targets:
        assert target.is_file() and target.is_relative_to(moved.resolve()), target


def test_methods_cite_the_calibrations(report):
    _, text = _parse(report)
    methods = re.search(r'<p id="methods-text">(.*?)</p>', text, re.S).group(1)
    references = re.search(r'<ol id="references">(.*?)</ol>', text, re.S).group(1)
    cal = norms.calibrations()
    for name in CALIBRATIONS.values():
        assert name in methods
        source = cal.loc[name, "source"].replace("&", "&amp;")
        assert source in references, source
    for cited in ("NeuroImage 54:313", "Sci Data 5:180063", "Med Image Anal 12:26",
                  "J Neurochem 3:41"):
        assert cited in references
    # Calibrations not in the table are not cited.
    assert cal.loc["langkammer2010_r2star", "source"] not in references


def test_report_degrades_without_iron_or_comparison(workspace, tmp_path):
    deriv = tmp_path / "brainiron"
    shutil.copytree(workspace["deriv"], deriv, ignore=shutil.ignore_patterns("report"))
    (deriv / "group" / "group_comparison.tsv").unlink()
    (deriv / "group" / "failed.tsv").unlink()
    regions = read_tsv(deriv / "group" / "regions.tsv")
    keep = [c for c in regions.columns if "iron" not in c and not c.startswith("calibration")]
    write_tsv(regions[keep], deriv / "group" / "regions.tsv")
    subjects = [_subject(deriv, pid, workspace["bids"] / pid / "anat", pid)
                for pid in workspace["pids"]]
    out = build_report(tmp_path / "index.html", subjects, **_group_inputs(deriv),
                       overlays=False, config={"maps": ["Chimap"], "bids_dir": "/data/ds"})
    page, text = _parse(out)
    assert "No group/group_comparison.tsv" in text
    assert "iron table skipped" in text and "iron-versus-age figures skipped" in text
    assert "comparison-table" not in page.tables and "iron-table" not in page.tables
    assert len(page.images) == 2  # the two maps' group figures
    methods = re.search(r'<p id="methods-text">(.*?)</p>', text, re.S).group(1)
    assert "calibration" not in methods
    assert json.loads(re.search(r'<pre id="configuration-text">(.*?)</pre>', text,
                                re.S).group(1).replace("&quot;", '"'))["bids_dir"] == "/data/ds"


def test_report_draws_the_images_it_is_given(workspace, tmp_path):
    """The pieces read the image paths they are given (they search no folder): images that
    do not exist (a moved dataset) are noted, not fatal; the moved copies are drawn. Without
    explicit piece folders the group report draws the pieces itself (library use)."""
    bids = tmp_path / "moved"
    shutil.copytree(workspace["bids"] / "sub-01", bids / "sub-01")
    deriv = tmp_path / "brainiron"
    shutil.copytree(workspace["deriv"] / "sub-01", deriv / "sub-01")
    gone = [_subject(deriv, "sub-01", Path("/gone/sub-01/anat"), "sub-01")]
    out = build_report(tmp_path / "a" / "index.html", gone, **_group_inputs(deriv))
    page, text = _parse(out)
    assert "regions.tsv is missing or unreadable" in text
    piece = out.parent / "subjects" / "sub-01"
    sub, sub_text = _parse(piece / "sub-01_report.html")
    assert not sub.images and sub_text.count("image not found") == 3  # T1w, χ, R2*
    # the group page shows a grey placeholder (the rule's thumbnail output always exists)
    assert json.loads((piece / "sub-01_report.json").read_text())["thumbnail"]["placeholder"]
    assert len(page.images) == 1 and _png(piece / page.images[0].split("/")[-1]).std() < 1e-6
    moved = [_subject(deriv, "sub-01", bids / "sub-01" / "anat", "sub-01")]
    out = build_report(tmp_path / "b" / "index.html", moved, **_group_inputs(deriv))
    page, _ = _parse(out)
    assert [a["loading"] for a in page.image_attrs] == ["lazy"]
    sub, sub_text = _parse(out.parent / "subjects" / "sub-01" / "sub-01_report.html")
    assert len(sub.images) == 3 and "image not found" not in sub_text
    # A subject whose piece is missing is noted on the group page, not fatal.
    page, text = _parse(build_report(tmp_path / "c.html", moved, **_group_inputs(deriv),
                                     pieces=[tmp_path / "nowhere"]))
    assert not page.images and "No report page for this subject" in text
    with pytest.raises(ValueError, match="out of step"):
        build_report(tmp_path / "d.html", moved, **_group_inputs(deriv), pieces=[])


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------


def chromium_command(profile: Path, *args: str) -> list[str]:
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
            *args]


def _chromium_counts(page_path: Path, profile: Path) -> tuple[int, int]:
    """(images decoded, images) of a page opened in headless Chromium; the window is tall
    enough for every lazily loaded thumbnail to be in view, hence loaded."""
    result = subprocess.run(
        chromium_command(profile, "--window-size=1400,20000", "--dump-dom",
                         page_path.resolve().as_uri()),
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body[^>]*>", result.stdout)
    assert body, result.stdout[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, body.group(0)
    return int(loaded.group(1)), int(total.group(1))


def test_report_images_load_in_chromium(workspace, report, tmp_path):
    """Chromium decodes every image of the group page (embedded figures and the thumbnail
    files) and of a subject's page (its overlay files)."""
    if not CHROMIUM.exists():
        print("chromium not installed (apt-get install -y chromium): browser check skipped")
        pytest.skip("chromium not installed at /usr/bin/chromium")
    page, _ = _parse(report)
    assert _chromium_counts(report, tmp_path / "profile") == (len(page.images),) * 2
    pid = workspace["pids"][1]
    sub_page = layout.figures_dir(workspace["deriv"], pid) / layout.figure_name(
        "report_subject", pid)
    assert _chromium_counts(sub_page, tmp_path / "profile2") == (3, 3)


def test_report_with_sessions(workspace, tmp_path):
    """Subjects with sessions (sub-01/ses-1/anat/sub-01_ses-1_...) get their own section."""
    deriv = tmp_path / "brainiron"
    anat = deriv / "sub-01" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    for f in (workspace["deriv"] / "sub-01" / "anat").iterdir():
        shutil.copy(f, anat / f.name.replace("sub-01_", "sub-01_ses-1_"))
    regions = workspace["regions"]
    regions = regions[regions["participant_id"] == "sub-01"].assign(session_id="ses-1")
    write_tsv(regions, deriv / "group" / "regions.tsv")
    subjects = [_subject(deriv, "sub-01_ses-1", workspace["bids"] / "sub-01" / "anat",
                         "sub-01")]
    index = deriv / "report" / "index.html"
    page, text = _parse(build_report(index, subjects, **_group_inputs(deriv),
                                     pieces=_pieces(deriv, subjects, index)))
    assert [r[0] for r in page.tables["qc-table"]["rows"]] == ["sub-01_ses-1"]
    assert 'id="sub-01_ses-1"' in text
    assert len(page.images) == 2 * 2 + 1  # two figures per map, one thumbnail
    folder = deriv / "sub-01" / "ses-1" / "figures"
    assert page.anchors[-1] == "../sub-01/ses-1/figures/sub-01_ses-1_report.html"
    sub, sub_text = _parse(folder / "sub-01_ses-1_report.html")
    assert len(sub.images) == 3
    assert (folder / _index_link(sub_text)).resolve() == index.resolve()


# --------------------------------------------------------------------------------------------
# Methods text and references
# --------------------------------------------------------------------------------------------


def test_number_citations_in_order_of_first_use():
    text, keys = number_citations("a [@fonov] b [@avants; @fonov] c [@cal:invivo_chi] [x]")
    assert text == "a [1] b [2, 1] c [3] [x]"
    assert keys == ["fonov", "avants", "cal:invivo_chi"]


def test_references_table_and_calibration_keys():
    table = references()
    assert {"fonov", "pauli", "fischl", "avants", "hallgren", "bh"} <= set(table.index)
    assert list(table.columns) == ["citation", "doi"]
    assert table["citation"].str.len().gt(40).all()
    assert reference("fonov").startswith("Fonov V") and "NeuroImage 54:313-327" in \
        reference("fonov") and reference("fonov").endswith("doi:10.1016/j.neuroimage.2010.07.033")
    cal = norms.calibrations().loc["langkammer2012_chi"]
    assert reference("cal:langkammer2012_chi") == f"{cal['source']} doi:{cal['doi']}"
    assert "doi:" not in reference("cal:invivo_chi")  # no DOI in the table
    with pytest.raises(KeyError, match="references.tsv"):
        reference("nobody2024")
    with pytest.raises(KeyError, match="calibrations.tsv"):
        reference("cal:nothing")


def test_methods_text_from_each_stage():
    """Every stage's sentence, only for the stages that ran; every marker resolves."""
    settings = Settings.from_config({"refinement": {"enabled": True},
                                     "chi_reference": "wholebrain"})
    text = methods_text(settings, data="the BIDS dataset", maps=["Chimap", "R2starmap"],
                        kinds=["T1w"], chi_template=False, n_fitted=2,
                        calibrations=["langkammer2012_chi"], covariates="age, sex")
    for phrase in ("Regional values of magnetic susceptibility", "MNI152NLin2009cAsym",
                   "dentate nucleus", "were refined", "(nlls) for 2 subject session(s)",
                   "whole brain", "langkammer2012_chi", "covariates (age, sex)"):
        assert phrase in text, phrase
    numbered, keys = number_citations(text)
    assert "[@" not in numbered
    assert keys[:2] == ["fonov", "avants"] and "cal:langkammer2012_chi" in keys
    assert {"pauli", "fischl", "hallgren", "bh"} <= set(keys)
    assert all(reference(k) for k in keys)
    plain = methods_text(Settings(), data="the BIDS dataset", maps=["Chimap"], kinds=["T1w"],
                         chi_template=False, n_fitted=0, calibrations=[], covariates=None)
    for phrase in ("refined", "fitted", "whole brain", "calibration", "Groups were compared"):
        assert phrase not in plain, phrase


def test_reconstructed_chi_is_in_the_methods():
    text = methods_text(Settings(), data="the BIDS dataset", maps=["Chimap"], kinds=["T1w"],
                        chi_template=False, n_fitted=0, calibrations=[], covariates=None,
                        n_reconstructed=3)
    assert "For 3 subject session(s) without a χ map, χ was reconstructed" in text
    assert "vsharp background field removal, tv_admm dipole inversion" in text
    numbered, keys = number_citations(text)
    assert "qsm_consensus" in keys and "[@" not in numbered
    assert "10.1002/mrm.30006" in reference("qsm_consensus")


def test_assets_are_package_data():
    from brainiron.report.html import asset, page

    assert "table.data" in asset("report.css") and "imagesLoaded" in asset("report.js")
    out = page([("a", "A & B", "<p>x</p>")], title="t", subtitle="s")
    assert "$" not in out and '<h2 id="a">A &amp; B</h2><p>x</p>' in out
    assert '<nav><a href="#a">A &amp; B</a></nav>' in out


def test_fitted_r2star_is_in_the_methods(workspace, tmp_path):
    """Subjects whose R2* map is ``derived`` (fitted by brainiron) are counted in the methods;
    the fitted map is drawn as R2*."""
    raw = {pid: workspace["bids"] / pid / "anat" for pid in workspace["pids"]}
    subjects = [SubjectInputs.from_layout(
        workspace["deriv"], pid, registration_image=raw[pid] / f"{pid}_T1w.nii.gz",
        maps={"Chimap": (raw[pid] / f"{pid}_Chimap.nii.gz", "Chimap"),
              "R2starmap": (raw[pid] / f"{pid}_R2starmap.nii.gz", "derived")})
        for pid in workspace["pids"]]
    _, text = _parse(build_report(tmp_path / "index.html", subjects, overlays=False,
                                  **_group_inputs(workspace["deriv"])))
    methods = re.search(r'<p id="methods-text">(.*?)</p>', text, re.S).group(1)
    assert "R2* was fitted from the multi-echo GRE magnitude (nlls) for 2 subject session(s)" \
        in methods


def test_report_step_pairs_each_subject_with_its_files():
    from brainiron.steps.report import subject_inputs

    subjects = [["sub-01", [["Chimap", "Chimap"], ["R2starmap", "derived"]]],
                ["sub-02", [["Chimap", "Chimap"]]]]
    made = subject_inputs(subjects, ["q1", "q2"])
    assert [s.key for s in made] == ["sub-01", "sub-02"]
    # The group page knows a subject's maps by kind only and reads no image of it.
    assert made[0].map_files() == {"Chimap": (None, "Chimap"), "R2starmap": (None, "derived")}
    assert made[1].map_files() == {"Chimap": (None, "Chimap")}
    assert (made[1].qc, made[1].labels, made[1].lookup, made[1].registration_image) == (
        "q2", None, None, None)
    with pytest.raises(ValueError, match="out of step"):
        subject_inputs(subjects, ["q1"])


def test_report_subject_step_pairs_maps_with_their_kinds():
    from brainiron.steps.report_subject import subject_piece_inputs

    made = subject_piece_inputs("sub-01", "q", "l", "t", "r", ["c", "f"],
                                [["Chimap", "Chimap"], ["R2starmap", "derived"]])
    assert made.map_files() == {"Chimap": (Path("c"), "Chimap"),
                                "R2starmap": (Path("f"), "derived")}
    assert (made.key, made.qc, made.labels, made.lookup, made.registration_image) == (
        "sub-01", "q", "l", "t", "r")
    assert subject_piece_inputs("sub-01", "q", "l", "t", "r", "c",
                                [["Chimap", "Chimap"]]).map_files() == {
        "Chimap": (Path("c"), "Chimap")}  # one map: Snakemake gives a plain string
    with pytest.raises(ValueError, match="out of step for sub-01"):
        subject_piece_inputs("sub-01", "q", "l", "t", "r", ["c"],
                             [["Chimap", "Chimap"], ["R2starmap", "derived"]])


def test_piece_without_images_notes_it(tmp_path):
    """A subject given by its maps' kinds only (as the group page knows it) makes a piece
    that says why it has no overlay, with a grey placeholder thumbnail."""
    from brainiron.report.subject import build_subject_report

    s = SubjectInputs(key="sub-01", qc=None, labels=None, maps={"Chimap": (None, "Chimap")})
    record = json.loads(build_subject_report(s, tmp_path).read_text())
    assert record["overlays"] == []
    assert record["notes"] == [{"text": "Label image missing: no overlays.", "bad": False}]
    assert record["thumbnail"]["placeholder"] is True
