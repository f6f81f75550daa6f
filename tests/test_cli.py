import subprocess
import sys

import pytest

from brainiron.cli import main


def test_phantom_then_validate(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["phantom", str(out), "--subjects", "2", "--voxel-size", "4",
                 "--orientation", "LPS", "--no-r2starmap"]) == 0
    assert "phantom: 2 subjects at 4x4x4 mm" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ok   sub-01: Chimap, MEGRE x8; registration image T1w" in text
    assert "2 of 2 subject(s) valid, 0 file(s) ignored" in text


def test_validate_reports_a_bad_subject_and_exits_non_zero(tmp_path, capsys):
    out = tmp_path / "p"
    main(["phantom", str(out), "--subjects", "2", "--voxel-size", "4"])
    capsys.readouterr()
    (out / "sub-02" / "anat" / "sub-02_echo-2_part-mag_MEGRE.json").write_text("{broken")
    assert main(["validate", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FAIL sub-02: " in text and "malformed JSON" in text
    assert "1 of 2 subject(s) valid" in text


def test_console_script_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "brainiron.cli", "validate",
                           str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"brainiron: error: {tmp_path / 'missing'}: BIDS folder not found"
    assert "Traceback" not in proc.stderr


def test_phantom_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("data")
    assert main(["phantom", str(tmp_path / "x")]) == 1
    assert "exists and is not empty" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "1,2", "-1"])
def test_voxel_size_argument_is_checked(tmp_path, bad):
    with pytest.raises(SystemExit):
        main(["phantom", str(tmp_path / "y"), "--voxel-size", bad])


def test_profile_names_a_shipped_profile_or_a_folder(tmp_path):
    from brainiron.cli import build_parser
    from brainiron.workflow import PROFILES

    args = build_parser().parse_args(["run", "", str(tmp_path), "--profile", "slurm"])
    assert args.snakemake_args == ["--profile", str(PROFILES / "slurm")]
    assert (PROFILES / "slurm" / "config.yaml").is_file()
    args = build_parser().parse_args(["run", "", str(tmp_path), "--profile", str(tmp_path)])
    assert args.snakemake_args == ["--profile", str(tmp_path)]


def test_validate_field_strength_option(tmp_path, capsys):
    out = tmp_path / "p"
    main(["phantom", str(out), "--subjects", "1", "--voxel-size", "4", "--no-megre"])
    for path in (out / "sub-01").rglob("*.json"):
        path.write_text(path.read_text().replace('"MagneticFieldStrength": 3.0', '"X": 0'))
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FAIL sub-01: " in text and "sub-01_R2starmap.nii.gz: MagneticFieldStrength is " \
        "not stated in the sidecars; state it there or set field_strength (tesla)" in text
    assert main(["validate", str(out), "--field-strength", "3"]) == 0
    assert "1 of 1 subject(s) valid" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["validate", str(out), "--field-strength", "0"])
