"""Run single-mutation cases through discovery + validation and classify each outcome.

Each case: a fresh copy of the intact one-subject phantom, one :class:`Mutation`, then
``brainiron.bids.discover`` and ``validate_subject`` in-process (what ``brainiron validate``
does). Outcomes:

* ``ok`` — as expected (a clean one-line rejection naming the file, or an acceptance);
* ``crash`` — an exception other than brainiron's one-line errors (a traceback), or a hang;
* ``wrong_accept`` — a broken input accepted (or a valid-looking acceptance whose image no
  longer reads back with the intact values);
* ``wrong_reject`` — a valid input refused;
* ``misleading`` — refused as expected, but the line does not name the file, spans lines,
  or misnames the cause (``says`` / ``not_says``).

Run ``python -m tests.fuzz.harness [N] [SEED]`` from the repository for the counts.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mutations import IMAGES, SUB, Mutation, encoding_mutations, header_mutations
from .mutations_data import (
    layout_mutations,
    participants_mutations,
    sidecar_mutations,
    value_mutations,
)

PHANTOM = {"n_subjects": 1, "seed": 5, "voxel_size": (4.0, 4.0, 4.0)}
TIMEOUT_S = 30


def all_mutations() -> list[Mutation]:
    """Every mutation, in a fixed order (header and encoding ones for each image)."""
    out: list[Mutation] = []
    for stem in IMAGES:
        out += header_mutations(stem) + encoding_mutations(stem)
    return out + value_mutations() + sidecar_mutations() + layout_mutations() \
        + participants_mutations()


def sample(n: int | None, seed: int = 0) -> list[tuple[Mutation, int]]:
    """``n`` seeded cases (each mutation kind at least once when ``n`` allows; all when None).

    Returns (mutation, case seed) pairs; the case seed drives the mutation's random choices.
    """
    mutations = all_mutations()
    rng = np.random.default_rng(seed)
    if n is None or n >= len(mutations):
        extra = 0 if n is None else n - len(mutations)
        picks = list(range(len(mutations))) + list(rng.integers(0, len(mutations), extra))
    else:
        families = sorted({m.family for m in mutations})
        picks = [int(rng.choice([i for i, m in enumerate(mutations) if m.family == f]))
                 for f in families]
        rest = [i for i in range(len(mutations)) if i not in picks]
        picks += [int(i) for i in rng.choice(rest, n - len(picks), replace=False)]
    return [(mutations[i], int(rng.integers(0, 2**31))) for i in sorted(picks)]


def intact(root: Path) -> Path:
    """The one-subject 4 mm phantom every case starts from (derivatives removed)."""
    from brainiron.phantom import generate_phantom

    generate_phantom(root, **PHANTOM)
    shutil.rmtree(root / "derivatives")
    return root


@dataclass
class Result:
    mutation: Mutation
    outcome: str
    detail: str
    seconds: float


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _same_values(case: Path, good: Path, stem: str) -> str | None:
    from brainiron.io import load_nifti

    [path] = [p for p in (case / SUB).rglob(f"*_{stem}.nii*")]
    data, img = load_nifti(path)
    ref, ref_img = load_nifti(good / SUB / "anat" / f"{SUB}_{stem}.nii.gz")
    if data.shape != ref.shape or not np.allclose(img.affine, ref_img.affine, atol=1e-4):
        return f"{path.name}: grid changed ({data.shape}, affine)"
    if not np.allclose(data, ref, rtol=1e-5, atol=1e-6 * np.nanmax(np.abs(ref)),
                       equal_nan=True):
        return f"{path.name}: values changed"
    return None


def _classify(m: Mutation, problem: str | None, case: Path, good: Path, dataset) -> tuple:
    if problem is None:
        if m.expect == "reject":
            return "wrong_accept", "accepted"
        extra = None
        if m.same_values:
            extra = _same_values(case, good, m.same_values)
        if extra is None and m.check is not None:
            extra = m.check(dataset)
        return ("wrong_accept", extra) if extra else ("ok", "accepted")
    if m.expect == "accept":
        return "wrong_reject", problem
    unclear = ("\n" in problem or (m.names and m.names not in problem)
               or (m.says and m.says not in problem)
               or any(word in problem for word in m.not_says))
    return ("misleading" if unclear else "ok"), problem


def run_case(m: Mutation, case_seed: int, good: Path, work: Path) -> Result:
    """Copy the intact dataset, apply one mutation, discover and validate; classify."""
    from brainiron.bids import discover, validate_subject
    from brainiron.errors import BrainironError

    case = work / "case"
    if case.exists():
        shutil.rmtree(case)
    shutil.copytree(good, case)
    m.apply(case, np.random.default_rng(case_seed))
    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    dataset = None
    try:
        try:
            dataset = discover(case)
            subject = dataset.subjects[0] if dataset.subjects else None
            if subject is None:
                problem = "no subject found"
            elif subject.errors:
                problem = subject.errors[0]
            else:
                validate_subject(subject)
                problem = None
        except BrainironError as exc:
            problem = str(exc)
        outcome, detail = _classify(m, problem, case, good, dataset)
    except _Hang:
        outcome, detail = "crash", f"no answer in {TIMEOUT_S} s"
    except BaseException as exc:  # noqa: BLE001 - the point: any traceback is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        outcome, detail = "crash", last[:300]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return Result(m, outcome, detail, time.perf_counter() - start)


def run(n: int | None = 300, seed: int = 0, work: Path | None = None) -> list[Result]:
    """Run ``n`` seeded cases (all mutations when ``None``)."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        good = intact(Path(tmp) / "good")
        return [run_case(m, s, good, Path(tmp)) for m, s in sample(n, seed)]


def summary(results: list[Result]) -> Counter:
    return Counter(r.outcome for r in results)


def main(argv: list[str]) -> int:
    n = None if argv and argv[0] == "all" else int(argv[0]) if argv else 300
    seed = int(argv[1]) if len(argv) > 1 else 0
    start = time.perf_counter()
    results = run(n, seed)
    counts = summary(results)
    for r in results:
        if r.outcome != "ok":
            print(f"{r.outcome:13s} {r.mutation.id} [{r.mutation.expect}]: {r.detail[:220]}")
    expected = Counter(r.mutation.expect for r in results)
    ok = [r for r in results if r.outcome == "ok"]
    print(f"{len(results)} cases ({dict(expected)}) in {time.perf_counter() - start:.1f} s: "
          f"{sum(r.mutation.expect != 'accept' and 'accepted' != r.detail for r in ok)} clean "
          f"errors, {sum(r.detail == 'accepted' for r in ok)} correct acceptances, "
          + ", ".join(f"{k} {counts.get(k, 0)}"
                      for k in ("crash", "wrong_accept", "wrong_reject", "misleading")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
