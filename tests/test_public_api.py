"""The top-level API: every exported name resolves, and `import burnish` stays cheap."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import burnish


@pytest.mark.parametrize("name", burnish.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(burnish, name) is not None
    assert name in dir(burnish)


def test_exports_are_the_documented_objects():
    from burnish.config import load_config
    from burnish.envs import SingleTurnEnv
    from burnish.eval import evaluate
    from burnish.train.loop import train
    from burnish.types import Score

    assert burnish.train is train
    assert burnish.evaluate is evaluate
    assert burnish.load_config is load_config
    assert burnish.SingleTurnEnv is SingleTurnEnv
    assert burnish.Score is Score
    assert isinstance(burnish.__version__, str)


def test_train_stays_the_function_after_the_subpackage_is_imported():
    import burnish.train.step  # noqa: F401  (sets the subpackage on its parent)
    from burnish import train

    assert callable(burnish.train)
    assert train.__module__ == "burnish.train.loop"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        burnish.no_such_name  # noqa: B018


def test_import_burnish_does_not_import_torch():
    code = (
        "import sys, burnish; print(sorted(m for m in ('torch', 'pydantic') if m in sys.modules))"
    )
    src = str(Path(burnish.__file__).resolve().parents[1])  # the burnish under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
