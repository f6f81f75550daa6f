"""The report in pieces, in the workflow (issue 17): rule ``report_subject`` makes one page,
thumbnail and record per subject; the group report links them and draws no overlay; a
change to one subject's files re-makes that subject's piece only.

A 2-subject phantom at 4 mm: one run (about 1 min on 2 cores), dry runs, one short re-run.
"""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from matplotlib.image import imread

from brainiron import layout
from brainiron.io import read_json, read_tsv, write_json
from brainiron.phantom import generate_phantom
from brainiron.workflow import SNAKEFILE

pytestmark = pytest.mark.slow

KEYS = ("sub-01", "sub-02")


def _brainiron(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "brainiron.cli", "run", *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _planned_jobs(out: Path) -> set[tuple[str, str]]:
    """(rule, key or "") of every job a dry run (Snakemake's ``-n``, on the run's own
    configuration) would execute; an empty set when there is nothing to be done."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(out),
         "--configfile", str(layout.run_path(out, "config")), "--cores", "2", "-n"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            key = re.search(r"\bkey=([\w-]+)", block)
            jobs.add((rule.group(1), key.group(1) if key else ""))
    assert jobs, f"no job in the dry run's output:\n{text[-2000:]}"
    return jobs


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(raw phantom, output folder, derivatives) after one complete run."""
    root = tmp_path_factory.mktemp("pieces")
    bids = root / "bids"
    generate_phantom(bids, n_subjects=2, seed=6, voxel_size=(4.0, 4.0, 4.0))
    out = root / "out"
    _brainiron(str(bids), str(out), "--cores", "2")
    return bids, out, layout.run_path(out, "derivatives")


class _Links(HTMLParser):
    """``<img>`` attributes and ``<a href>`` targets of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "a" and a.get("href") and not a["href"].startswith("#"):
            self.hrefs.append(a["href"])


def _links(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text())
    return parser


def test_each_subject_page_shows_its_own_qc_and_overlays(finished):
    _, _, deriv = finished
    for key in KEYS:
        text = layout.figure_path(deriv, "report_subject", key).read_text()
        qc = read_json(layout.subject_path(deriv, "registration_qc", key))
        assert qc["ncc"] > 0.5  # a registration that worked
        ncc = re.search(r"<td>NCC</td><td class='t'>([^<]+)</td>", text).group(1)
        assert float(ncc) == pytest.approx(qc["ncc"], rel=5e-4)  # shown to 4 digits
        # The voxels per nucleus, as counted here in the subject's label image.
        labels = np.asarray(nib.load(layout.subject_path(deriv, "dseg", key)).dataobj)
        lookup = read_tsv(layout.subject_path(deriv, "dseg_tsv", key))
        table = re.search(rf'<table class="data" id="voxels-{key}">(.*?)</table>', text).group(1)
        header = re.findall(r"<th>([^<]+)</th>", table)
        cells = [int(v) for v in re.findall(r"<td>(\d+)</td>", table)]
        assert dict(zip(header, cells, strict=True)) == {
            n: int((labels == i).sum()) for i, n in zip(lookup["index"], lookup["name"],
                                                         strict=True)}
        # T1w, χ and R2* overlays at full size (1080 pixels wide), embedded.
        images = _links(layout.figure_path(deriv, "report_subject", key)).images
        assert len(images) == 3
        for img in images:
            png = imread(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
            assert png.shape[1] == 1080 and png[..., :3].std() > 0.1
        thumb = imread(layout.figure_path(deriv, "report_thumbnail", key))
        assert thumb.shape[1] == 360 and thumb[..., :3].std() > 0.05
        bench = layout.log_path(deriv, "subject_benchmark", folder=layout.folder_of(key),
                                key=key, rule="report_subject")
        assert Path(bench).is_file()


def test_index_has_lazy_thumbnails_linking_every_subject_page(finished):
    _, _, deriv = finished
    index = layout.group_path(deriv, "report")
    links = _links(index)
    thumbs = [a for a in links.images if not a["src"].startswith("data:")]
    assert [a["loading"] for a in thumbs] == ["lazy"] * len(KEYS)
    assert [(index.parent / a["src"]).resolve() for a in thumbs] == [
        layout.figure_path(deriv, "report_thumbnail", k).resolve() for k in KEYS]
    pages = {(index.parent / h).resolve() for h in links.hrefs}
    assert pages == {layout.figure_path(deriv, "report_subject", k).resolve() for k in KEYS}
    for key in KEYS:  # and each page links back
        page = layout.figure_path(deriv, "report_subject", key)
        (back,) = _links(page).hrefs
        assert (page.parent / back).resolve() == index.resolve()
    # the group report draws no overlay any more: only the group figures are embedded
    assert len(links.images) - len(thumbs) == len(list(
        layout.group_path(deriv, "report_figures").glob("*.png")))


def test_changing_one_subject_remakes_only_its_piece(finished):
    bids, out, deriv = finished
    assert _planned_jobs(out) == set()
    qc = layout.subject_path(deriv, "registration_qc", "sub-02")
    # A changed record (Snakemake keeps checksums of small inputs: touching is not a change)
    write_json({**read_json(qc), "reviewed": "by hand"}, qc)
    planned = _planned_jobs(out)
    assert {k for rule, k in planned if rule == "report_subject"} == {"sub-02"}, planned
    assert ("report", "") in planned
    pieces = {k: {n: layout.figure_path(deriv, n, k).stat().st_mtime_ns for n in
                  ("report_subject", "report_thumbnail", "report_subject_json")} for k in KEYS}
    _brainiron(str(bids), str(out), "--cores", "2")
    after = {k: {n: layout.figure_path(deriv, n, k).stat().st_mtime_ns for n in
                 pieces[k]} for k in KEYS}
    assert after["sub-01"] == pieces["sub-01"]
    assert all(after["sub-02"][n] > pieces["sub-02"][n] for n in pieces["sub-02"])
    assert _planned_jobs(out) == set()
