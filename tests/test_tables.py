"""The group tables (brainiron.tables): long and wide tables, sidecars, failed/ignored lists."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainiron import tables
from brainiron.errors import BrainironError
from brainiron.io import read_tsv, write_tsv
from brainiron.settings import ComparisonSettings, IronSettings, Settings
from brainiron.stats import group_comparison

GOLDEN = Path(__file__).parent / "golden" / "data"


def _long() -> pd.DataFrame:
    """A hand-made long table: sub-01 and sub-02 (no sessions), χ and R2*, one refined row,
    with iron columns."""
    rows = [
        # participant, session, map, units, region, hemi, segmentation, mean, iron, z
        ("sub-01", None, "Chimap", "ppm", "SN", "L", "atlas", 0.10, 120.0, 0.5),
        ("sub-01", None, "Chimap", "ppm", "SN", "R", "atlas", 0.11, 130.0, 0.6),
        ("sub-01", None, "Chimap", "ppm", "SN", "L", "refined", 0.12, 140.0, 0.7),
        ("sub-01", None, "R2starmap", "1/s", "Pu", "L", "atlas", 25.0, 90.0, np.nan),
        ("sub-02", None, "Chimap", "ppm", "SN", "L", "atlas", 0.20, 220.0, 1.5),
        ("sub-02", None, "Chimap", "ppm", "SN", "R", "atlas", 0.21, 230.0, 1.6),
        ("sub-02", None, "R2starmap", "1/s", "Pu", "L", "atlas", 26.0, 95.0, np.nan),
    ]
    cols = ["participant_id", "session_id", "map", "units", "region", "hemisphere",
            "segmentation", "mean", "iron_mg_per_kg", "iron_z"]
    return pd.DataFrame(rows, columns=cols)


def _stats(pid: str, means: tuple[float, float]) -> pd.DataFrame:
    """A subject's regional table (the regions rule's columns that matter here)."""
    return pd.DataFrame({
        "participant_id": pid, "session_id": [None, None], "map": "Chimap", "units": "ppm",
        "region": ["SN", "Pu"], "hemisphere": "L", "n_valid": [16, 16],
        "mean": list(means), "median": list(means), "sd": [0.02, 0.02],
        "field_strength_T": 3.0})


# --------------------------------------------------------------------------------------------
# Wide table
# --------------------------------------------------------------------------------------------


def test_wide_table_columns_and_values():
    wide = tables.wide_table(_long())
    assert wide.columns.tolist() == [
        "participant_id", "session_id",
        "Chimap_SN_L_mean_ppm", "Chimap_SN_R_mean_ppm", "Chimap_SN_L_refined_mean_ppm",
        "R2starmap_Pu_L_mean_per_s",
        "Chimap_SN_L_iron_mg_per_kg", "Chimap_SN_R_iron_mg_per_kg",
        "Chimap_SN_L_refined_iron_mg_per_kg", "R2starmap_Pu_L_iron_mg_per_kg",
        "Chimap_SN_L_iron_z", "Chimap_SN_R_iron_z", "Chimap_SN_L_refined_iron_z",
        "R2starmap_Pu_L_iron_z"]
    assert wide["participant_id"].tolist() == ["sub-01", "sub-02"]
    assert wide["session_id"].tolist() == ["", ""]
    assert wide["Chimap_SN_L_mean_ppm"].tolist() == [0.10, 0.20]
    assert wide["Chimap_SN_R_iron_mg_per_kg"].tolist() == [130.0, 230.0]
    assert wide["R2starmap_Pu_L_mean_per_s"].tolist() == [25.0, 26.0]
    # sub-02 has no refined row: an empty cell, not a dropped column
    assert wide["Chimap_SN_L_refined_mean_ppm"].iloc[0] == 0.12
    assert math.isnan(wide["Chimap_SN_L_refined_mean_ppm"].iloc[1])
    assert wide["R2starmap_Pu_L_iron_z"].isna().all()


def test_wide_table_with_sessions():
    long = _long().iloc[[0, 4]].assign(participant_id="sub-01", session_id=["1", "2"])
    wide = tables.wide_table(long)
    assert wide["participant_id"].tolist() == ["sub-01", "sub-01"]
    assert wide["session_id"].tolist() == ["1", "2"]
    assert wide["Chimap_SN_L_mean_ppm"].tolist() == [0.10, 0.20]


def test_wide_table_has_only_the_measured_subject_sessions():
    """pivot_table(dropna=False) alone crosses every participant with every session."""
    long = _long().assign(session_id=[None] * 4 + ["1"] * 3)
    wide = tables.wide_table(long)
    assert list(zip(wide["participant_id"], wide["session_id"], strict=True)) == [
        ("sub-01", ""), ("sub-02", "1")]


def test_wide_table_without_iron_segmentation_or_subjects():
    long = _long().drop(columns=["segmentation", "iron_mg_per_kg", "iron_z"]).iloc[[0, 1]]
    wide = tables.wide_table(long)
    assert wide.columns.tolist() == ["participant_id", "session_id", "Chimap_SN_L_mean_ppm",
                                     "Chimap_SN_R_mean_ppm"]
    assert wide.iloc[0, 2:].tolist() == [0.10, 0.11]
    other = tables.wide_table(long.assign(units="mg/kg"))
    assert other.columns[2] == "Chimap_SN_L_mean_mg_per_kg"
    empty = tables.wide_table(pd.DataFrame())
    assert empty.columns.tolist() == ["participant_id", "session_id"] and empty.empty


def test_wide_descriptions_cover_every_column_with_units():
    wide = tables.wide_table(_long())
    desc = tables.wide_descriptions(wide)
    assert list(desc) == wide.columns.tolist()
    assert desc["Chimap_SN_L_mean_ppm"] == {
        "Description": "mean Chimap in SN_L (region_hemisphere); see regions.tsv",
        "Units": "ppm"}
    assert desc["R2starmap_Pu_L_mean_per_s"]["Units"] == "1/s"
    assert desc["Chimap_SN_L_refined_mean_ppm"]["Description"] == (
        "mean Chimap in SN_L (region_hemisphere, boundaries refined from contrast); see "
        "regions.tsv")
    assert desc["Chimap_SN_R_iron_mg_per_kg"] == {
        "Description": "iron from Chimap in SN_R; see regions.tsv",
        "Units": "mg/kg wet tissue"}
    assert desc["Chimap_SN_L_refined_iron_z"] == {
        "Description": "age-normative z-score of iron from Chimap in SN_L_refined"}
    # the descriptions are fresh copies: changing one changes nothing else
    desc["participant_id"]["Description"] = "changed"
    assert tables.wide_descriptions(wide)["participant_id"]["Description"] == "BIDS subject"


# --------------------------------------------------------------------------------------------
# Long table
# --------------------------------------------------------------------------------------------


def test_group_table_merges_participants_and_adds_iron(tmp_path):
    people = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [50.0, 30.0],
                           "sex": ["F", "M"], "group": ["control", "rls"]})
    # χ = 0.00097 Fe - 0.02 (langkammer2012_chi): 0.077 ppm -> 100 mg/kg, 0.174 -> 200
    long = tables.group_table([_stats("sub-01", (0.077, 0.174)),
                               _stats("sub-02", (0.174, 0.077))], people, Settings())
    assert long["participant_id"].tolist() == ["sub-01"] * 2 + ["sub-02"] * 2
    assert long["age"].tolist() == [50.0, 50.0, 30.0, 30.0]
    assert long["group"].tolist() == ["control", "control", "rls", "rls"]
    assert long["iron_mg_per_kg"].to_numpy() == pytest.approx([100.0, 200.0, 200.0, 100.0])
    # SE of the mean 0.02 / sqrt(16) = 0.005 ppm -> 0.005 / 0.00097 mg/kg
    assert long["iron_sd_mg_per_kg"].to_numpy() == pytest.approx([0.005 / 0.00097] * 4)
    assert (long["calibration"] == "langkammer2012_chi").all()
    # SN norm 184.6 (1 - exp(-0.1 age)), SD 65.2 mg/kg
    expected = 184.6 * (1 - np.exp(-0.1 * 50.0))
    assert long["iron_expected_mg_per_kg"].iloc[0] == pytest.approx(expected)
    assert long["iron_z"].iloc[0] == pytest.approx((100.0 - expected) / 65.2)
    assert long["norm_region"].tolist() == ["SN", "Pu", "SN", "Pu"]

    # the same from files; a participants.tsv that does not exist is skipped
    paths = []
    for pid, means in (("sub-01", (0.077, 0.174)), ("sub-02", (0.174, 0.077))):
        paths.append(write_tsv(_stats(pid, means), tmp_path / f"{pid}.tsv"))
    write_tsv(people, tmp_path / "participants.tsv")
    from_files = tables.group_table(paths, tmp_path / "participants.tsv", Settings())
    assert from_files["session_id"].isna().all() and long["session_id"].isna().all()
    pd.testing.assert_frame_equal(from_files.drop(columns="session_id"),
                                  long.drop(columns="session_id"), check_dtype=False)
    no_people = tables.group_table(paths, tmp_path / "missing.tsv", Settings())
    assert "age" not in no_people and no_people["iron_z"].isna().all()


def test_group_table_settings_change_the_conversion():
    settings = Settings(field_strength=7.0, iron=IronSettings(statistic="median"))
    stats = _stats("sub-01", (0.077, 0.174)).assign(median=[0.174, 0.077],
                                                     field_strength_T=np.nan)
    long = tables.group_table([stats], None, settings)
    assert long["iron_mg_per_kg"].to_numpy() == pytest.approx([200.0, 100.0])
    assert tables.group_table([], None, settings).empty


def test_column_descriptions_cover_exactly_the_long_table():
    desc = tables.column_descriptions()
    for variant in ("t1w", "megre", "chi"):
        header = read_tsv(GOLDEN / variant / "regions.tsv", nrows=0).columns
        assert set(desc) == set(header), variant
    assert all("Description" in v for v in desc.values())
    assert desc["volume_mm3"]["Units"] == "mm^3"
    assert desc["iron_mg_per_kg"]["Units"] == "mg/kg wet tissue"
    files = desc["atlas"]["Files"]
    assert files and all(len(f["sha256"]) == 64 for f in files)
    assert list(desc["atlas"]) == ["Description", "Files"]
    json.dumps(desc)  # a JSON sidecar


def test_comparison_descriptions_cover_exactly_the_comparison_table():
    desc = tables.comparison_descriptions()
    empty = group_comparison(pd.DataFrame({"map": []}))
    assert list(desc) == empty.columns.tolist()
    assert tables.comparison_table(None).columns.tolist() == list(desc)
    assert tables.comparison_table(pd.DataFrame()).empty


def test_comparison_table_uses_the_atlas_rows_and_the_settings():
    rng = np.random.default_rng(3)
    rows = []
    for i in range(8):
        group = "control" if i < 4 else "rls"
        value = (0.10 if group == "control" else 0.05) + 0.01 * rng.standard_normal()
        for seg, shift in (("atlas", 0.0), ("refined", 1.0)):
            rows.append({"participant_id": f"sub-{i:02d}", "map": "Chimap", "units": "ppm",
                         "region": "SN", "hemisphere": "L", "segmentation": seg,
                         "mean": value + shift, "age": 40.0 + i, "group": group})
    long = pd.DataFrame(rows)
    out = tables.comparison_table(long, ComparisonSettings(covariates=("age",)))
    atlas = long[long["segmentation"] == "atlas"]
    expected = group_comparison(atlas, "control", ["age"], "mean")
    pd.testing.assert_frame_equal(out, expected)
    assert out["mean_reference"].iloc[0] == pytest.approx(
        atlas.loc[atlas["group"] == "control", "mean"].mean())
    assert out["covariates"].iloc[0] == "age"
    flipped = tables.comparison_table(long, ComparisonSettings(reference_group="rls"))
    # no sex column: the same model (age), the difference changes sign
    assert flipped["difference"].iloc[0] == pytest.approx(-out["difference"].iloc[0])
    assert flipped["reference_group"].iloc[0] == "rls"


# --------------------------------------------------------------------------------------------
# Failed and ignored, check, dataset description
# --------------------------------------------------------------------------------------------


def test_failed_and_ignored_tables():
    failed = tables.failed_table([{"subject": "sub-03", "stage": "register",
                                   "error": "low NCC"}])
    assert failed.columns.tolist() == ["subject", "stage", "error"]
    assert failed.iloc[0].tolist() == ["sub-03", "register", "low NCC"]
    assert tables.failed_table([]).columns.tolist() == ["subject", "stage", "error"]
    ignored = tables.ignored_table([{"path": "a.nii", "reason": "not used"}])
    assert ignored.columns.tolist() == ["path", "reason"] and len(ignored) == 1
    assert tables.ignored_table([]).empty


def test_check_summary():
    assert tables.check_summary(tables.failed_table([]), "f.tsv")["failed"] == 0
    failed = tables.failed_table([{"subject": "sub-03", "stage": "register", "error": "x"}])
    with pytest.raises(BrainironError, match=r"1 subject\(s\) failed \(f.tsv\): sub-03: x"):
        tables.check_summary(failed, "f.tsv")


def test_dataset_description(tmp_path):
    config = {"bids_dir": "", "output_dir": Path("out"), "maps": ("Chimap",)}
    desc = tables.dataset_description(config, tmp_path / "out" / "brainiron")
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Configuration"] == {"bids_dir": "", "output_dir": "out",
                                                       "maps": ["Chimap"]}
    # the source is a BIDS URI; DatasetLinks says where (the phantom beside the derivatives)
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:"}]
    assert desc["DatasetLinks"] == {"raw": "../phantom"}
    assert "License" not in desc and "Authors" not in desc  # no source description there
    json.dumps(desc)


def test_dataset_description_names_no_absolute_path(tmp_path):
    """Absolute paths of the configuration become relative to the derivatives folder; the
    source dataset's License, Authors and DatasetDOI are carried over."""
    raw, out = tmp_path / "data" / "ds", tmp_path / "runs" / "out"
    raw.mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps({
        "Name": "ds", "BIDSVersion": "1.10.0", "License": "CC0", "Authors": ["A", "B"],
        "DatasetDOI": "doi:10.1/x"}))
    config = {"bids_dir": str(raw), "output_dir": str(out), "nested": {"f": [str(raw / "a")]}}
    desc = tables.dataset_description(config, out / "brainiron")
    assert desc["GeneratedBy"][0]["Configuration"] == {
        "bids_dir": "../../../data/ds", "output_dir": "..",
        "nested": {"f": ["../../../data/ds/a"]}}
    assert str(tmp_path) not in json.dumps(desc)
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:", "DOI": "doi:10.1/x"}]
    assert desc["DatasetLinks"] == {"raw": "../../../data/ds"}
    assert (desc["License"], desc["Authors"]) == ("CC0", ["A", "B"])


def test_sidecars_describe_exactly_the_columns():
    cols = ["participant_id", "session_id", "map", "mean", "handedness"]
    with pytest.raises(KeyError, match="handedness"):
        tables.column_descriptions(cols)
    out = tables.column_descriptions(cols, {"handedness": {"Description": "h"}})
    assert list(out) == cols and out["handedness"] == {"Description": "h"}
    assert list(tables.table_descriptions("failed", tables.FAILED_COLUMNS)) == \
        list(tables.FAILED_COLUMNS)
    assert list(tables.table_descriptions("ignored", tables.IGNORED_COLUMNS)) == \
        list(tables.IGNORED_COLUMNS)


def test_group_tables_have_no_empty_cells_and_read_back(tmp_path):
    """The wide table's empty session_id and the failed / ignored tables are written with
    ``n/a`` for what has no value, and their readers (read_tsv, read_failed_table) still
    read them."""
    from brainiron.failures import read_failed_table

    wide = write_tsv(tables.wide_table(_long()), tmp_path / "regions_wide.tsv")
    failed = write_tsv(tables.failed_table([{"subject": "sub-03", "stage": "register",
                                             "error": ""}]), tmp_path / "failed.tsv")
    ignored = write_tsv(tables.ignored_table([{"path": "a.nii", "reason": None}]),
                        tmp_path / "ignored.tsv")
    for path in (wide, failed, ignored):
        cells = [c for line in path.read_text().splitlines() for c in line.split("\t")]
        assert "" not in cells, path.name
    assert read_tsv(wide, dtype={"session_id": str})["session_id"].isna().all()
    assert read_failed_table(failed) == [("sub-03", "register", "")]
    assert read_tsv(ignored)["reason"].isna().all()


def test_group_table_chi_rows_need_no_field_strength():
    chi = _stats("sub-01", (0.077, 0.174)).assign(field_strength_T=np.nan)
    long = tables.group_table([chi], None, Settings())
    assert long["iron_mg_per_kg"].to_numpy() == pytest.approx(
        tables.group_table([_stats("sub-01", (0.077, 0.174))], None, Settings())[
            "iron_mg_per_kg"].to_numpy())
    r2star = chi.assign(map="R2starmap", units="1/s", mean=25.0, median=25.0)
    with pytest.raises(ValueError, match="field strength of sub-01 is not stated"):
        tables.group_table([r2star], None, Settings())
    assert tables.group_table([r2star], None, Settings(field_strength=3.0))[
        "iron_mg_per_kg"].notna().all()
