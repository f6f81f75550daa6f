"""The BIDS-App command line (Gorgolewski et al. 2017): ``brainiron BIDS_DIR OUTPUT_DIR
participant [--participant-label ...]`` and ``brainiron BIDS_DIR OUTPUT_DIR group`` beside
the subcommands. The participant level ends at every subject's own table, the group level
makes the group outputs from the subjects whose tables are there; both levels in turn give
the group table of a one-shot ``brainiron run``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import brainiron
from brainiron import layout
from brainiron.cli import build_bids_app_parser, main
from brainiron.errors import ConfigError
from brainiron.workflow import group_level_config, merged_config


def test_help_shows_both_forms(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "brainiron BIDS_DIR OUTPUT_DIR {participant,group}" in text
    assert "brainiron {phantom,validate,run}" in text
    assert "participant [--participant-label 01 02]" in text
    assert "brainiron BIDS_DIR OUTPUT_DIR group" in text


def test_bids_app_arguments_reach_run(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("brainiron.workflow.run", lambda *a, **k: calls.append((a, k)) or 0)
    assert main(["/data/ds", str(tmp_path), "participant", "--participant-label", "01", "02",
                 "--cores", "4", "--config", "threads=1"]) == 0
    assert main(["/data/ds", str(tmp_path), "group"]) == 0
    (args, kwargs), (group_args, group_kwargs) = calls
    assert args == ("/data/ds", tmp_path) and kwargs["analysis_level"] == "participant"
    assert kwargs["participant_label"] == ["01", "02"] and kwargs["cores"] == 4
    assert kwargs["config"] == {"threads": 1}
    assert group_kwargs["analysis_level"] == "group" and group_kwargs["participant_label"] is None
    # the subcommands still win over the BIDS-App form
    assert build_bids_app_parser().parse_args(["run", "out", "group"]).bids_dir == "run"
    monkeypatch.setattr("brainiron.workflow.run", lambda *a, **k: calls.append(("run", k)) or 0)
    assert main(["run", "/data/ds", str(tmp_path)]) == 0
    assert calls[-1][0] == "run" and calls[-1][1].get("analysis_level") is None


def test_a_missing_or_wrong_level_is_a_usage_error(capsys, tmp_path):
    for argv in (["/data/ds", str(tmp_path)], ["/data/ds", str(tmp_path), "subject"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "{participant,group}" in capsys.readouterr().err


def _config(bids, out):
    return merged_config({"bids_dir": str(bids), "output_dir": str(out)})


def test_group_level_takes_the_subjects_whose_tables_exist(phantom_dir, tmp_path, capsys):
    deriv = tmp_path / "brainiron"
    with pytest.raises(ConfigError, match="run the participant level first"):
        group_level_config(_config(phantom_dir, tmp_path), tmp_path)
    table = layout.subject_path(deriv, "regions_stats", "sub-01")
    table.parent.mkdir(parents=True)
    table.write_text("participant_id\nsub-01\n")
    config = group_level_config(_config(phantom_dir, tmp_path), tmp_path)
    assert config["exclude"] == ["sub-02"]
    assert "sub-02" in capsys.readouterr().err
    # --participant-label at the group level: only those
    labelled = {**_config(phantom_dir, tmp_path), "participant_label": ["01"]}
    assert group_level_config(labelled, tmp_path)["exclude"] == []


def test_participant_level_asks_for_no_group_output(phantom_dir, tmp_path, capfd):
    assert brainiron.run(phantom_dir, tmp_path, analysis_level="participant",
                         dry_run=True) == 0
    text = capfd.readouterr().out
    stats = text[text.index("Job stats:"):text.index("total")].split()
    jobs = dict(zip(stats[::2], stats[1::2], strict=True))
    assert {"validate", "register", "regions", "participant"} <= set(jobs)
    assert jobs["participant"] == "1" and jobs["register"] == "2"
    assert not {"group", "compare", "report", "all"} & set(jobs)
    with pytest.raises(ConfigError, match="analysis level"):
        brainiron.run(phantom_dir, tmp_path, analysis_level="subject")


@pytest.mark.slow
def test_participant_then_group_equals_one_run(tmp_path):
    """2-subject 4 mm phantom: participant level (one subject per call, as on a cluster),
    group level, and one `brainiron run`: the same group table."""
    from brainiron.phantom import generate_phantom

    bids = tmp_path / "bids"
    generate_phantom(bids, n_subjects=2, seed=3, voxel_size=(4.0, 4.0, 4.0))
    app = tmp_path / "app"
    for label in ("01", "02"):
        assert main([str(bids), str(app), "participant", "--participant-label", label]) == 0
    deriv = app / "brainiron"
    assert (layout.subject_path(deriv, "regions_stats", "sub-02")).is_file()
    assert not layout.group_path(deriv, "regions").exists()
    tables = [layout.subject_path(deriv, "regions_stats", f"sub-{k}") for k in ("01", "02")]
    made = [t.stat().st_mtime_ns for t in tables]
    assert main([str(bids), str(app), "group"]) == 0
    # the group level redid nothing of the participant level
    assert [t.stat().st_mtime_ns for t in tables] == made
    assert layout.group_path(deriv, "report").is_file()
    assert main(["run", str(bids), str(tmp_path / "once")]) == 0
    read = {"dtype": {"participant_id": str, "session_id": str}}
    got = brainiron.io.read_tsv(layout.group_path(deriv, "regions"), **read)
    want = brainiron.io.read_tsv(layout.group_path(tmp_path / "once" / "brainiron",
                                                   "regions"), **read)
    assert list(got.columns) == list(want.columns) and len(got) == len(want) > 0
    assert sorted(got["participant_id"].unique()) == ["sub-01", "sub-02"]
    numeric = want.select_dtypes("number").columns
    pd.testing.assert_frame_equal(got.drop(columns=numeric), want.drop(columns=numeric))
    np.testing.assert_allclose(got[numeric].to_numpy(float), want[numeric].to_numpy(float),
                               rtol=1e-12, atol=0, equal_nan=True)
