"""Mutations of values, sidecars, layout and participants.tsv (see :mod:`.mutations`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import numpy as np
import pandas as pd

from .mutations import MAPS, SUB, Mutation, _save, _voxels, anat, image

ECHOES = tuple(f"echo-{n}_part-mag_MEGRE" for n in range(1, 9))


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _values(stem: str, fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Callable:
    def apply(root, rng):
        path = image(root, stem)
        data, img = _voxels(path)
        _save(path, fn(data.copy(), rng).astype(np.float32), img)
    return apply


def _spike(value):
    def fn(d, rng):
        d[tuple(int(rng.integers(0, s)) for s in d.shape)] = value
        return d
    return fn


def _t2star_in_s(root, rng):
    a = anat(root)
    data, img = _voxels(a / f"{SUB}_R2starmap.nii.gz")
    with np.errstate(divide="ignore"):
        t2 = np.where(data > 0, 1.0 / np.maximum(data, 1e-3), 0.0)
    _save(a / f"{SUB}_T2starmap.nii.gz", t2.astype(np.float32), img)
    (a / f"{SUB}_R2starmap.nii.gz").unlink()
    meta = json.loads((a / f"{SUB}_R2starmap.json").read_text())
    meta["Units"] = "s"
    (a / f"{SUB}_T2starmap.json").write_text(json.dumps(meta))
    (a / f"{SUB}_R2starmap.json").unlink()


def value_mutations() -> list[Mutation]:
    out = []

    def add(stem, name, expect, fn, **kw):
        kw.setdefault("names", f"{SUB}_{stem}.nii.gz" if expect == "reject" else "")
        out.append(Mutation("values", f"{stem}:{name}", expect, _values(stem, fn), **kw))

    for stem in (*MAPS, "T1w", ECHOES[2]):
        add(stem, "constant", "reject", lambda d, r: np.full_like(d, 0.25))
        add(stem, "constant inside the brain", "reject",
            lambda d, r: np.where(d != 0, 0.25, 0.0))
        add(stem, "all zero", "reject", lambda d, r: np.zeros_like(d))
        add(stem, "all NaN", "reject", lambda d, r: np.full_like(d, np.nan))
        add(stem, "one +Inf voxel", "reject", _spike(np.inf))
    for stem in MAPS:
        add(stem, "NaN outside the brain", "accept",
            lambda d, r: np.where(d != 0, d, np.nan))
        add(stem, "one outlier voxel", "accept", _spike(50.0))
    add("R2starmap", "negated", "reject", lambda d, r: -d, says="negative")
    add("R2starmap", "x1000 (1/ms read as 1/s)", "reject", lambda d, r: d * 1000)
    add("R2starmap", "/1000", "reject", lambda d, r: d / 1000)
    add("Chimap", "x1000 (ppb)", "reject", lambda d, r: d * 1000, says="ppb")
    add("Chimap", "negated", "accept", lambda d, r: -d)
    add(ECHOES[1], "negative (phase?)", "reject", lambda d, r: d - 500.0)
    out.append(Mutation("values", "T2starmap in s", "accept", _t2star_in_s))
    return out


# --------------------------------------------------------------------------------------------
# Sidecars
# --------------------------------------------------------------------------------------------


def _sidecar(stem: str, fn: Callable[[dict], dict | bytes]) -> Callable:
    def apply(root, rng):
        path = anat(root) / f"{SUB}_{stem}.json"
        out = fn(json.loads(path.read_text()))
        path.write_bytes(out if isinstance(out, bytes) else json.dumps(out).encode())
    return apply


def _set(**changes):
    def fn(meta):
        meta.update(changes)
        return meta
    return fn


def _all_sidecars(**changes):
    def apply(root, rng):
        for path in anat(root).glob("*.json"):
            meta = json.loads(path.read_text())
            meta.update(changes)
            path.write_text(json.dumps(meta))
    return apply


def _echo_time_inherited(root, rng):
    """EchoTime moved from each echo's sidecar to a top-level sidecar (BIDS inheritance)."""
    for n, stem in enumerate(ECHOES, start=1):
        path = anat(root) / f"{SUB}_{stem}.json"
        meta = json.loads(path.read_text())
        top = {"EchoTime": meta.pop("EchoTime")}
        path.write_text(json.dumps(meta))
        (root / f"echo-{n}_part-mag_MEGRE.json").write_text(json.dumps(top))


def _b0_unstated(keep: str = "", chi_only: bool = False) -> Callable:
    """MagneticFieldStrength removed from every sidecar (but ``keep``'s); R2*/MEGRE removed."""
    def apply(root, rng):
        for path in anat(root).iterdir():
            if chi_only and ("R2starmap" in path.name or "MEGRE" in path.name):
                path.unlink()
            elif path.suffix == ".json" and not (keep and keep in path.name):
                meta = json.loads(path.read_text())
                meta.pop("MagneticFieldStrength", None)
                path.write_text(json.dumps(meta))
    return apply


def _b0_is(expected) -> Callable:
    def check(dataset):
        b0 = dataset.subjects[0].field_strength
        return None if b0 == expected else f"field strength {b0} T, expected {expected}"
    return check


def _ppb_declared(root, rng):
    _values("Chimap", lambda d, r: d * 1000)(root, rng)
    _sidecar("Chimap", _set(Units="ppb"))(root, rng)


def sidecar_mutations() -> list[Mutation]:
    echo = f"{SUB}_{ECHOES[1]}.json"
    text = lambda m: json.dumps(m)  # noqa: E731
    reject = [
        ("Chimap", "latin-1 byte", lambda m: json.dumps({**m, "Manufacturer": "Fé"},
                                                        ensure_ascii=False).encode("latin-1")),
        ("Chimap", "UTF-16", lambda m: text(m).encode("utf-16")),
        ("Chimap", "array, not object", lambda m: text([m]).encode()),
        ("Chimap", "100000-deep nesting", lambda m: b"[" * 100_000 + b"]" * 100_000),
        ("Chimap", "malformed", lambda m: text(m)[:-3].encode()),
        ("Chimap", "Units furlongs", _set(Units="furlongs")),
        (ECHOES[1], "EchoTime negative", _set(EchoTime=-0.008)),
        (ECHOES[1], "EchoTime 0", _set(EchoTime=0)),
        (ECHOES[1], "EchoTime in ms", _set(EchoTime=8.0)),
        (ECHOES[1], "EchoTime a string", _set(EchoTime="8 ms")),
        (ECHOES[1], "EchoTime missing", lambda m: {k: v for k, v in m.items()
                                                  if k != "EchoTime"}),
    ]
    for value in (0, -3, 25, "3T", 1e300):
        reject.append(("Chimap", f"MagneticFieldStrength {value!r}",
                       _set(MagneticFieldStrength=value)))
    reject.append(("Chimap", "MagneticFieldStrength 1.5 (others 3)",
                   _set(MagneticFieldStrength=1.5)))
    out = [Mutation("sidecar", f"{stem}:{name}", "reject", _sidecar(stem, fn),
                    names=SUB if "(others 3)" in name else f"{SUB}_{stem}",
                    says="MagneticFieldStrength" if "Magnetic" in name else "")
           for stem, name, fn in reject]
    accept = [
        ("Chimap", "UTF-8 BOM", lambda m: b"\xef\xbb\xbf" + text(m).encode()),
        ("Chimap", "CRLF, indented", lambda m: json.dumps(m, indent=2).replace(
            "\n", "\r\n").encode()),
        ("Chimap", "non-ASCII UTF-8", _set(Institution="Universität Zürich")),
        ("Chimap", "extra keys", _set(ConversionSoftware="dcm2niix", Nested={"a": [1, 2]})),
        ("Chimap", "empty object", lambda m: {}),
        ("Chimap", "MagneticFieldStrength integer 3", _set(MagneticFieldStrength=3)),
    ]
    out += [Mutation("sidecar", f"{stem}:{name}", "accept", _sidecar(stem, fn))
            for stem, name, fn in accept]
    out += [
        Mutation("sidecar", "MagneticFieldStrength 7 everywhere", "accept",
                 _all_sidecars(MagneticFieldStrength=7.0)),
        Mutation("sidecar", "EchoTime inherited from top-level sidecars", "accept",
                 _echo_time_inherited),
        Mutation("sidecar", "Chimap in ppb, declared", "accept", _ppb_declared),
        Mutation("sidecar", "EchoTime negative everywhere", "reject",
                 _all_sidecars(EchoTime=-0.01), names=echo.replace(ECHOES[1], ECHOES[0])),
        # B0 matters for R2* (plausibility, iron slope): unstated is an error, never 3 T.
        Mutation("sidecar", "MagneticFieldStrength in no sidecar", "reject", _b0_unstated(),
                 names=f"{SUB}_R2starmap.nii.gz", says="MagneticFieldStrength is not stated"),
        Mutation("sidecar", "MagneticFieldStrength in no sidecar, chi only", "accept",
                 _b0_unstated(chi_only=True), check=_b0_is(None)),
        Mutation("sidecar", "MagneticFieldStrength in the T1w sidecar only", "accept",
                 _b0_unstated(keep="_T1w."), check=_b0_is(3.0)),
    ]
    return out


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def _into_session(label: str) -> Callable:
    def apply(root, rng):
        src = anat(root)
        dst = root / SUB / f"ses-{label}" / "anat"
        dst.mkdir(parents=True)
        for path in sorted(src.iterdir()):
            path.rename(dst / path.name.replace(f"{SUB}_", f"{SUB}_ses-{label}_"))
        src.rmdir()
    return apply


def _both(root, rng):
    shutil.copytree(anat(root), root / "keep")
    _into_session("1")(root, rng)
    shutil.move(root / "keep", anat(root))


def _remove(*patterns) -> Callable:
    def apply(root, rng):
        for pattern in patterns:
            for path in anat(root).glob(pattern):
                path.unlink()
    return apply


def _add(name: str, source: str | None = None) -> Callable:
    def apply(root, rng):
        target = anat(root) / name
        if source:
            shutil.copyfile(anat(root) / source, target)
        else:
            target.write_text("notes\n")
    return apply


def layout_mutations() -> list[Mutation]:
    return [
        Mutation("layout", "into ses-1", "accept", _into_session("1")),
        Mutation("layout", "into ses-pre2", "accept", _into_session("pre2")),
        Mutation("layout", "ses-1 and a session-less anat/", "reject", _both, names=SUB,
                 says="session"),
        Mutation("layout", "invalid session label ses-1_a", "reject", _into_session("1_a"),
                 names="ses-1_a", says="session"),
        Mutation("layout", "unrelated FLAIR", "accept",
                 _add(f"{SUB}_FLAIR.nii.gz", f"{SUB}_T1w.nii.gz")),
        Mutation("layout", "second Chimap acq-x", "accept",
                 _add(f"{SUB}_acq-x_Chimap.nii.gz", f"{SUB}_Chimap.nii.gz")),
        Mutation("layout", "README and .DS_Store", "accept",
                 lambda r, g: (_add("README")(r, g), _add(".DS_Store")(r, g))),
        Mutation("layout", "no T1w", "accept", _remove("*_T1w.*")),
        Mutation("layout", "no Chimap sidecar", "accept", _remove("*_Chimap.json")),
        Mutation("layout", "only the T1w", "reject",
                 _remove("*Chimap*", "*R2starmap*", "*MEGRE*"), names=SUB, says="quantify"),
        Mutation("layout", "echo-3 missing", "reject", _remove("*echo-3_*"), names=SUB,
                 says="echo-3"),
    ]


# --------------------------------------------------------------------------------------------
# participants.tsv
# --------------------------------------------------------------------------------------------


def _tsv(fn: Callable[[list[list[str]]], list[list[str]] | bytes], sep="\n") -> Callable:
    def apply(root, rng):
        path = root / "participants.tsv"
        rows = [line.split("\t") for line in path.read_text().splitlines()]
        out = fn(rows)
        if not isinstance(out, bytes):
            out = (sep.join("\t".join(r) for r in out) + sep).encode()
        path.write_bytes(out)
    return apply


def _cell(column: str, value: str):
    def fn(rows):
        rows[1][rows[0].index(column)] = value
        return rows
    return fn


def _age_is(value):
    def check(dataset):
        people = dataset.participants.set_index("participant_id")
        age = people.loc[SUB, "age"]
        if not (value is None and pd.isna(age) or age == value):
            return f"age read as {age!r}, expected {value!r}"
        return None
    return check


def participants_mutations() -> list[Mutation]:
    p = "participants.tsv"
    text = lambda rows: "\n".join("\t".join(r) for r in rows) + "\n"  # noqa: E731
    return [
        Mutation("participants", "CRLF", "accept", _tsv(lambda r: r, sep="\r\n")),
        Mutation("participants", "UTF-8 BOM", "accept",
                 _tsv(lambda r: b"\xef\xbb\xbf" + text(r).encode())),
        Mutation("participants", "age 89+", "accept", _tsv(_cell("age", "89+")),
                 check=_age_is(89)),
        Mutation("participants", "age n/a", "accept", _tsv(_cell("age", "n/a")),
                 check=_age_is(None)),
        Mutation("participants", "extra column", "accept",
                 _tsv(lambda r: [r[0] + ["handedness"], r[1] + ["R"]])),
        Mutation("participants", "blank lines at the end", "accept",
                 _tsv(lambda r: (text(r) + "\n\n").encode())),
        Mutation("participants", "row with an extra field", "reject",
                 _tsv(lambda r: [r[0], r[1] + ["x"]]), names=p, says="row 1 has"),
        Mutation("participants", "row with a field missing", "reject",
                 _tsv(lambda r: [r[0], r[1][:-1]]), names=p, says="row 1 has"),
        Mutation("participants", "invalid participant_id", "reject",
                 _tsv(_cell("participant_id", "sub-0 1")), names=p),
        Mutation("participants", "duplicate row", "reject", _tsv(lambda r: [r[0], r[1], r[1]]),
                 names=p, says="duplicate"),
        Mutation("participants", "no participant_id column", "reject",
                 _tsv(lambda r: [["subject", *r[0][1:]], r[1]]), names=p),
        Mutation("participants", "age abc", "reject", _tsv(_cell("age", "abc")), names=p),
        Mutation("participants", "latin-1 byte", "reject",
                 _tsv(lambda r: text([r[0], [*r[1][:-1], "contrôle"]]).encode("latin-1")),
                 names=p),
        Mutation("participants", "subject row missing", "reject", _tsv(lambda r: r[:1]),
                 names=p),
    ]
