import numpy as np
import pandas as pd
import pytest

from brainiron import norms
from brainiron.iron import add_iron, add_norms, iron_from_value, value_from_iron


def _table(**cols):
    base = {"participant_id": "sub-01", "map": "R2starmap", "region": "GP", "hemisphere": "L",
            "mean": 30.0, "median": 29.0, "sd": 3.0, "n_valid": 9, "field_strength_T": 3.0}
    base.update(cols)
    return pd.DataFrame([base])


def test_every_calibration_in_the_table_is_cited_and_marked():
    cal = norms.calibrations()
    assert {"langkammer2010_r2star", "gelman1999_invivo_r2star", "langkammer2012_chi"} <= set(
        cal.index)
    assert cal["source"].str.len().gt(10).all()
    assert cal["mark"].str.fullmatch(r"(V|V2|R|D)(/(V|V2|R|D))?").all()


def test_r2star_iron_by_hand_and_with_field_strength():
    # Gelman-derived in vivo line at 3 T: R2* = 0.107 Fe + 14.9 -> Fe = (30 - 14.9) / 0.107.
    out = add_iron(_table(), {"R2starmap": "gelman1999_invivo_r2star"})
    assert out["iron_mg_per_kg"].iloc[0] == pytest.approx((30 - 14.9) / 0.107)
    # SE of the mean = 3 / sqrt(9) = 1 1/s; calibration SEs not stated -> 1 / 0.107.
    assert out["iron_sd_mg_per_kg"].iloc[0] == pytest.approx(1 / 0.107)
    assert out["calibration"].iloc[0] == "gelman1999_invivo_r2star"
    # At 7 T the iron-dependent slope is 7/3 steeper.
    out7 = add_iron(_table(field_strength_T=7.0), {"R2starmap": "gelman1999_invivo_r2star"})
    assert out7["iron_mg_per_kg"].iloc[0] == pytest.approx((30 - 14.9) / (0.107 * 7 / 3))
    # Post-mortem line (Langkammer 2010): R2* = 0.27 Fe + 14.29.
    post = add_iron(_table(), {"R2starmap": "langkammer2010_r2star"})
    assert post["iron_mg_per_kg"].iloc[0] == pytest.approx((30 - 14.29) / 0.27)


def test_chi_iron_and_the_median_option():
    row = _table(map="Chimap", mean=0.1, median=0.12, sd=0.02, n_valid=16)
    out = add_iron(row, {"Chimap": "langkammer2012_chi"})
    assert out["iron_mg_per_kg"].iloc[0] == pytest.approx((0.1 + 0.02) / 0.00097)
    assert out["iron_sd_mg_per_kg"].iloc[0] == pytest.approx(0.005 / 0.00097)
    # chi does not scale with B0.
    out7 = add_iron(_table(map="Chimap", mean=0.1, field_strength_T=7.0))
    assert out7["iron_mg_per_kg"].iloc[0] == pytest.approx((0.1 + 0.02) / 0.00097)
    med = add_iron(row, {"Chimap": "langkammer2012_chi"}, statistic="median")
    assert med["iron_mg_per_kg"].iloc[0] == pytest.approx((0.12 + 0.02) / 0.00097)


def test_stated_calibration_uncertainty_is_propagated():
    cal = norms.calibrations().copy()
    cal.loc["gelman1999_invivo_r2star", ["slope_se", "intercept_se"]] = [0.01, 1.0]
    out = add_iron(_table(sd=0.0), {"R2starmap": "gelman1999_invivo_r2star"},
                   calibration_table=cal)
    fe = (30 - 14.9) / 0.107
    expected = np.sqrt((1.0 / 0.107) ** 2 + (fe * 0.01 / 0.107) ** 2)
    assert out["iron_sd_mg_per_kg"].iloc[0] == pytest.approx(expected)


def test_thalamus_is_flagged_not_hidden():
    out = add_iron(pd.concat([_table(), _table(region="Thal")], ignore_index=True))
    assert list(out["calibration_valid"]) == [True, False]
    assert out["iron_mg_per_kg"].notna().all()


def test_round_trip_and_bad_names():
    cal = norms.calibrations().loc["gelman1999_invivo_r2star"]
    iron = np.array([50.0, 150.0, 210.0])
    value = value_from_iron(iron, cal, 7.0)
    np.testing.assert_allclose(iron_from_value(value, cal, 7.0)[0], iron)
    with pytest.raises(KeyError, match="unknown calibration 'nope'"):
        add_iron(_table(), {"R2starmap": "nope"})
    with pytest.raises(ValueError, match="is for Chimap, not R2starmap"):
        add_iron(_table(), {"R2starmap": "langkammer2012_chi"})


@pytest.mark.parametrize("region, norm, age, expected", [
    ("GP", "GP", 30.0, 203.41),     # public code's value at 30 y (field notes)
    ("GPi", "GP", 30.0, 203.41),    # GPe/GPi use GP's norm
    ("Pu", "Pu", 30.0, 106.77),
    ("Ca", "Ca", 30.0, 78.35),
    ("SNr", "SN", 60.0, 184.6 * (1 - np.exp(-0.1 * 60))),
])
def test_age_norms_at_a_few_ages(region, norm, age, expected):
    out = add_norms(add_iron(_table(region=region, age=age)))
    assert out["norm_region"].iloc[0] == norm
    assert out["iron_expected_mg_per_kg"].iloc[0] == pytest.approx(expected, rel=2e-3)
    sd = norms.iron_norms().loc[norm, "sd_mg_per_kg"]
    assert out["iron_z"].iloc[0] == pytest.approx(
        (out["iron_mg_per_kg"].iloc[0] - out["iron_expected_mg_per_kg"].iloc[0]) / sd)


def test_missing_age_gives_empty_cells_not_zeros():
    out = add_norms(add_iron(_table(age=np.nan)))
    assert np.isnan(out["iron_expected_mg_per_kg"].iloc[0]) and np.isnan(out["iron_z"].iloc[0])
    out = add_norms(add_iron(_table()))  # no age column at all
    assert np.isnan(out["iron_z"].iloc[0])


def test_chi_needs_no_field_strength_r2star_does():
    chi = add_iron(_table(map="Chimap", mean=0.1, field_strength_T=np.nan))
    assert chi["iron_mg_per_kg"].iloc[0] == pytest.approx(
        add_iron(_table(map="Chimap", mean=0.1))["iron_mg_per_kg"].iloc[0])
    unstated = _table(field_strength_T=None)
    with pytest.raises(ValueError, match="sub-01 is not stated"):
        add_iron(unstated)
    assert add_iron(unstated, field_strength_T=3.0)["iron_mg_per_kg"].iloc[0] == pytest.approx(
        add_iron(_table())["iron_mg_per_kg"].iloc[0])
