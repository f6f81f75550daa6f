"""The discovery cache (brainiron.bids.cache): used on the second plan, redone when the dataset
or the settings change, and always equal to a fresh discovery (the reference)."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

import brainiron.bids.cache as cache_module
from brainiron.bids import discover
from brainiron.bids.cache import cache_path, discover_cached
from brainiron.bids.listing import entries_ending_with, listing_scope
from brainiron.errors import InputError


@pytest.fixture
def counted(monkeypatch):
    """discover as the cache calls it, counting the calls."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return discover(*args, **kwargs)

    monkeypatch.setattr(cache_module, "discover", counting)
    return calls


def _same(cached, bids_dir, **settings):
    """The cached dataset equals a fresh discovery, field by field."""
    fresh = discover(bids_dir, **settings)
    assert cached.root == fresh.root
    assert cached.subjects == fresh.subjects
    assert cached.ignored == fresh.ignored
    assert cached.ignored_table().equals(fresh.ignored_table())
    pd.testing.assert_frame_equal(cached.participants, fresh.participants)
    return fresh


def _touch_later(path):
    """Give ``path`` a modification time clearly after the cache was written."""
    later = time.time_ns() + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_second_call_uses_the_cache_and_equals_discovery(dataset_copy, tmp_path, counted):
    cache = cache_path(tmp_path / "out")
    first = discover_cached(dataset_copy, cache)
    assert len(counted) == 1 and cache.is_file()
    second = discover_cached(dataset_copy, cache)
    assert len(counted) == 1  # not discovered again
    fresh = _same(second, dataset_copy)
    assert [s.key for s in second.valid] == ["sub-01", "sub-02"]
    assert first.subjects == fresh.subjects
    # The plans the workflow makes from it are the same too.
    deriv = tmp_path / "out" / "brainiron"
    assert ([s.plan(["Chimap", "R2starmap"], deriv) for s in second.valid]
            == [s.plan(["Chimap", "R2starmap"], deriv) for s in fresh.valid])
    # Written atomically: no temporary left beside it.
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]


def test_participants_with_missing_values_and_capped_ages_round_trip(dataset_copy, tmp_path):
    (dataset_copy / "participants.tsv").write_text(
        "participant_id\tage\tsex\tsite\nsub-01\t89+\tn/a\t3\nsub-02\tn/a\tM\t\n")
    cache = cache_path(tmp_path / "out")
    discover_cached(dataset_copy, cache)
    cached = discover_cached(dataset_copy, cache)
    fresh = _same(cached, dataset_copy)
    assert fresh.participants["age"].tolist()[0] == 89  # the real value, not NaN
    assert fresh.participants["age_note"].tolist()[0] == "89+"


@pytest.mark.parametrize("change", ["add_subject_file", "add_subject", "remove_echo",
                                    "change_sidecar", "change_participants", "root_sidecar"])
def test_a_changed_dataset_is_discovered_again(dataset_copy, tmp_path, counted, change):
    cache = cache_path(tmp_path / "out")
    before = discover_cached(dataset_copy, cache)
    anat = dataset_copy / "sub-01" / "anat"
    if change == "add_subject_file":
        (anat / "sub-01_FLAIR.nii.gz").write_bytes((anat / "sub-01_T1w.nii.gz").read_bytes())
    elif change == "add_subject":
        target = dataset_copy / "sub-03" / "anat"
        target.mkdir(parents=True)
        for f in anat.iterdir():
            (target / f.name.replace("sub-01", "sub-03")).write_bytes(f.read_bytes())
        with open(dataset_copy / "participants.tsv", "a") as fh:
            fh.write("sub-03\t50\tF\tcontrol\n")
    elif change == "remove_echo":
        last = sorted(anat.glob("*_echo-*_MEGRE.nii.gz"))[-1]
        last.unlink()
        last.with_name(last.name.replace(".nii.gz", ".json")).unlink()
    elif change == "change_sidecar":  # same size, other content
        path = anat / "sub-01_Chimap.json"
        text = path.read_text()
        assert '"ppm"' in text
        path.write_text(text.replace('"ppm"', '"ppb"'))
        _touch_later(path)
    elif change == "change_participants":
        path = dataset_copy / "participants.tsv"
        path.write_text(path.read_text().replace("sub-02", "sub-09"))
    elif change == "root_sidecar":  # inherited by every subject's MEGRE echoes
        (dataset_copy / "MEGRE.json").write_text('{"MagneticFieldStrength": 7}')
    after = discover_cached(dataset_copy, cache)
    assert len(counted) == 2, "the changed dataset must be discovered again"
    _same(after, dataset_copy)
    if change != "root_sidecar":  # (the subjects' own sidecars override it)
        assert (after.subjects, after.participants.to_dict(), after.ignored) != (
            before.subjects, before.participants.to_dict(), before.ignored)
    if change == "remove_echo":
        echoes = len(list(anat.glob("*_echo-*_part-mag_MEGRE.nii.gz")))
        assert len(next(s for s in after.subjects if s.subject == "01").megre) == echoes
    if change == "add_subject":
        assert [s.key for s in after.valid] == ["sub-01", "sub-02", "sub-03"]


def test_other_settings_are_discovered_again(dataset_copy, tmp_path, counted):
    cache = cache_path(tmp_path / "out")
    discover_cached(dataset_copy, cache)
    only = discover_cached(dataset_copy, cache, participant_label=["02"])
    assert len(counted) == 2 and [s.key for s in only.subjects] == ["sub-02"]
    grid = discover_cached(dataset_copy, cache, t1w_grid="world")
    assert len(counted) == 3
    _same(grid, dataset_copy, t1w_grid="world")
    discover_cached(dataset_copy, cache, t1w_grid="world")
    assert len(counted) == 3


def test_a_broken_cache_is_a_miss_not_an_error(dataset_copy, tmp_path, counted):
    cache = cache_path(tmp_path / "out")
    discover_cached(dataset_copy, cache)
    cache.write_text('{"format": 1, "key": ')
    again = discover_cached(dataset_copy, cache)
    assert len(counted) == 2
    _same(again, dataset_copy)


def test_trusted_cache_skips_the_listing_and_falls_back_to_discovery(dataset_copy, tmp_path,
                                                                     counted):
    cache = cache_path(tmp_path / "out")
    # No cache yet: a job discovers by itself.
    discover_cached(dataset_copy, cache, trust=True)
    assert len(counted) == 1
    # A cluster job trusts what its controller wrote (no listing of the dataset).
    (dataset_copy / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz").write_bytes(b"")
    discover_cached(dataset_copy, cache, trust=True)
    assert len(counted) == 1


def test_dataset_errors_are_not_cached(tmp_path):
    with pytest.raises(InputError, match="BIDS folder not found"):
        discover_cached(tmp_path / "nope", cache_path(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sub-<label> folders"):
        discover_cached(tmp_path / "empty", cache_path(tmp_path / "out"))
    assert not cache_path(tmp_path / "out").exists()


def test_a_read_only_output_only_loses_the_cache(dataset_copy, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder would be")
    found = discover_cached(dataset_copy, cache_path(blocker))
    _same(found, dataset_copy)


def test_listing_scope_lists_a_folder_once_and_matches_glob(tmp_path, monkeypatch):
    for name in ("b_MEGRE.json", "a_MEGRE.json", ".x_MEGRE.json", "MEGRE.json",
                 "a_megre.json", "a_MEGRE.json.bak", "sub-01"):
        (tmp_path / name).write_text("{}")
    expected = sorted(tmp_path.glob("*MEGRE.json"))
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: listed.append(p) or real(p))
    with listing_scope():
        assert entries_ending_with(tmp_path, "MEGRE.json") == expected
        (tmp_path / "c_MEGRE.json").write_text("{}")  # not seen inside the scope
        assert entries_ending_with(tmp_path, "MEGRE.json") == expected
        assert len(entries_ending_with(tmp_path, ".json")) == 5
    assert len(listed) == 1
    # Outside a scope every call lists afresh.
    assert entries_ending_with(tmp_path, "MEGRE.json") == sorted(tmp_path.glob("*MEGRE.json"))
    assert entries_ending_with(tmp_path / "missing", "MEGRE.json") == []
