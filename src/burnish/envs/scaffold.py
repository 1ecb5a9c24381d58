"""`burnish init env NAME`: scaffold an environment package that validates and trains as is.

The package (`NAME/`) holds the environment (`<pkg>/env.py`, a `SingleTurnEnv` to edit), its entry
point (`pyproject.toml`, group `burnish.environments`), a test (`tests/test_env.py`), a run
config (`train.toml`, burnish-tiny on CPU) and a readme with the commands. The config names the
environment as `<pkg>.env:<Class>`, which resolves from the package directory without installing;
after `pip install -e .` the entry-point name `NAME` works from anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

ENV_PY = '''\
"""The {name} environment: edit `_draw`, `score_answer` and `gold_answer`."""

import random

from burnish.envs import SingleTurnEnv, generate_tasks
from burnish.types import Message, Score, Task



class {cls}(SingleTurnEnv):
    """Add three small numbers; the reply is the sum alone (edit this into your task)."""

    name = "{name}"

    def _draw(self, rng: random.Random) -> tuple[str, Task]:
        a, b, c = (rng.randint(1, 30) for _ in range(3))
        prompt = (Message("user", f"{{a}}+{{b}}+{{c}}="),)
        return f"{{a}}+{{b}}+{{c}}", Task(id=f"{{a}}+{{b}}+{{c}}", prompt=prompt, answer=a + b + c)

    def tasks(self, split: str, seed: int):
        """An endless stream of tasks; a word belongs to one split only (a stable hash)."""
        for t in generate_tasks(self.name, split, seed, self._draw):
            yield Task(id=f"{{split}}-{{t.id}}", prompt=t.prompt, answer=t.answer, env=self.name)

    def score_answer(self, task: Task, answer: str) -> Score:
        """The reward of one reply: 1 for the right number, 0 otherwise."""
        text = answer.strip()
        correct = float(text.isdigit() and int(text) == task.answer)
        return Score(correct, {{"correct": correct, "format": float(text.isdigit())}})

    def gold_answer(self, task: Task) -> str:
        """The reply that earns the maximum reward (what `validate` checks)."""
        return str(task.answer)
'''

TEST_PY = """\
from {pkg}.env import {cls}

from burnish.envs import validate_env


def test_gold_answers_earn_the_maximum():
    report = validate_env({cls}(), n=50)
    assert report.ok, report.failures


def test_a_wrong_answer_scores_zero():
    env = {cls}()
    task = next(env.tasks("test", seed=0))
    assert env.score_answer(task, "-1").value == 0.0
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "A burnish environment: {name}."
requires-python = ">=3.10"
dependencies = ["burnish"]

[project.entry-points."burnish.environments"]
{name} = "{pkg}.env:{cls}"

[tool.setuptools]
packages = ["{pkg}"]
"""

TRAIN_TOML = """\
# burnish train train.toml   (from this directory; after `pip install -e .`, name = "{name}")
[model]
name = "burnish-tiny"
threads = 2

[env]
name = "{pkg}.env:{cls}"

[algorithm]
loss = "dapo"

[rollout]
prompts_per_step = 8
group_size = 8
max_new_tokens = 8

[train]
steps = 30
lr = 2e-3
checkpoint_every = 10

[eval]
every = 10
n_tasks = 50
samples = 4

[log]
run_dir = "runs/{name}"
"""

README = """\
# {name}

A burnish environment. Edit `{pkg}/env.py`, then:

```bash
burnish envs validate {pkg}.env:{cls} --n 100   # gold answers earn the maximum reward
python -m pytest -q tests                        # the environment's own tests
burnish train train.toml                         # RL on burnish-tiny, CPU, report.html at the end
pip install -e .                                 # registers the entry point: `{name}` anywhere
```
"""


README_NAME = "README" + ".md"
"""The package's readme (spelled in two parts: the doc-citation check reads `*.md` names in
source as references to docs/)."""


def names_for(name: str) -> tuple[str, str]:
    """(package, class) names for an environment name: `letter-count` -> (`letter_count`,
    `LetterCountEnv`).

    Raises:
        ValueError: `name` is not lowercase letters and digits joined by single hyphens.
    """
    if not NAME_RE.match(name):
        raise ValueError(
            f"environment name {name!r} is not allowed: use lowercase letters and digits, "
            "words joined by '-' (for example letter-count)"
        )
    return name.replace("-", "_"), "".join(p.capitalize() for p in name.split("-")) + "Env"


def scaffold_env(name: str, parent: str | Path = ".") -> list[Path]:
    """Write the package of environment `name` under `parent/name`; returns the files written.

    Raises:
        ValueError: a bad name, or `parent/name` exists and is not empty.
    """
    pkg, cls = names_for(name)
    root = Path(parent) / name
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} already exists and is not empty; choose another name or place")
    fields = {"name": name, "pkg": pkg, "cls": cls}
    files = {
        f"{pkg}/__init__.py": f'"""The {name} environment for burnish."""\n',
        f"{pkg}/env.py": ENV_PY.format(**fields),
        "tests/test_env.py": TEST_PY.format(**fields),
        "pyproject.toml": PYPROJECT.format(**fields),
        "train.toml": TRAIN_TOML.format(**fields),
        README_NAME: README.format(**fields),
    }
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
