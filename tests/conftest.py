"""Shared fixtures: small phantom datasets generated once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brainiron.phantom import generate_phantom


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A 2-subject phantom at 3 mm (sub-01 RAS, sub-02 LPS), read-only by convention."""
    out = tmp_path_factory.mktemp("phantom") / "bids"
    generate_phantom(out, n_subjects=2, seed=11, voxel_size=(3.0, 3.0, 3.0))
    return out


@pytest.fixture
def dataset_copy(phantom_dir, tmp_path) -> Path:
    """A private copy of the phantom (raw part only) that a test may break."""
    out = tmp_path / "bids"
    shutil.copytree(phantom_dir, out, ignore=shutil.ignore_patterns("derivatives"))
    return out
