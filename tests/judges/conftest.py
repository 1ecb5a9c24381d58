"""One scripted judge server per test module (started on 127.0.0.1, stopped after)."""

from __future__ import annotations

import pytest

from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import ScriptedRules


@pytest.fixture(scope="module")
def _server():
    with scripted_judge_server(ScriptedRules()) as server:
        yield server


@pytest.fixture
def server(_server):
    """The module's server, reset to default rules (request counter at 0)."""
    _server.reconfigure(ScriptedRules())
    return _server
