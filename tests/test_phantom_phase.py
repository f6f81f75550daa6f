"""The phantom's phase echoes (issue 15 item 8): off by default (images unchanged), and when on
the phase of the phantom's own χ, background field and offset with the magnitude's complex
noise, from which brainiron.qsm gets the phantom's regional χ back."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainiron import qsm
from brainiron.bids import discover
from brainiron.cli import main
from brainiron.phantom import PhantomConfig, generate_phantom, truth_path

CFG = dict(n_subjects=1, seed=3, voxel_size=(4.0, 4.0, 4.0), with_chimap=False,
           with_r2starmap=False, with_t1w=False)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("phase")
    generate_phantom(root / "off", PhantomConfig(**CFG))
    generate_phantom(root / "on", PhantomConfig(**CFG, with_phase=True))
    return root / "off", root / "on"


def _data(path):
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def test_phase_is_off_by_default_and_leaves_every_other_image_unchanged(pair):
    off, on = pair
    anat_off, anat_on = off / "sub-01/anat", on / "sub-01/anat"
    assert not list(anat_off.glob("*part-phase*"))
    assert "with_phase" not in PhantomConfig().description()
    phase = sorted(anat_on.glob("*part-phase_MEGRE.nii.gz"))
    assert len(phase) == 8
    for mag in sorted(anat_off.glob("*.nii.gz")):
        np.testing.assert_array_equal(_data(mag), _data(anat_on / mag.name))
    for p in phase:
        values = _data(p)
        assert values.min() >= -np.pi and values.max() <= np.pi


def test_phase_follows_the_forward_model_with_the_magnitudes_noise(pair):
    _, on = pair
    anat = on / "sub-01/anat"
    field = _data(truth_path(on, "sub-01", {"space": "individual", "desc": "truth"},
                             "fieldmap", ".nii.gz"))
    te = [0.004 + 0.005 * k for k in range(8)]
    mags = [_data(anat / f"sub-01_echo-{n}_part-mag_MEGRE.nii.gz") for n in (1, 2)]
    phs = [_data(anat / f"sub-01_echo-{n}_part-phase_MEGRE.nii.gz") for n in (1, 2)]
    brain = _data(truth_path(on, "sub-01", {"space": "individual", "desc": "tissue"}, "dseg",
                             ".nii.gz")) > 0
    assert mags[0][brain].mean() > 20 * mags[0][~brain].mean()
    # The echo difference removes the offset: 2π γ̄ B0 field ΔTE, wrapped, up to noise.
    expected = 2 * np.pi * qsm.gamma_bar_mhz_per_t() * 3.0 * field * (te[1] - te[0])
    diff = np.angle(np.exp(1j * (phs[1] - phs[0] - expected)))[brain]
    assert np.median(np.abs(diff)) < 0.03  # SNR 100: noise ~ 1/100 rad per echo
    # The late echo wraps inside the brain (the unwrapped phase spans many 2π).
    late = _data(anat / "sub-01_echo-8_part-phase_MEGRE.nii.gz")
    inner = brain[1:] & brain[:-1]
    jumps = np.abs(np.diff(late, axis=0))[inner]
    assert (jumps > np.pi).sum() > 100
    span = 2 * np.pi * qsm.gamma_bar_mhz_per_t() * 3.0 * np.ptp(field[brain]) * te[-1]
    assert span > 2 * np.pi


def test_qsm_gets_the_phantoms_regional_chi_back(pair):
    _, on = pair
    subj = discover(on).subjects[0]
    assert len(subj.phase) == 8 and "Chimap" not in subj.maps
    mag = np.stack([_data(p) for p in subj.megre], -1)
    ph = np.stack([_data(p) for p in subj.phase], -1)
    affine = nib.load(subj.megre[0]).affine
    chi, _, mask, record = qsm.reconstruct(mag, ph, subj.echo_times, affine,
                                           subj.field_strength)
    assert record["phase_scaling"] and record["dipole_inversion"]["algorithm"] == "tv_admm"
    truth = _data(truth_path(on, "sub-01", {"space": "individual", "desc": "truth"},
                             "Chimap", ".nii.gz"))
    tissue = _data(truth_path(on, "sub-01", {"space": "individual", "desc": "tissue"},
                              "dseg", ".nii.gz")).astype(int)
    lut = pd.read_csv(truth_path(on, "sub-01", {"space": "individual", "desc": "tissue"},
                                 "dseg"), sep="\t")
    ref = truth[mask].mean()  # the whole-brain reference over the same mask
    errors = {}
    for index, name in zip(lut["index"], lut["name"], strict=True):
        m = (tissue == index) & mask
        if m.sum() >= 3:
            errors[name] = 1000 * (chi[m].mean() - (truth[m].mean() - ref))
    # Measured at 4 mm (seed 3): every nucleus within 20 ppb, most about -10 ppb (TV-ADMM
    # underestimates the contrast of 1-3 voxel nuclei); the 1 mm target is the benchmark's.
    assert len(errors) >= 20
    assert max(abs(e) for e in errors.values()) < 25, errors
    assert abs(np.mean(list(errors.values()))) < 12, errors


def test_cli_with_phase(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["phantom", str(out), "--subjects", "1", "--voxel-size", "5", "--no-chimap",
                 "--with-phase"]) == 0
    assert len(list((out / "sub-01/anat").glob("*part-phase_MEGRE.nii.gz"))) == 8
    assert not list((out / "sub-01/anat").glob("*Chimap*"))
