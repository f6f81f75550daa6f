import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from brainiron import generate_phantom, regional_stats
from brainiron.iron import add_iron
from brainiron.stats import group_comparison


def _simulated(n=40, effect=-0.02, age_slope=0.001, seed=0):
    """Regional chi with a known group effect (ppm) and age slope (ppm/year)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        group = "control" if i % 2 == 0 else "rls"
        age = rng.uniform(25, 75)
        sex = rng.choice(["F", "M"])
        for region, base in [("SN", 0.15), ("Pu", 0.08), ("Ca", 0.06)]:
            for hemi in "LR":
                value = base + age_slope * (age - 50) + rng.normal(0, 0.01)
                if region == "SN" and group == "rls":
                    value += effect
                rows.append({"participant_id": f"sub-{i:02d}", "map": "Chimap", "units": "ppm",
                             "region": region, "hemisphere": hemi, "mean": value, "age": age,
                             "sex": sex, "group": group, "sd": 0.02, "n_valid": 30})
    return pd.DataFrame(rows)


def test_recovers_a_known_adjusted_effect():
    table = group_comparison(_simulated(), covariates=["age", "sex"])
    sn = table[(table["region"] == "SN") & (table["outcome"] == "mean")]
    assert len(sn) == 2 and (sn["covariates"] == "age+sex").all()
    for row in sn.itertuples():
        assert row.ci_low < -0.02 < row.ci_high  # the simulated effect is inside the CI
        assert row.difference == pytest.approx(-0.02, abs=0.008)
        assert row.p < 1e-3 and row.cohens_d < -1.0
        assert row.units == "ppm" and row.reference_group == "control" and row.group == "rls"
    others = table[(table["region"] != "SN") & (table["outcome"] == "mean")]
    assert (others["p_fdr"] > 0.05).all()


def test_ols_without_covariates_equals_the_pooled_t_test():
    data = _simulated(n=24, seed=3)
    table = group_comparison(data, covariates=[])
    row = table[(table["region"] == "SN") & (table["hemisphere"] == "L")].iloc[0]
    sn = data[(data["region"] == "SN") & (data["hemisphere"] == "L")]
    t = sps.ttest_ind(sn.loc[sn.group == "rls", "mean"], sn.loc[sn.group == "control", "mean"])
    assert row["p"] == pytest.approx(t.pvalue, rel=1e-8)
    assert row["difference"] == pytest.approx(row["mean_group"] - row["mean_reference"])
    assert row["covariates"] == "none"


def test_benjamini_hochberg_across_regions_of_a_map():
    table = group_comparison(_simulated(seed=5))
    block = table[table["outcome"] == "mean"]
    np.testing.assert_allclose(block["p_fdr"], multipletests(block["p"], method="fdr_bh")[1])


def test_iron_is_a_second_outcome_and_tiny_samples_drop_covariates():
    data = add_iron(_simulated(n=5, seed=2))
    table = group_comparison(data)
    assert set(table["outcome"]) == {"mean", "iron_mg_per_kg"}
    assert set(table.loc[table["outcome"] == "iron_mg_per_kg", "units"]) == {"mg/kg"}
    # 3 + 2 subjects: group, age and sex would leave 1 residual degree of freedom.
    assert set(table["covariates"]) == {"age"}
    assert table["p"].notna().all()
    assert group_comparison(data.drop(columns="group")).empty


def test_phantom_sn_reduction_is_recovered(tmp_path):
    """16 phantom subjects, truth labels: the rls group's 15 % lower SN iron is found."""
    bids = tmp_path / "p"
    truth = generate_phantom(bids, n_subjects=16, seed=21, voxel_size=(4.0, 4.0, 4.0),
                             with_megre=False, with_t1w=False)
    people = pd.read_csv(bids / "participants.tsv", sep="\t")
    rows = []
    for pid in people["participant_id"]:
        anat = bids / pid / "anat"
        labels = bids / "derivatives/phantom-truth" / pid / "anat" / \
            f"{pid}_space-individual_atlas-CIT168_dseg.nii.gz"
        for name in ("Chimap", "R2starmap"):
            t = regional_stats(anat / f"{pid}_{name}.nii.gz", labels)
            rows.append(t.assign(participant_id=pid, map=name,
                                 units="ppm" if name == "Chimap" else "1/s"))
    table = pd.concat(rows).merge(people, on="participant_id")
    table = add_iron(table.assign(field_strength_T=3.0))
    result = group_comparison(table)
    sn = result[(result["region"] == "SN") & (result["outcome"] == "iron_mg_per_kg")]
    sim = truth[truth["region"] == "SN"].groupby("group")["iron_mg_per_kg"].mean()
    simulated = sim["rls"] - sim["control"]
    for row in sn.itertuples():
        assert row.difference < 0 and row.p_fdr < 0.05, row
        # Recovered (age-adjusted) effect within its CI-sized distance of the simulated one.
        assert abs(row.difference - simulated) < (row.ci_high - row.ci_low), (row, simulated)
    gp = result[(result["region"] == "GP") & (result["outcome"] == "iron_mg_per_kg")]
    assert (gp["p"] > 0.01).all()
