"""Speed, memory and accuracy of brainiron.qsm.reconstruct.

Run from the repository root::

    nice -n 10 python benchmarks/bench_qsm.py              # speed and memory (markdown)
    python benchmarks/bench_qsm.py --accuracy              # method x SNR table (needs the
                                                           # test extra: qsm-forward, qsm-ci)
    nice -n 10 python benchmarks/bench_qsm.py --head       # brain-sized 1 mm head (peer)

Speed: a synthetic 1 mm whole-brain-size volume (180 x 220 x 180, brain ellipsoid of ~1.6 M
voxels, deep-grey blobs, air outside the head), 6 echoes TE = 4 + 6k ms at 3 T, SNR 50, made
by brainiron's own forward model (speed only); the default chain (exact unwrapping, V-SHARP,
TV-ADMM) with each stage timed, peak memory (tracemalloc: NumPy buffers) and max RSS; against
a plain NumPy TKD (``numpy.fft``, complex128, no padding) on the same local field, in the same
run. Accuracy: the peer forward model qsm-forward on the 64 x 72 x 60 head phantom of
tests/qsm_helpers.py, scored with qsm-ci (NRMSE, HFEN, XSIM) and regional mean errors (ppb).
Head (``--head``): brainiron's 1 mm phantom head (brain-sized, LPS) whose signal qsm-forward
makes (``qsm_helpers.peer_head``: 6 echoes, 3 T, SNR 50 and 100), scored the same way on the
phantom's truth labels: the chain's defaults and V-SHARP / inversion variants.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy
from benchutil import cpu_model, loadavg

from brainiron import qsm

SHAPE = (180, 220, 180)
TES = 0.004 + 0.006 * np.arange(6)
B0 = 3.0


def synthetic_head(seed: int = 0):
    """Magnitude and phase (X, Y, Z, 6) float32 of a whole-brain-size synthetic head."""
    grid = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    c = [n / 2 for n in SHAPE]

    def ell(centre, axes):
        return sum(((g - c0) / a) ** 2 for g, c0, a in zip(grid, centre, axes,
                                                           strict=True)) <= 1

    head, brain = ell(c, (78, 95, 80)), ell(c, (65, 80, 69))
    chi = np.where(head, 0.0, 9.4).astype(np.float32)
    chi[brain] = -0.02
    for dx, dy, dz, v in ((12, 8, 0, 0.08), (20, 4, 0, 0.18), (8, -10, -14, 0.15),
                          (4, -14, -10, 0.13), (14, -40, -20, 0.10)):
        for side in (-1, 1):
            chi[ell((c[0] + side * dx, c[1] + dy, c[2] + dz), (5, 7, 5))] = v
    field = qsm.dipole_field(chi, (1, 1, 1), (0, 0, 1), pad_voxels=16, workers=2)
    del chi
    mag = np.empty((*SHAPE, TES.size), np.float32)
    ph = np.empty_like(mag)
    for k, te in enumerate(TES):
        m, p = qsm.simulate_echoes(field, brain.astype(np.float32), 25.0, [te], B0,
                                   phase_offset=0.3, snr=50.0, seed=seed + k)
        mag[..., k], ph[..., k] = m[..., 0], p[..., 0]
    return mag, ph, int(brain.sum())


def numpy_tkd(local, mask, threshold=0.19):
    """Plain NumPy TKD: numpy.fft (complex128), no padding, B0 along z, 1 mm."""
    k = [np.fft.fftfreq(n) for n in local.shape]
    kx, ky, kz = np.meshgrid(*k, indexing="ij")
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = 1
    d = 1 / 3 - kz ** 2 / k2
    d[0, 0, 0] = 0
    d = np.where(np.abs(d) < threshold, np.sign(d) * threshold, d)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    return np.real(np.fft.ifftn(np.fft.fftn(local) * inv)) * mask


def speed() -> None:
    print(f"machine: {cpu_model()}, usable CPUs {len(os.sched_getaffinity(0))}, "
          f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy "
          f"{scipy.__version__}; load before: {loadavg()}")
    t0 = time.perf_counter()
    mag, ph, n_brain = synthetic_head()
    print(f"synthetic head {SHAPE} x {TES.size} echoes, {n_brain} brain voxels, made in "
          f"{time.perf_counter() - t0:.1f} s")
    tracemalloc.start()
    t0 = time.perf_counter()
    chi, local, mask, rec = qsm.reconstruct(mag, ph, TES, np.eye(4), B0, qsm.QSMSettings())
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("\n| stage | seconds |\n|---|---|")
    for stage, sec in rec["timings_s"].items():
        print(f"| {stage} | {sec:.2f} |")
    print(f"\ndefault chain: {wall:.1f} s wall, peak traced memory {peak / 2**30:.2f} GB, "
          f"max RSS of the process {rss / 2**30:.2f} GB (inputs {2 * mag.nbytes / 2**30:.2f} "
          f"GB); TV-ADMM iterations {rec['dipole_inversion']['parameters']['iterations']}; "
          f"mask {int(mask.sum())} voxels")
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(mask))
    t0 = time.perf_counter()
    qsm.invert_tkd(local[box], mask[box], (1, 1, 1), (0, 0, 1), workers=2)
    t_tkd = time.perf_counter() - t0
    t0 = time.perf_counter()
    numpy_tkd(local.astype(np.float64), mask)
    t_np = time.perf_counter() - t0
    print(f"inversion only: brainiron TV-ADMM {rec['timings_s']['inversion']:.2f} s, "
          f"brainiron TKD (scipy.fft rfftn, float32, 2 workers, cropped) {t_tkd:.2f} s, "
          f"NumPy TKD baseline (numpy.fft complex128, full grid) {t_np:.2f} s; "
          f"load after: {loadavg()}")


def _accuracy_row(data, label, bg, inv, names):
    t0 = time.perf_counter()
    chi, _, mask, _ = qsm.reconstruct(
        data["magnitude"], data["phase"], data["echo_times"], data["affine"],
        data["field_strength"], qsm.QSMSettings(background=bg, inversion=inv))
    sec = time.perf_counter() - t0
    import qsm_helpers as h

    m = h.metrics(chi, data["chi"], mask, data["labels"])
    regions = " | ".join(f"{m['regions_ppb'][n]:+.1f}" for n in names)
    print(f"| {label} | {bg} | {inv} | {m['nrmse']:.1f} | {m['nrmse_core']:.1f} | "
          f"{m['hfen']:.1f} | {m['xsim']:.3f} | {regions} | {sec:.1f} |", flush=True)


def accuracy() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import qsm_helpers as h

    names = list(h.NUCLEI[k][0] for k in sorted(h.NUCLEI))
    print("| SNR | background | inversion | NRMSE % | core NRMSE % | HFEN % | XSIM | "
          + " | ".join(f"{n} ppb" for n in names) + " | s |")
    print("|" + "---|" * (8 + len(names)))
    for snr in (50.0, 100.0):
        data = h.run_qsm_forward(Path(tempfile.mkdtemp()), snr)
        for bg in ("vsharp", "pdf"):
            for inv in ("tv_admm", "l2", "tkd"):
                _accuracy_row(data, f"{snr:g}", bg, inv, names)
    oblique = np.array([0.0, np.sin(np.radians(20)), np.cos(np.radians(20))])
    data = h.run_qsm_forward(Path(tempfile.mkdtemp()), 50.0, b0_dir=oblique)
    for bg in ("vsharp", "pdf"):
        _accuracy_row(data, "50, B0 20° oblique", bg, "tv_admm", names)


HEAD_VARIANTS = {
    "default (V-SHARP 12-2 mm, TSVD 0.05; TV-ADMM)": {},
    "V-SHARP TSVD 0.02": {"vsharp_threshold": 0.02},
    "V-SHARP TSVD 0.01": {"vsharp_threshold": 0.01},
    "V-SHARP 25-2 mm": {"vsharp_radii_mm": (25.0, 20.0, 15.0, 10.0, 6.0, 4.0, 2.0)},
    "PDF": {"background": "pdf"},
    "L2": {"inversion": "l2"},
    "TKD": {"inversion": "tkd"},
}


def _head_row(data, label, snr, settings):
    from qsm_ci import qsm_eval

    mag, phase, tes, b0, affine = data["echoes"]
    t0 = time.perf_counter()
    chi, _, mask, _ = qsm.reconstruct(mag, phase, tes, affine, b0,
                                      qsm.QSMSettings(**settings, workers=2))
    sec = time.perf_counter() - t0
    truth, labels = data["truth_chi"], data["labels"]
    rec = np.where(mask, chi - chi[mask].mean(), 0.0)
    tru = np.where(mask, truth - truth[mask].mean(), 0.0)
    errors = {}
    for index, name in data["label_names"].items():
        sel = mask & (labels == index)
        if name not in ("CSF", "GM", "WM") and sel.sum() * data["voxel_mm3"] >= 100:
            errors[name] = 1000 * float(rec[sel].mean() - tru[sel].mean())
    e = np.array(list(errors.values()))
    worst = max(errors, key=lambda k: abs(errors[k]))
    nrmse = qsm_eval.nrmse_challenge(rec, tru, mask)[0]
    print(f"| {snr:g} | {label} | {len(e)} | {np.median(e):+.1f} | {e.min():+.1f} … "
          f"{e.max():+.1f} | {worst} {errors[worst]:+.1f} | {(np.abs(e) <= 10).sum()} | "
          f"{nrmse:.1f} | {qsm_eval.xsim(rec, tru, mask):.3f} | {sec:.1f} |", flush=True)


def head() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import qsm_helpers as h

    print(f"# load before: {loadavg()}")
    print("| SNR | chain | nuclei ≥ 100 mm³ | median error ppb | range ppb | worst | within ±10 "
          "ppb | NRMSE % | XSIM | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for snr, variants in ((50.0, list(HEAD_VARIANTS)), (100.0, list(HEAD_VARIANTS)[:3])):
        t0 = time.perf_counter()
        data = h.peer_head(Path(tempfile.mkdtemp()), voxel_size=(1.0, 1.0, 1.0), snr=snr,
                           seed=5, echo_times=tuple(TES))
        data["echoes"], data["voxel_mm3"] = h.peer_echoes(data["peer"]), 1.0
        print(f"# SNR {snr:g}: phantom + qsm-forward {time.perf_counter() - t0:.0f} s, "
              f"grid {data['labels'].shape}", flush=True)
        for label in variants:
            _head_row(data, label, snr, HEAD_VARIANTS[label])
    print(f"# load after: {loadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--head", action="store_true",
                        help="brain-sized 1 mm phantom head with the peer's signal")
    args = parser.parse_args()
    accuracy() if args.accuracy else head() if args.head else speed()


if __name__ == "__main__":
    main()
