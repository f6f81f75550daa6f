"""A phase-only dataset made by a peer's forward model, through the whole workflow (issue 15:
"a phase-only dataset — qsm-forward's and the phase phantom — runs end to end").

``qsm-forward`` (GPL-3, test-only) makes the MEGRE magnitude and phase from brainiron's
phantom's true χ (``tests/qsm_helpers.peer_dataset``): 2.5 × 2.5 × 3 mm LPS, five echoes
(5-33 ms, not the phantom's), uncompressed ``.nii`` with the peer's sidecars, the T1w moved
onto its own 1.5 mm grid. brainiron gets no χ and no R2* map: rule ``qsm`` reconstructs χ,
the T1w is coregistered to the first echo, the atlas refined on the reconstructed χ; its rows
are compared with the phantom's truth table (brainiron's code computed neither the signal nor
the truth).
"""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainiron

pytest.importorskip("qsm_forward")

import qsm_helpers as h  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("qsmpeer")
    bids = h.peer_dataset(root)
    assert brainiron.run(bids, root / "out", cores=2, analysis_level="participant") == 0
    return root, root / "out" / "brainiron" / "sub-01" / "anat"


def test_the_peers_phase_is_reconstructed_and_quantified(run):
    _, anat = run
    rows = pd.read_csv(anat / "sub-01_desc-regions_stats.tsv", sep="\t")
    chi = rows[rows["map"] == "Chimap"]
    assert len(chi) >= 20
    assert chi["source"].str.endswith("(reconstructed by brainiron-qsm)").all()
    # R2* fitted from the peer's magnitudes (no R2* map given)
    assert (rows["map"] == "R2starmap").sum() >= 20
    qsm = nib.load(anat / "sub-01_Chimap.nii.gz")
    assert qsm.header.get_zooms()[:3] == pytest.approx((2.5, 2.5, 3.0))
    assert nib.aff2axcodes(qsm.affine) == ("L", "P", "S")


def test_regional_chi_against_the_phantom_truth(run):
    """Atlas rows vs the phantom's truth χ, both referenced to the mean over brainiron's QSM
    mask. Measured (seed 3, SNR 100): median −14 ppb, range −31 (GPe L) … −1 ppb (DN L),
    r = 0.991; with the truth labels instead of the registered ones the deep nuclei read
    −16 … +1 ppb (median −10): mostly the reconstruction's own bias on this brain-sized
    head, from V-SHARP's truncated low frequencies (docs/qsm.md), not the registration."""
    root, anat = run
    rows, error = h.chi_rows_against_truth(anat, root / "phantom")
    assert len(rows) >= 20
    assert error.abs().max() < 50, error.tolist()
    assert -25 < error.median() < 0, error.tolist()
    assert np.corrcoef(rows["mean"], rows["chi_ppm"])[0, 1] > 0.95
