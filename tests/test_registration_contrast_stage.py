"""The R2*-contrast template and the contrast-map local stage (brainiron.registration)."""

from __future__ import annotations

import numpy as np
import pytest

from brainiron import atlas
from brainiron import registration as reg
from brainiron.dentate import dentate_prior
from brainiron.settings import RegistrationSettings

# In-vivo R2* at 3 T (1/s), ranges spanning published healthy-adult means: Haacke EM et al.
# (2005) MRI 23:1-25; Langkammer C et al. (2010) Radiology 257:455-462 (in situ);
# Péran P et al. (2007) Brain 130:1807-1816. Not brainiron's tables.
PUBLISHED_3T = {"GPe": (30.0, 50.0), "Pu": (22.0, 38.0), "Ca": (20.0, 32.0),
                "Thal": (17.0, 26.0), "WM": (17.0, 25.0), "GM": (13.0, 20.0),
                "CSF": (0.0, 6.0)}


def test_r2star_values_are_physiological():
    values = reg.r2star_template_values()["r2star_per_s"]
    for tissue, (lo, hi) in PUBLISHED_3T.items():
        assert lo <= values[tissue] <= hi, (tissue, values[tissue])
    assert values["GPe"] > values["Pu"] > values["Ca"] > values["GM"] > values["CSF"]
    # R2* grows with B0 (the in-vivo line scales with field strength) and with age.
    assert reg.r2star_template_values(field_strength_T=7.0)["r2star_per_s"]["GPe"] \
        > 1.5 * values["GPe"]
    assert reg.r2star_template_values(age_years=80.0)["r2star_per_s"]["Pu"] > values["Pu"]
    with pytest.raises(ValueError, match="not R2starmap"):
        reg.r2star_template_values(calibration="langkammer2012_chi")


def test_r2star_template_image():
    data, affine = reg.r2star_template()
    tpl = atlas.load_reference("template")
    assert data.shape == tpl.data.shape and np.allclose(affine, tpl.affine)
    assert not data.flags.writeable and np.all(data[tpl.data == 0] == 0)
    values = reg.r2star_template_values()["r2star_per_s"]
    labels = atlas.template_labels().data
    assert np.allclose(data[labels == 5], values["GPe"])  # left GPe (regions.tsv index 5)
    assert np.allclose(data[dentate_prior().data > 0], values["DN"])
    assert reg.template_data("r2star")[0] is data
    blurred, _ = reg.r2star_template(voxel_mm=3.0)
    assert blurred.max() < data.max()  # partial volume at 3 mm


@pytest.mark.parametrize(("kind", "contrast", "settings", "expected"), [
    ("T1w", "Chimap", {}, True),
    ("MEGRE", "Chimap", {}, True),
    ("MEGRE", "R2starmap", {}, True),
    ("T1w", "R2starmap", {}, False),  # the T1w keeps its own local stage
    ("Chimap", "Chimap", {}, False),  # the χ path has its χ local stage already
    ("R2starmap", "R2starmap", {}, False),
    ("T1w", "Chimap", {"chi_local_stage": False}, False),
    ("MEGRE", "R2starmap", {"r2star_local_stage": False}, False),
])
def test_which_registrations_are_refined(kind, contrast, settings, expected):
    assert reg.refines_on_contrast(kind, contrast, RegistrationSettings(**settings)) is expected


# docs/registration.md: a T1w subject refined on χ skips its own local stage
# (`local_refinement` false in its QC); a T1w without χ keeps it (only a magnitude-only
# subject is refined on R2*); a magnitude or χ-only registration runs with the settings given.
@pytest.mark.parametrize(("kind", "contrast", "settings", "own_local_stage"), [
    ("T1w", "Chimap", {}, False),
    ("T1w", "Chimap", {"chi_local_stage": False}, True),  # no χ stage: the T1w's own stays
    ("T1w", "R2starmap", {}, True),
    ("T1w", "R2starmap", {"r2star_local_stage": False}, True),
    ("MEGRE", "R2starmap", {}, True),
    ("MEGRE", "R2starmap", {"r2star_local_stage": False}, True),
    ("MEGRE", "Chimap", {}, True),
    ("Chimap", "Chimap", {}, True),
])
def test_global_stage_settings(kind, contrast, settings, own_local_stage):
    given = RegistrationSettings(**settings)
    first = reg.global_stage_settings(kind, contrast, given)
    assert first.local_refinement is own_local_stage
    # Nothing else changes: the contrast stage still runs with the subject's settings.
    assert {**vars(first), "local_refinement": True} == vars(given)
    off = reg.global_stage_settings(kind, contrast, RegistrationSettings(local_refinement=False,
                                                                         **settings))
    assert off.local_refinement is False  # switched off stays off on every path
