"""Fixtures of real chat formats: every tiny model of `real_models.FIXTURES`, built once."""

import pytest
from real_models import FIXTURES, build_fixture


@pytest.fixture(scope="session")
def fixture_dirs(tmp_path_factory):
    """Fixture name -> model directory (built once per test session)."""
    root = tmp_path_factory.mktemp("real_models")
    return {name: build_fixture(name, root / name) for name in FIXTURES}
