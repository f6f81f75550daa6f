"""Run the Snakemake workflow from Python or the ``brainiron run`` command.

The workflow (``Snakefile`` and ``workflow/``) lives at the root of the brainiron source tree;
this module finds it, passes the configuration and runs Snakemake in a subprocess, so that the
command line, notebooks and ``snakemake`` itself all run the same rules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import BrainironError, ConfigError

__all__ = ["SNAKEFILE", "merged_config", "run"]

#: The workflow's Snakefile (source checkout; brainiron is installed with ``pip install -e``).
SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"


def merged_config(overrides: Mapping | None = None,
                  configfile: str | os.PathLike | None = None) -> dict:
    """The shipped ``config/config.yaml`` (or ``configfile``) updated with ``overrides``.

    Keys of ``overrides`` may be dotted (``"registration.resolution_mm"``) to reach nested
    entries; mapping values are merged into the existing mapping.
    """
    import yaml

    path = Path(configfile) if configfile else SNAKEFILE.parent / "config" / "config.yaml"
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


def run(bids_dir: str | os.PathLike | None, out_dir: str | os.PathLike, *, cores: int = 2,
        participant_label: Iterable[str] | None = None, config: Mapping | None = None,
        configfile: str | os.PathLike | None = None, dry_run: bool = False,
        keep_going: bool = False, extra_args: Iterable[str] = ()) -> int:
    """Run brainiron on a BIDS dataset (or the built-in phantom) and return the exit status.

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
    dry_run, keep_going : bool
        Snakemake's ``--dry-run`` and ``--keep-going``.

    Returns
    -------
    int
        0 when every subject was processed; non-zero otherwise (the failures are listed).

    Examples
    --------
    >>> import brainiron
    >>> brainiron.run("/data/ds004000", "/scratch/brainiron", cores=8)  # doctest: +SKIP
    """
    if not SNAKEFILE.exists():
        raise BrainironError(f"{SNAKEFILE}: workflow not found; install brainiron from its "
                             "source tree (pip install -e .)")
    import yaml

    from .io import write_text

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(config or {})
    settings["bids_dir"] = str(Path(bids_dir).resolve()) if bids_dir else ""
    settings["output_dir"] = str(out_dir)
    if participant_label:
        settings["participant_label"] = list(participant_label)
    # The run's full configuration, kept beside the outputs (provenance and re-runs).
    conf = write_text(yaml.safe_dump(merged_config(settings, configfile), sort_keys=False),
                      out_dir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
           "--directory", str(out_dir), "--configfile", str(conf), "--cores", str(cores),
           "--rerun-incomplete", "--quiet", "rules"]
    if dry_run:
        cmd.append("--dry-run")
    if keep_going:
        cmd.append("--keep-going")
    cmd.extend(extra_args)
    try:
        status = subprocess.call(cmd)
    except OSError as exc:
        raise ConfigError(f"cannot start snakemake: {exc}") from None
    deriv = out_dir / "brainiron"
    failed = deriv / "group" / "failed.tsv"
    if status == 0 and not dry_run:
        n_failed = max(0, len(failed.read_text().splitlines()) - 1) if failed.exists() else 0
        print(f"brainiron: tables: {deriv / 'group' / 'regions.tsv'} (long), "
              f"{deriv / 'group' / 'regions_wide.tsv'} (wide), "
              f"{deriv / 'group' / 'group_comparison.tsv'}; report: "
              f"{deriv / 'report' / 'index.html'}")
        if n_failed:
            print(f"brainiron: {n_failed} subject(s) failed, see {failed}", file=sys.stderr)
            return 1
    return status
