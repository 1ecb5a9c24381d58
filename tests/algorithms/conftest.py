"""Fixtures of the algorithm tests: the §14.1 case of algorithms.md (see grpo_case.py)."""

import pytest
from grpo_case import Case, build_case


@pytest.fixture
def case() -> Case:
    return build_case()
