"""brainiron.qsm on real multi-echo phase: tests/data/romeo-small (a 3-echo in vivo GRE crop
from ROMEO.jl's test data, MIT; README beside it). Its phase is stored in radians but the
header's scl_slope (0.00117) makes a reader see ±0.0037: the scaling must be detected; and the
exact unwrapper must leave no 2π jump inside the mask."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainiron import masks, qsm

DATA = Path(__file__).parent / "data" / "romeo-small"


@pytest.fixture(scope="module")
def romeo():
    mag = nib.load(DATA / "Mag.nii.gz")
    ph = nib.load(DATA / "Phase.nii.gz")
    return (mag.get_fdata(dtype=np.float32), ph.get_fdata(dtype=np.float32),
            np.asarray(ph.dataobj.get_unscaled(), dtype=np.float32), ph.affine)


def test_slope_trap_detected_and_radians_recovered(romeo):
    _, phase, stored, _ = romeo
    assert np.abs(phase).max() < 0.004  # what a reader that applies the slope sees
    radians, rec = qsm.phase_to_radians(phase, "Phase.nii.gz")
    assert rec["detected"] == "linear"
    assert rec["input_range"][1] == pytest.approx(0.003674, abs=2e-6)
    # the stored values (slope not applied) are the radians: recovered to 1e-3 rad
    err = np.angle(np.exp(1j * (radians - stored)))
    assert np.abs(err).max() < 1e-3


def test_exact_unwrapping_has_no_2pi_jump_inside_the_mask(romeo):
    mag, phase, _, affine = romeo
    radians, _ = qsm.phase_to_radians(phase)
    mask = masks.foreground_mask(np.sqrt((mag ** 2).sum(-1)))
    assert mask.sum() > 20000
    for echo in range(3):
        wrapped = radians[..., echo]
        un = qsm.unwrap_exact(wrapped, mask)
        # re-wrapping gives the input back
        back = np.angle(np.exp(1j * (un - wrapped)))
        assert np.abs(back[mask]).max() < 1e-4
        jumps = 0
        pairs = 0
        for axis in range(3):
            both = np.logical_and(mask, np.roll(mask, -1, axis))
            sl = [slice(None)] * 3
            sl[axis] = slice(0, -1)
            both = both[tuple(sl)]
            du = np.diff(un, axis=axis)[both]
            dw = np.angle(np.exp(1j * np.diff(wrapped, axis=axis)))[both]
            jumps += int(np.sum(np.abs(du - dw) > 1e-3))
            pairs += both.sum()
        # the unwrapped gradient equals the wrapped gradient wrapped to (-pi, pi]
        assert jumps / pairs < 0.001, (echo, jumps, pairs)  # measured 0, 4, 116 of 313 044


def test_three_echo_field_fit_on_real_phase(romeo):
    mag, phase, _, affine = romeo
    te = np.array([1.0, 2.0, 3.0]) * 0.004  # ROMEO treats the echoes as equally spaced
    chi, local, mask, rec = qsm.reconstruct(mag, phase, te, affine, 3.0,
                                            names=("Mag.nii.gz", "Phase.nii.gz"))
    assert rec["phase_scaling"]["detected"] == "linear"
    assert rec["inputs"]["voxel_size_mm"] == pytest.approx([0.469, 0.469, 1.0], abs=1e-3)
    assert rec["mask"]["final_voxels"] > 0.5 * rec["mask"]["magnitude_voxels"]
    assert rec["mask"]["source"].startswith("magnitude foreground")
    assert np.isfinite(chi).all() and np.abs(chi[mask]).max() < 2.0  # ppm
