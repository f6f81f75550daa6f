"""Command line: ``brainiron phantom``, ``brainiron validate``, ``brainiron run``, and the
BIDS-App form ``brainiron BIDS_DIR OUTPUT_DIR participant|group`` (Gorgolewski et al. 2017).

Every problem with the input ends in one line on stderr (``brainiron: error: <file>: <what>``)
and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import BrainironError

__all__ = ["main"]


def _voxel_size(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) <= 0:
        raise argparse.ArgumentTypeError("voxel size: one or three positive numbers in mm")
    return tuple(parts)


def _field_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 21:
        raise argparse.ArgumentTypeError("field strength: a number of tesla in (0, 21]")
    return value


def _cmd_phantom(args) -> int:
    from .phantom import PhantomConfig, generate_phantom, truth_dir

    realistic = {}
    voxel = args.voxel_size or (2.5, 2.5, 2.5)
    if args.realistic:
        voxel = args.voxel_size or (1.0, 1.0, 2.0)
        realistic = dict(realism="realistic", t1w_voxel_size=args.t1w_voxel_size,
                         max_motion_deg=args.max_motion_deg, max_motion_mm=args.max_motion_mm,
                         image_sets=tuple(args.image_sets), chi_recon=args.chi_recon,
                         chi_outside=args.chi_outside)
    cfg = PhantomConfig(
        n_subjects=args.subjects, seed=args.seed, voxel_size=voxel, snr=args.snr,
        field_strength=args.field_strength, rls_sn_effect=-abs(args.rls_sn_effect),
        orientation=args.orientation, coverage=args.coverage, with_t1w=not args.no_t1w,
        with_chimap=not args.no_chimap, with_r2starmap=not args.no_r2starmap,
        with_megre=not args.no_megre, with_phase=args.with_phase, **realistic,
    )
    truth = generate_phantom(args.out, cfg)
    print(f"phantom: {args.subjects} subjects at {'x'.join(f'{v:g}' for v in cfg.voxel_size)} "
          f"mm in {truth.attrs['seconds']:.1f} s -> {args.out}")
    print(f"ground truth: {truth_dir(args.out) / 'truth.tsv'}")
    return 0


def _cmd_validate(args) -> int:
    from .bids import discover, validate_subject
    from .settings import Settings

    dataset = discover(args.bids_dir, participant_label=args.participant_label,
                       t1w_grid=args.t1w_grid)
    failed = 0
    for subject in dataset.subjects:
        problem = subject.errors[0] if subject.errors else None
        if problem is None:
            try:
                report = validate_subject(subject, field_strength=args.field_strength)
            except BrainironError as exc:
                problem = str(exc)
        if problem:
            failed += 1
            print(f"FAIL {subject.key}: {problem}")
        else:
            maps = ", ".join(list(subject.maps) + ([f"MEGRE x{len(subject.megre)}"]
                                                   if subject.megre else []))
            plan = subject.plan(Settings().maps, "")
            notes = [*report.notes, *(["R2* fitted from the MEGRE echoes"]
                                      if plan.fit_r2star else [])]
            print(f"ok   {subject.key}: {maps}; registration image {plan.registration_kind}; "
                  f"grid {report.shape} at {tuple(round(v, 3) for v in report.voxel_size_mm)} mm"
                  + "".join(f"; {n}" for n in notes))
    ignored = dataset.ignored_table()
    for row in ignored.itertuples():
        print(f"ignored {row.path}: {row.reason}")
    print(f"{len(dataset.subjects) - failed} of {len(dataset.subjects)} subject(s) valid, "
          f"{len(ignored)} file(s) ignored")
    return 1 if failed else 0


def _cmd_run(args) -> int:
    import yaml

    from .workflow import run

    overrides = {key: yaml.safe_load(value) if value else "" for key, value in args.config or []}
    return run(args.bids_dir or None, args.out_dir, cores=args.cores,
               participant_label=args.participant_label, config=overrides,
               configfile=args.configfile, dry_run=args.dry_run,
               keep_going=not args.stop_on_error, extra_args=args.snakemake_args or [])


def _cmd_bids_app(args) -> int:
    import yaml

    from .workflow import run

    overrides = {key: yaml.safe_load(value) if value else "" for key, value in args.config or []}
    return run(args.bids_dir or None, args.output_dir, cores=args.cores,
               participant_label=args.participant_label, config=overrides,
               configfile=args.configfile, dry_run=args.dry_run,
               keep_going=not args.stop_on_error, extra_args=args.snakemake_args or [],
               analysis_level=args.analysis_level)


def _profile(text: str) -> list[str]:
    """Snakemake's ``--profile`` argument: a folder, else a profile shipped with brainiron."""
    from .workflow import PROFILES

    shipped = PROFILES / text
    if not Path(text).exists() and "/" not in text and shipped.is_dir():
        text = str(shipped)
    return ["--profile", text]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("--config takes KEY=VALUE")
    return key, value


#: The subcommands; any other first argument starts the BIDS-App form.
COMMANDS = ("phantom", "validate", "run")

_USAGE = ("%(prog)s BIDS_DIR OUTPUT_DIR {participant,group} [--participant-label LABEL ...] "
          "[options]\n       %(prog)s {phantom,validate,run} ...")
_BIDS_APP = """BIDS-App form (Gorgolewski et al. 2017, as fMRIPrep or QSIPrep):
  brainiron BIDS_DIR OUTPUT_DIR participant [--participant-label 01 02]
      every subject's own regional table (OUTPUT_DIR/brainiron/sub-*/.../*_desc-regions_stats.tsv)
  brainiron BIDS_DIR OUTPUT_DIR group
      the group tables, comparison and report from the subjects whose tables are there
  Options as for `run`; `brainiron BIDS_DIR OUTPUT_DIR participant --help` lists them.
  `brainiron run BIDS_DIR OUTPUT_DIR` does both levels in one run."""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of ``run`` and of the BIDS-App form."""
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--participant-label", nargs="+", metavar="LABEL",
                   help="only these subjects (with or without 'sub-')")
    p.add_argument("--config", type=_key_value, nargs="+", metavar="KEY=VALUE",
                   help="override config/config.yaml entries; YAML values, dotted keys "
                        "(registration.resolution_mm=1.5)")
    p.add_argument("--configfile", type=Path, help="a configuration YAML to start from")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first failure (default: process the other subjects, "
                        "then list what failed)")
    p.add_argument("--profile", dest="snakemake_args", type=_profile, metavar="PROFILE",
                   help="a Snakemake profile: a folder, or the name of one shipped with "
                        "brainiron (slurm)")


def build_bids_app_parser() -> argparse.ArgumentParser:
    """The BIDS-App command line: ``brainiron BIDS_DIR OUTPUT_DIR participant|group``."""
    parser = argparse.ArgumentParser(
        prog="brainiron", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s BIDS_DIR OUTPUT_DIR {participant,group} [--participant-label LABEL "
              "...] [options]",
        description="Regional brain iron from QSM, R2* and multi-echo GRE: BIDS-App levels.")
    parser.add_argument("bids_dir", metavar="BIDS_DIR",
                        help="BIDS dataset ('' for the built-in phantom)")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path,
                        help="results go to OUTPUT_DIR/brainiron (BIDS-Derivatives)")
    parser.add_argument("analysis_level", choices=["participant", "group"],
                        metavar="{participant,group}",
                        help="participant: every subject's own table; group: the group "
                             "tables, comparison and report from the subjects there")
    _add_run_options(parser)
    parser.set_defaults(func=_cmd_bids_app)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainiron", usage=_USAGE, epilog=_BIDS_APP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Regional brain iron from QSM, R2* and multi-echo GRE in BIDS datasets.")
    parser.add_argument("--version", action="version", version=f"brainiron {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="write a phantom BIDS dataset with known iron")
    p.add_argument("out", type=Path, help="new folder for the dataset")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voxel-size", type=_voxel_size, default=None,
                   help="mm: one value or three (e.g. 2.5 or 2,2,3); default 2.5 "
                        "(--realistic: the maps' voxel, default 1,1,2)")
    p.add_argument("--snr", type=float, default=100.0, help="first-echo SNR in white matter")
    p.add_argument("--field-strength", type=float, default=3.0, help="tesla")
    p.add_argument("--rls-sn-effect", type=float, default=0.15,
                   help="fractional SN iron reduction in the rls group (default 0.15)")
    p.add_argument("--orientation", choices=["mixed", "RAS", "LPS", "oblique"],
                   default="mixed")
    p.add_argument("--coverage", type=float, default=1.0,
                   help="fraction of the brain covered along the slice axis (slab)")
    for flag in ("t1w", "chimap", "r2starmap", "megre"):
        p.add_argument(f"--no-{flag}", action="store_true", help=f"do not write the {flag}")
    p.add_argument("--with-phase", action="store_true",
                   help="also write part-phase MEGRE echoes from the phantom's chi (B0 along "
                        "world z; with --no-chimap, or --realistic subjects without a chi "
                        "map, the workflow reconstructs chi from them)")
    g = p.add_argument_group("realistic mode (docs/phantom.md)")
    g.add_argument("--realistic", action="store_true",
                   help="T1w on its own sagittal grid with head motion, maps on an "
                        "axial-oblique grid, veins, streaking, tv / l2 chi")
    g.add_argument("--t1w-voxel-size", type=_voxel_size, default=(1.0, 1.0, 1.0),
                   help="mm, the T1w's grid (default 1)")
    g.add_argument("--max-motion-deg", type=float, default=5.0)
    g.add_argument("--max-motion-mm", type=float, default=5.0)
    g.add_argument("--image-sets", nargs="+", choices=["T1w", "MEGRE", "Chimap", "magnitude"],
                   default=["T1w"], help="cycled by subject: T1w + maps, maps + MEGRE, chi "
                                         "only (default T1w)")
    g.add_argument("--chi-recon", choices=["mixed", "tv", "l2"], default="mixed")
    g.add_argument("--chi-outside", choices=["zero", "nan"], default="zero")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("validate", help="discover and check a BIDS dataset, write nothing")
    p.add_argument("bids_dir", type=Path)
    p.add_argument("--participant-label", nargs="+")
    p.add_argument("--t1w-grid", choices=["coregister", "world", "same"], default="coregister")
    p.add_argument("--field-strength", type=_field_strength, metavar="T",
                   help="B0 in tesla, used only when the sidecars do not state "
                        "MagneticFieldStrength (default: it must be stated where R2* needs it)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run the whole workflow (Snakemake) on a BIDS dataset")
    p.add_argument("bids_dir", help="BIDS dataset ('' for the built-in phantom)")
    p.add_argument("out_dir", type=Path)
    _add_run_options(p)
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    bids_app = bool(argv) and argv[0] not in COMMANDS and not argv[0].startswith("-")
    args = (build_bids_app_parser() if bids_app else build_parser()).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrainironError as exc:
        print(f"brainiron: error: {exc}", file=sys.stderr)
        return 1
    except FileExistsError as exc:
        print(f"brainiron: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # full disk, quota, permissions: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"brainiron: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
