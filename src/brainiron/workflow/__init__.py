"""Run the Snakemake workflow from Python or the ``brainiron run`` command.

The workflow is package data beside this module (snakebids' model): ``Snakefile``,
``rules/``, ``scripts/``, ``schemas/``, ``envs/`` and ``profiles/`` in this folder, the default
configuration in ``brainiron/config/config.yaml``; an installed wheel runs it as well as a
source checkout (whose root ``Snakefile`` includes this one). This module finds it from
``__file__``, passes the configuration and runs Snakemake in a subprocess, so that the command
line, notebooks and ``snakemake`` itself all run the same rules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .. import layout
from ..errors import BrainironError, ConfigError

__all__ = ["DEFAULT_CONFIG", "PROFILES", "SNAKEFILE", "check_config", "check_writable",
           "group_level_config", "merged_config", "run"]

#: The workflow's Snakefile (package data, in a wheel as in a source checkout).
SNAKEFILE = Path(__file__).resolve().parent / "Snakefile"
#: The configuration's JSON schema (YAML).
SCHEMA = SNAKEFILE.parent / "schemas" / "config.schema.yaml"
#: The default configuration (every stage's defaults, ``brainiron.settings``).
DEFAULT_CONFIG = SNAKEFILE.parents[1] / "config" / "config.yaml"
#: Shipped Snakemake profiles (``PROFILES / "slurm"``).
PROFILES = SNAKEFILE.parent / "profiles"


def check_config(config: Mapping) -> None:
    """Validate a configuration against the workflow's schema, with a one-line error.

    Raises
    ------
    ConfigError
        Naming the key and the problem, e.g. ``config: unknown key 'foo'`` or
        ``config.registration.syn_sampling: 'two' is not of type 'integer'``; also
        ``qsm.reference: csf``, which the workflow cannot give (``chi_reference: csf``
        references the tables instead).
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(dict(config)),
                    key=lambda e: list(e.absolute_path))
    if not errors:
        qsm = config.get("qsm") or {}
        if qsm.get("reference") == "csf":  # the library's option, not the workflow's
            raise ConfigError("config.qsm.reference: 'csf' is not available in the workflow "
                              "(the qsm rule runs before registration gives a CSF label); "
                              "keep qsm.reference: whole_brain and use chi_reference: csf "
                              "(the tables' chi referenced to deep CSF) instead")
        return
    err = errors[0]
    where = ".".join(["config", *[str(p) for p in err.absolute_path]])
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: "
                          f"{', '.join(allowed)})")
    raise ConfigError(f"{where}: {err.message}")


def merged_config(overrides: Mapping | None = None,
                  configfile: str | os.PathLike | None = None) -> dict:
    """The shipped ``config/config.yaml`` (or ``configfile``) updated with ``overrides``.

    Keys of ``overrides`` may be dotted (``"registration.resolution_mm"``) to reach nested
    entries; mapping values are merged into the existing mapping.
    """
    import yaml

    path = Path(configfile) if configfile else DEFAULT_CONFIG
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from None
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key}: {part} is not a mapping")
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = value
    return config


def check_writable(folder: str | os.PathLike) -> None:
    """Raise a one-line :class:`ConfigError` unless ``folder`` can be created and written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".brainiron-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write the outputs ({exc.strerror})") from None


#: Names of the temporaries a killed job can leave: atomic writes (``.<name>.<8 random>.tmp``
#: + extension), ANTs scratch folders, the phantom's staging folder, the write probe.
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\..*)?$|^\.ants-[a-z0-9_]{8}$"
                        r"|^\.phantom\.[a-z0-9_]{8}$|^\.brainiron-write-test-")


def _temporaries(out_dir: Path) -> list[Path]:
    """Temporaries at the top of ``out_dir`` and anywhere under ``<out_dir>/brainiron``.

    Nothing else is searched: ``out_dir`` may hold other people's files.
    """
    found = [p for p in out_dir.iterdir() if _TEMPORARY.match(p.name)] \
        if out_dir.is_dir() else []
    for folder, dirs, files in os.walk(layout.run_path(out_dir, "derivatives")):
        for name in list(dirs):
            if _TEMPORARY.match(name):
                found.append(Path(folder) / name)
                dirs.remove(name)
        found += [Path(folder) / name for name in files if _TEMPORARY.match(name)]
    return sorted(found)


def _snakemake_processes(folder: Path) -> list[int] | None:
    """Live Snakemake processes (or their jobs) working in ``folder``; None when unknown.

    Snakemake works in its ``--directory``; its jobs too. Linux only (``/proc``).
    """
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if b"snakemake" not in cmdline:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except PermissionError:  # another user's Snakemake: where it works cannot be told
            return None
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            pids.append(int(entry.name))
    return pids


def _recover_interrupted(out_dir: Path, unlock_cmd: list[str]) -> None:
    """Clean up after a run that was killed (``kill -9``, power loss, a killed batch job).

    Snakemake leaves its lock (the next run refuses to start until ``--unlock``) and the
    killed jobs leave their temporaries (hidden ``.*.tmp*`` files, ANTs scratch folders).
    When no Snakemake process works in ``out_dir``, both are stale: the temporaries are
    removed and the lock is released; the incomplete outputs are then redone by
    ``--rerun-incomplete``. When processes are running (or this cannot be told), nothing is
    touched and Snakemake's lock protects the running workflow.
    """
    locks = out_dir / ".snakemake" / "locks"
    locked = locks.is_dir() and any(locks.iterdir())
    temporaries = _temporaries(out_dir)
    if not (locked or temporaries) or _snakemake_processes(out_dir) != []:
        return
    for path in temporaries:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if locked:
        print(f"brainiron: {out_dir}: an earlier run was interrupted; removing its stale "
              "lock (no Snakemake process is running there)", file=sys.stderr)
        subprocess.call([*unlock_cmd, "--unlock"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)


def run(bids_dir: str | os.PathLike | None, out_dir: str | os.PathLike, *, cores: int = 2,
        participant_label: Iterable[str] | None = None, config: Mapping | None = None,
        configfile: str | os.PathLike | None = None, dry_run: bool = False,
        keep_going: bool = True, extra_args: Iterable[str] = (),
        analysis_level: str | None = None) -> int:
    """Run brainiron on a BIDS dataset (or the built-in phantom) and return the exit status.

    With ``keep_going`` (the default) a subject whose processing fails does not stop the
    others: after the first pass, the failed subjects' partial outputs are removed, the group
    tables and report are made for everyone else (a second Snakemake pass that excludes the
    failed subjects), and the failures are listed in ``group/failed.tsv`` and on stderr.

    Parameters
    ----------
    bids_dir : path or None
        The BIDS dataset; ``None`` analyses the built-in phantom.
    out_dir : path
        Output folder; results go to ``<out_dir>/brainiron`` (BIDS-Derivatives), Snakemake's
        bookkeeping to ``<out_dir>/.snakemake``.
    cores : int
        Cores Snakemake may use.
    participant_label : iterable of str, optional
        Only these subjects.
    config : mapping, optional
        Configuration overrides (``{"maps": ["Chimap"], "registration.resolution_mm": 1.5}``);
        the merged configuration is written to ``<out_dir>/config.yaml``.
    configfile : path, optional
        A YAML configuration to use instead of the shipped ``config/config.yaml``.
    dry_run : bool
        Snakemake's ``--dry-run``.
    keep_going : bool
        Process the other subjects when one fails (see above).
    extra_args : iterable of str
        More Snakemake arguments (e.g. ``["--profile", "workflow/profiles/slurm"]``).
    analysis_level : {None, "participant", "group"}
        BIDS-App levels: ``"participant"`` ends at every subject's own table
        (``desc-regions_stats.tsv``, Snakemake target ``participant``); ``"group"`` makes the
        group tables, comparison and report from the subjects whose own tables are there
        (the others are left out and named on stderr). ``None``: both in one run.

    Returns
    -------
    int
        0 when every subject was processed; 1 when some failed (listed) or Snakemake failed.

    Examples
    --------
    >>> import brainiron
    >>> brainiron.run("/data/ds004000", "/scratch/brainiron", cores=8)  # doctest: +SKIP
    """
    from ..failures import remove_failed_outputs

    out_dir = Path(out_dir).resolve()
    merged = _prepared_config(bids_dir, out_dir, participant_label, config, configfile)
    if analysis_level == "group":
        merged = group_level_config(merged, out_dir)
    elif analysis_level not in (None, "participant"):
        raise ConfigError(f"analysis level {analysis_level!r}: participant or group")
    # Only now is the output folder created: a configuration or dataset error leaves nothing.
    check_writable(out_dir)
    targets = ["participant"] if analysis_level == "participant" else []
    cmd = _snakemake_command(merged, out_dir, cores, extra_args, targets)
    if dry_run:
        return _call([*cmd, "--dry-run"])
    _recover_interrupted(out_dir, cmd)
    started = time.time()
    status = _call([*cmd, "--keep-going"] if keep_going else cmd)
    deriv = layout.run_path(out_dir, "derivatives")
    excluded = list(merged["exclude"])
    if status != 0 and keep_going:
        status = _second_pass(deriv, out_dir, cmd, excluded, status)
    failed = _failures_of_run(deriv, excluded, started, status)
    # Nothing stale may stay for a failed subject.
    remove_failed_outputs(deriv, [key for key, _, _ in failed])
    # Where the tables and report are: printed by the Snakefile's onsuccess (once per
    # successful pass), so not repeated here.
    if failed:
        print(f"brainiron: {len(failed)} subject(s) failed (listed in "
              f"{layout.group_path(deriv, 'failed')}):", file=sys.stderr)
        for key, stage, error in failed:
            print(f"  {key} [{stage}]: {error}", file=sys.stderr)
        return 1
    return status


def _prepared_config(bids_dir, out_dir: Path, participant_label, config, configfile) -> dict:
    """The run's merged, checked configuration; dataset-level problems raise here."""
    if not SNAKEFILE.exists():
        raise BrainironError(f"{SNAKEFILE}: workflow not found; the brainiron installation "
                             "is incomplete (reinstall it)")
    settings = dict(config or {})
    settings["bids_dir"] = str(Path(bids_dir).resolve()) if bids_dir else ""
    settings["output_dir"] = str(out_dir)
    if participant_label:
        settings["participant_label"] = list(participant_label)
    merged = merged_config(settings, configfile)
    check_config(merged)
    if bids_dir:
        # Dataset-level problems (no folder, no subjects, broken participants.tsv) end here
        # in one line, before Snakemake starts.
        # Cached beside the outputs: Snakemake's own discovery then reads it back.
        from ..bids.cache import cache_path, discover_cached
        from ..settings import Settings

        settings = Settings.from_config(merged)
        discover_cached(bids_dir, cache_path(out_dir),
                        participant_label=settings.participant_label or None,
                        select=settings.select, t1w_grid=settings.registration.t1w_grid)
    return merged


def _snakemake_command(merged: Mapping, out_dir: Path, cores: int, extra_args,
                       targets: Iterable[str] = ()) -> list[str]:
    """Snakemake's command line; the run's full configuration is kept beside the outputs
    (provenance and re-runs)."""
    import yaml

    from ..io import write_text

    conf = write_text(yaml.safe_dump(dict(merged), sort_keys=False),
                      layout.run_path(out_dir, "config"))
    return [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(SNAKEFILE),
            "--directory", str(out_dir), "--configfile", str(conf), "--cores", str(cores),
            "--rerun-incomplete", "--quiet", "rules", *extra_args]


def group_level_config(merged: Mapping, out_dir: str | os.PathLike) -> dict:
    """The configuration of the BIDS-App group level: the subjects without their own table
    (not processed, or failed, at the participant level) are excluded.

    Parameters
    ----------
    merged : mapping
        The run's configuration (``bids_dir``: the dataset, or empty for the phantom in
        ``<out_dir>/phantom``).
    out_dir : path
        The output folder of the participant level.

    Returns
    -------
    dict
        ``merged`` with those subjects added to ``exclude``; the ones that failed keep their
        failure record, so that ``group/failed.tsv`` lists them.

    Raises
    ------
    ConfigError
        When no subject has its table (the participant level has not run).
    """
    from ..bids.cache import cache_path, discover_cached
    from ..failures import read_failures

    deriv = Path(out_dir) / "brainiron"
    bids_dir = merged.get("bids_dir") or Path(out_dir) / "phantom"
    if not Path(bids_dir).is_dir():
        raise ConfigError(f"{bids_dir}: no dataset; run the participant level first")
    dataset = discover_cached(
        bids_dir, cache_path(out_dir), participant_label=merged.get("participant_label") or None,
        select=merged.get("select") or {},
        t1w_grid=(merged.get("registration") or {}).get("t1w_grid", "same"))
    failures = read_failures(deriv)
    excluded = list(merged.get("exclude") or [])
    candidates = [s.key for s in dataset.valid if s.key not in excluded]
    missing = [key for key in candidates if key in failures
               or not layout.subject_path(deriv, "regions_stats", key).is_file()]
    if len(missing) == len(candidates):
        raise ConfigError(f"{deriv}: no subject has its regional table; run the participant "
                          "level first")
    if missing:
        print(f"brainiron: group level without {len(missing)} subject(s) that have no "
              f"regional table: {', '.join(missing)}", file=sys.stderr)
    return {**merged, "exclude": excluded + missing}


def _second_pass(deriv: Path, out_dir: Path, cmd: list[str], excluded: list[str],
                 status: int) -> int:
    """After failures: remove the failed subjects' outputs and make the group tables and
    report for everyone else (a second pass that excludes them)."""
    import yaml

    from ..failures import read_failures, remove_failed_outputs
    from ..io import write_text

    failures = {k: v for k, v in read_failures(deriv).items() if k not in excluded}
    if not failures:
        return status
    remove_failed_outputs(deriv, failures)
    extra = write_text(yaml.safe_dump({"exclude": excluded + sorted(failures)}),
                       layout.run_path(out_dir, "exclude_config"))
    # A second --configfile replaces the first: give both, the run's and the exclusions.
    conf = layout.run_path(out_dir, "config")
    return _call([*cmd, "--configfile", str(conf), str(extra), "--keep-going"])


def _failures_of_run(deriv: Path, excluded: list[str], started: float, status: int
                     ) -> list[tuple[str, str, str]]:
    """(subject, stage, error) of this run: ``failed.tsv`` if this run wrote it, else (the
    group rule did not run) this run's failure records."""
    from ..failures import read_failed_table, read_failures

    failed = read_failed_table(layout.group_path(deriv, "failed"), newer_than=started)
    if not failed and status != 0:
        failed = [(k, str(v.get("rule", "")), str(v.get("error", "")))
                  for k, v in read_failures(deriv).items() if k not in excluded]
    return failed


def _call(cmd: list[str]) -> int:
    try:
        return subprocess.call(cmd)
    except OSError as exc:
        raise ConfigError(f"cannot start snakemake: {exc}") from None
