"""The bad-input corpus through the real entry points: ``brainiron run`` and Snakemake.

Every case must end with a non-zero exit status, one line naming the file and the problem
(no Python traceback), no output folder and no temporary file left for the failed subject,
and nothing written outside the output folder. The bad subjects of :data:`SUBJECT_CASES`
share one dataset with a good subject, whose outputs must be complete: "one bad subject among
N" (docs/reliability.md).

Runtime: two workflow runs of the shared dataset (about 45 s each: two registrations at 4 mm
on 2 cores), two disk-full runs (about 10 s each) and about 1 s per whole-run case.

The four gaps the corpus first found (docs/reliability.md) are fixed and tested here like
every other case.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from .cases import ESCAPING_FOLDERS, GOOD, RUN_CASES, SUBJECT_CASES, build_many, generate_good

pytestmark = pytest.mark.slow

#: A clone's root, where a user calls Snakemake (its Snakefile includes the packaged one).
ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"
CONFIG = ROOT / "config" / "config.yaml"
ENTRIES = ["cli", "snakemake"]
TEMPORARY = re.compile(r"^\..+\.tmp(\..*)?$|^\.ants-|^\.brainiron-write-test-")
GOOD_OUTPUTS = ("desc-validated_inputs.json", "space-individual_atlas-CIT168_dseg.nii.gz",
                "space-individual_atlas-CIT168_dseg.tsv",
                "space-individual_atlas-CIT168_probseg.nii.gz",
                "space-individual_atlas-CIT168_probseg.json",
                "space-individual_desc-brain_mask.nii.gz",
                "from-MNI152NLin2009cAsym_to-individual_mode-image_xfm.nii.gz",
                "from-individual_to-MNI152NLin2009cAsym_mode-image_xfm.nii.gz",
                "desc-registration_qc.json", "desc-regions_stats.tsv", "desc-regions_stats.json")



@dataclass
class Result:
    entry: str
    returncode: int
    text: str
    out: Path
    outside_before: set[str]
    outside_after: set[str]

    def lines(self, *needles: str, sub: str | None = None) -> list[str]:
        """Lines containing every needle (and the subject, as a whole word)."""
        found = [line for line in self.text.splitlines() if all(n in line for n in needles)]
        if sub is not None:
            found = [line for line in found if re.search(rf"{re.escape(sub)}(?![a-zA-Z0-9])",
                                                         line)]
        return found


def _tree(root: Path, skip: Path) -> set[str]:
    """Every path under ``root`` except under ``skip`` (to catch writes outside the output)."""
    out = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            dirs[:] = []
            continue
        out.update(str(Path(folder, n).relative_to(root)) for n in dirs + files
                   if Path(folder, n) != skip)
    return out


def _run(entry: str, cmd: list[str], out: Path, watch: Path, preexec_fn=None, env=None
         ) -> Result:
    before = _tree(watch, out)
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec_fn,
                          env=env, timeout=600)
    return Result(entry, proc.returncode, proc.stdout + proc.stderr, out, before,
                  _tree(watch, out))


def run_cli(bids: Path, out: Path, *args: str, watch: Path, **kw) -> Result:
    cmd = [sys.executable, "-m", "brainiron.cli", "run", str(bids), str(out), "--cores", "2",
           *args]
    return _run("cli", cmd, out, watch, **kw)


def run_snakemake(bids: Path, out: Path, *args: str, watch: Path, **kw) -> Result:
    """Snakemake as a user would call it, ``--keep-going`` included (docs/reliability.md)."""
    args = list(args)
    configfile = [str(CONFIG)]
    if "--configfile" in args:
        at = args.index("--configfile")
        configfile = [args[at + 1]]
        del args[at:at + 2]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(out),
           "--configfile", *configfile, "--config", f"bids_dir={bids}", f"output_dir={out}",
           *args, "--cores", "2", "--keep-going"]
    return _run("snakemake", cmd, out, watch, **kw)


def _temporaries(out: Path) -> list[str]:
    return [str(Path(folder, n)) for folder, dirs, files in os.walk(out)
            for n in dirs + files if TEMPORARY.match(n)]


def _assert_clean(result: Result) -> None:
    """No traceback, no temporaries, nothing written outside the output folder."""
    assert "Traceback" not in result.text, result.text[-3000:]
    assert _temporaries(result.out) == []
    assert result.outside_after == result.outside_before, \
        result.outside_after ^ result.outside_before


# --------------------------------------------------------------------------------------------
# One bad subject among many
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def good(base) -> Path:
    return generate_good(base / "good")


@pytest.fixture(scope="module")
def many(base, good) -> Path:
    return build_many(base / "many", good)


@pytest.fixture(scope="module")
def cli(base, many) -> Result:
    return run_cli(many, base / "out-cli", watch=base)


@pytest.fixture(scope="module")
def snakemake(base, many) -> Result:
    return run_snakemake(many, base / "out-snakemake", watch=base)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", SUBJECT_CASES, ids=[c.label for c in SUBJECT_CASES])
def test_bad_subject(case, entry, request):
    result: Result = request.getfixturevalue(entry)
    assert result.returncode != 0
    message = case.message.format(sub=case.sub)
    lines = result.lines(message, case.file_name, sub=case.sub)
    assert lines, f"no line names {case.file_name} and says {message!r}:\n{result.text[-4000:]}"
    assert any(len(line) < 1000 for line in lines), lines  # a line a person reads
    if entry == "cli":
        failed = pd.read_csv(result.out / "brainiron/group/failed.tsv", sep="\t", dtype=str)
        row = failed[failed["subject"] == case.sub]
        assert len(row) == 1 and row["stage"].iloc[0] == case.stage
        assert message in row["error"].iloc[0] and case.file_name in row["error"].iloc[0]
    assert not (result.out / "brainiron" / case.sub).exists()


@pytest.mark.parametrize("entry", ENTRIES)
def test_good_subject_is_complete_and_nothing_leaks(entry, request):
    result: Result = request.getfixturevalue(entry)
    anat = result.out / "brainiron" / GOOD / "anat"
    for name in GOOD_OUTPUTS:
        assert (anat / f"{GOOD}_{name}").is_file(), name
    stats = pd.read_csv(anat / f"{GOOD}_desc-regions_stats.tsv", sep="\t")
    assert len(stats) == 2 * 12 * 2 and stats["mean"].notna().all()
    _assert_clean(result)
    subjects = {p.name for p in (result.out / "brainiron").glob("sub-*")}
    assert subjects == {GOOD}


def test_one_bad_subject_among_many_gives_the_others_rows_and_a_list(cli):
    """``brainiron run``: the good subject's rows in the group tables, every failure listed."""
    group = cli.out / "brainiron" / "group"
    regions = pd.read_csv(group / "regions.tsv", sep="\t")
    assert set(regions["participant_id"]) == {GOOD} and len(regions) == 48
    wide = pd.read_csv(group / "desc-wide_regions.tsv", sep="\t")
    assert list(wide["participant_id"]) == [GOOD]
    failed = pd.read_csv(group / "failed.tsv", sep="\t", dtype=str)
    assert sorted(failed["subject"]) == sorted(c.sub for c in SUBJECT_CASES)
    assert f"{len(SUBJECT_CASES)} subject(s) failed (listed in {group / 'failed.tsv'})" \
        in cli.text
    ignored = pd.read_csv(group / "ignored.tsv", sep="\t", dtype=str)
    for name in ESCAPING_FOLDERS:
        reason = ignored.loc[ignored["path"].str.endswith("/" + name), "reason"]
        assert list(reason) == ["invalid subject label (letters and digits only)"]
    # The failure list on stderr is readable: one line per subject, quotes as written.
    assert cli.lines('declare "Units": "ppb"', sub="sub-ppb")


def test_plain_snakemake_keeps_going(snakemake):
    """``snakemake --keep-going``: every subject that can be processed is, then exit 1; the
    group tables need the failed subjects excluded (``brainiron run`` does that)."""
    assert snakemake.returncode == 1
    assert "Exiting because a job execution failed" in snakemake.text
    assert not (snakemake.out / "brainiron" / "group" / "regions.tsv").exists()


# --------------------------------------------------------------------------------------------
# Problems of the whole run
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("case", RUN_CASES, ids=[c.name for c in RUN_CASES])
def test_run_case(case, entry, good, tmp_path):
    bids, cli_args, smk_args = case.build(tmp_path, good)
    out = tmp_path / "out"
    if entry == "cli":
        result = run_cli(bids, out, *cli_args, watch=tmp_path)
    else:
        result = run_snakemake(bids, out, *smk_args, watch=tmp_path)
    assert result.returncode != 0
    file = case.file.format(bids=bids)
    lines = result.lines(case.message, file)
    assert lines, result.text[-3000:]
    assert any(line.startswith("brainiron: error: ") for line in lines)
    _assert_clean(result)
    # Nothing is processed: no derivatives at all.
    assert not (out / "brainiron").exists()


def _as_nobody():
    """preexec_fn: become nobody (65534), keeping only CAP_DAC_READ_SEARCH.

    The Python interpreter may live under /root (mode 0700, e.g. pyenv): nobody must still
    read it, the package and the dataset, but must not be able to write anything it does
    not own. CAP_DAC_READ_SEARCH (kept as an ambient capability across exec) gives exactly
    that: read and search everywhere, no write.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_keepcaps, pr_cap_ambient, pr_cap_ambient_raise, cap_dac_read_search = 8, 47, 2, 2
    if libc.prctl(pr_set_keepcaps, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    bit = 1 << cap_dac_read_search
    data[0].effective = data[0].permitted = data[0].inheritable = bit
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(pr_cap_ambient, pr_cap_ambient_raise, cap_dac_read_search, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_RAISE)")


@pytest.fixture(scope="module")
def nobody_works():
    if os.geteuid() != 0:
        reason = "unwritable-output case needs root (to run the workflow as nobody)"
        print(reason)
        pytest.skip(reason)
    try:
        probe = subprocess.run([sys.executable, "-c", "import brainiron, snakemake"],
                               preexec_fn=_as_nobody, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        probe = None
        reason = f"cannot run as nobody here: {exc}"
    else:
        reason = f"nobody cannot import brainiron: {probe.stderr.decode()[-300:]}"
    if probe is None or probe.returncode != 0:
        print(reason)
        pytest.skip(reason)


@pytest.mark.parametrize("entry", ENTRIES)
def test_output_folder_without_write_permission(entry, good, tmp_path, nobody_works, request):
    bids = tmp_path / "bids"
    shutil.copytree(good, bids)
    for folder, _, files in os.walk(bids):  # nobody may read the dataset
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder, name), 0o644)
    home = tmp_path / "home"  # nobody's own caches (Snakemake, matplotlib)
    home.mkdir()
    os.chown(home, 65534, 65534)
    locked = tmp_path / "locked"  # exists, belongs to root: nobody cannot write in it
    locked.mkdir(mode=0o755)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "MPLCONFIGDIR": str(home / "mpl")}
    run = run_cli if entry == "cli" else run_snakemake
    result = run(bids, locked, watch=tmp_path / "bids", preexec_fn=_as_nobody, env=env)
    assert result.returncode != 0
    assert result.lines(f"{locked}: cannot write the outputs (Permission denied)"), \
        result.text[-3000:]
    assert "Traceback" not in result.text
    assert list(locked.iterdir()) == []


def _file_size_limit(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.fixture(scope="module", params=ENTRIES)
def disk_full(request, base, good) -> Result:
    """The whole workflow with files limited to 300 kB: the registration's writes fail."""
    run = run_cli if request.param == "cli" else run_snakemake
    out = base / f"out-full-{request.param}"
    return run(good, out, watch=base / "good", preexec_fn=_file_size_limit(300_000))


def test_disk_full_fails_cleanly(disk_full, request):
    assert disk_full.returncode != 0
    assert disk_full.lines("error in register for sub-01")
    assert "File too large" in disk_full.text  # said by ANTs' HDF5 writer, on stderr
    _assert_clean(disk_full)
    assert not (disk_full.out / "brainiron" / GOOD).exists()


def test_disk_full_message_says_so(disk_full):
    assert disk_full.lines("error in register for sub-01", "File too large")


def test_disk_full_has_no_misleading_second_error(disk_full):
    assert not disk_full.lines("error in compare")


def test_disk_full_before_the_workflow_starts(good, tmp_path):
    """A disk full when ``brainiron run`` writes its configuration: one line, no traceback."""
    out = tmp_path / "out"
    result = run_cli(good, out, watch=tmp_path, preexec_fn=_file_size_limit(500))
    assert result.returncode == 1
    assert result.lines("brainiron: error: ", str(out / "config.yaml"), "File too large"), \
        result.text
    _assert_clean(result)


def test_docs_list_every_case():
    """docs/reliability.md's case table names every case of this corpus."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    missing = [c.sub for c in SUBJECT_CASES if f"`{c.sub}`" not in doc]
    missing += [c.name for c in RUN_CASES if f"`{c.name}`" not in doc]
    assert not missing
