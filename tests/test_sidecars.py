"""brainiron.sidecars: BIDS URIs, image sidecars, .bidsignore (the validator's view of the
whole derivatives is tests/test_bids_derivatives.py)."""

from __future__ import annotations

import pytest

from brainiron import layout, sidecars


def test_bids_uris_name_the_dataset_and_the_path_within(tmp_path):
    raw, deriv = tmp_path / "ds", tmp_path / "out" / "brainiron"
    t1w = raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert sidecars.bids_uri(t1w, raw) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    with pytest.raises(ValueError):
        sidecars.bids_uri(t1w, deriv)
    xfm = layout.subject_path(deriv, "xfm_forward", "sub-01_ses-2")
    assert sidecars.source_uri(xfm, raw, deriv) == (
        "bids::sub-01/ses-2/anat/sub-01_ses-2_from-MNI152NLin2009cAsym_to-individual_mode-"
        "image_xfm.nii.gz")
    assert sidecars.source_uri(t1w, raw, deriv) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert sidecars.source_uri(tmp_path / "elsewhere.nii", raw, deriv) == "elsewhere.nii"
    assert sidecars.dataset_links(raw, deriv) == {"raw": "../../ds"}


def test_relative_paths_leave_no_absolute_path(tmp_path):
    config = {"bids_dir": str(tmp_path / "ds"), "n": 3, "maps": ["Chimap"],
              "deep": {"x": [str(tmp_path / "out" / "a.tsv"), ""]}}
    got = sidecars.relative_paths(config, tmp_path / "out" / "brainiron")
    assert got == {"bids_dir": "../../ds", "n": 3, "maps": ["Chimap"],
                   "deep": {"x": ["../a.tsv", ""]}}


def test_grid_source_is_the_image_validation_takes_the_grid_from():
    assert sidecars.grid_source({"maps": {"Chimap": "c.nii"}, "megre": ["e1.nii"],
                                 "t1w": "t1.nii"}) == "c.nii"
    assert sidecars.grid_source({"maps": {}, "megre": ["e1.nii"], "t1w": "t1.nii"}) == "e1.nii"
    assert sidecars.grid_source({"maps": {}, "megre": [], "t1w": "t1.nii"}) == "t1.nii"


def test_image_sidecar_keys():
    assert sidecars.image_sidecar("d", [], spatial_reference="bids:raw:a.nii",
                                  skull_stripped=False, Units="s") == {
        "Description": "d", "SpatialReference": "bids:raw:a.nii", "SkullStripped": False,
        "Units": "s"}
    assert sidecars.image_sidecar("d", ["bids::x"])["Sources"] == ["bids::x"]


def test_fitted_maps_have_their_own_units():
    r2star = {"Units": "1/s", "Description": "R2*", "Sources": ["bids:raw:e1.nii"],
              "EchoTime": [0.004, 0.009]}
    out = sidecars.relaxometry_sidecars(r2star)
    assert {k: v["Units"] for k, v in out.items()} == {
        "r2star_json": "1/s", "t2star_json": "s", "s0_json": "arbitrary", "goodness_json": "1"}
    assert all(v["SkullStripped"] is False and v["Sources"] == ["bids:raw:e1.nii"]
               for v in out.values())


def test_bidsignore_gives_a_reason_per_pattern():
    text = sidecars.bidsignore_text()
    lines = text.splitlines()
    assert len(lines) == 2 * len(sidecars.BIDSIGNORE)
    assert all(c.startswith("# ") and not p.startswith("#")
               for c, p in zip(lines[::2], lines[1::2], strict=True))
    patterns = lines[1::2]
    assert {"/group", "/report", "/benchmarks", "*_xfm.*"} <= set(patterns)
    assert "/logs" not in patterns  # BIDS names a top-level logs/ folder
