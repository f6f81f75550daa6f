"""brainiron.qsm against a peer's forward model (qsm-forward, GPL-3, test-only) scored with a
peer's metrics (qsm-ci, MIT): regional mean χ error against the known truth, NRMSE, HFEN,
XSIM. Both peers come with the ``test`` extra (pyproject.toml)."""

from __future__ import annotations

import numpy as np
import pytest

from brainiron import qsm

pytest.importorskip("qsm_forward")
pytest.importorskip("qsm_ci")

import qsm_helpers as h  # noqa: E402


@pytest.fixture(scope="module")
def peer50(tmp_path_factory):
    return h.run_qsm_forward(tmp_path_factory.mktemp("qsmfwd50"), snr=50.0)


def _run(data, **kw):
    chi, local, mask, rec = qsm.reconstruct(data["magnitude"], data["phase"],
                                            data["echo_times"], data["affine"],
                                            data["field_strength"], qsm.QSMSettings(**kw))
    return h.metrics(chi, data["chi"], mask, data["labels"]), rec


def test_peer_sidecars_feed_the_reconstruction(peer50):
    np.testing.assert_allclose(peer50["echo_times"], h.TES)
    assert peer50["field_strength"] == h.B0_T and peer50["phase"].shape[-1] == h.TES.size


def test_default_chain_regional_chi_against_peer_truth(peer50):
    """V-SHARP + TV-ADMM, whole-brain reference, SNR 50 (measured: Ca +1.5, Pu +1.1,
    GP −6.1, Th +5.5, SN +3.2, RN +5.5, STN −3.6, DN +4.1 ppb; NRMSE 43 %, XSIM 0.45)."""
    m, rec = _run(peer50)
    assert rec["phase_scaling"]["detected"] == "radians"
    for name, err in m["regions_ppb"].items():
        assert m["region_voxels"][name] >= 100, m["region_voxels"]
        assert abs(err) <= 10.0, (name, m["regions_ppb"])  # the target
    assert m["nrmse"] < 50 and m["xsim"] > 0.4 and m["hfen"] < 35, m
    assert m["nrmse_core"] < 30, m  # the 4 mm rim next to the mask's edge is the hard part


def test_tv_beats_the_tkd_reference(peer50):
    tv, _ = _run(peer50)
    tkd, _ = _run(peer50, inversion="tkd")
    assert tv["nrmse"] < tkd["nrmse"] - 10
    assert np.mean(np.abs(list(tv["regions_ppb"].values()))) < \
        np.mean(np.abs(list(tkd["regions_ppb"].values())))


def test_oblique_b0_from_the_peer_affine(tmp_path):
    """qsm-forward encodes an oblique B0 in the affine; brainiron reads it back."""
    b0 = np.array([0.0, np.sin(np.radians(20)), np.cos(np.radians(20))])
    d = h.run_qsm_forward(tmp_path, snr=100.0, b0_dir=b0)
    np.testing.assert_allclose(qsm.b0_direction(d["affine"]), b0, atol=1e-6)
    m, rec = _run(d)
    assert rec["inputs"]["b0_direction_voxel"] == pytest.approx(b0.tolist(), abs=1e-6)
    # the same data reconstructed as if B0 ran along the slice axis (the oblique trap)
    rot = d["affine"][:3, :3] / qsm.voxel_sizes(d["affine"])
    naive, _ = _run(d, b0_world=tuple(rot @ np.array([0.0, 0.0, 1.0])))
    assert m["nrmse"] < naive["nrmse"] - 5, (m["nrmse"], naive["nrmse"])
    # V-SHARP suffers here from the sampled kernel's ringing (docs/qsm.md); PDF does not
    pdf, _ = _run(d, background="pdf")
    for name, err in pdf["regions_ppb"].items():
        assert abs(err) <= (40.0 if name == "DN" else 16.0), pdf["regions_ppb"]
    assert pdf["nrmse"] < 55, pdf
