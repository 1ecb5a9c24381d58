"""Judge prompt templates (data files in `templates/`) and how payloads are fenced into them.

Placeholders are `{name}` with a lower-case identifier and are substituted in ONE pass over
the template: text that arrives through a placeholder is never scanned again, so a candidate
that contains "{reference}" stays literal and cannot pull in the reference. JSON braces in the
templates (`{"verdicts": ...}`) are not placeholders and need no escaping.

Payloads (task, reference, candidates) are wrapped in tags carrying a random nonce
(`<candidate-3f9c...>`), re-drawn if it occurs in any payload, so a candidate cannot close its
own fence.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path

from burnish.judges.rubric import Criterion
from burnish.types import Task, Trajectory

TEMPLATES = Path(__file__).parent / "templates"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def load_template(name: str) -> str:
    """Text of `templates/<name>.txt`."""
    path = TEMPLATES / f"{name}.txt"
    if not path.exists():
        names = sorted(p.stem for p in TEMPLATES.glob("*.txt"))
        raise FileNotFoundError(f"no judge template {name!r}; available: {names}")
    return path.read_text(encoding="utf-8")


def template_version(names: Iterable[str]) -> str:
    """Hash of the named templates' text: part of every cache key."""
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0" + load_template(name).encode() + b"\0")
    return h.hexdigest()[:16]


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute every `{name}` in a single pass.

    Raises:
        KeyError: for a placeholder with no value (naming it and the given names).
    """

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{key}}} has no value; given: {sorted(values)}")
        return values[key]

    return _PLACEHOLDER.sub(sub, template)


def new_nonce(payloads: Iterable[str]) -> str:
    """A random hex tag suffix that occurs in none of the payloads."""
    texts = list(payloads)
    while True:
        nonce = secrets.token_hex(8)
        if not any(nonce in t for t in texts):
            return nonce


def fence(kind: str, text: str, nonce: str, attrs: str = "") -> str:
    """Wrap `text` in `<kind-nonce attrs>` ... `</kind-nonce>` on their own lines."""
    open_tag = f"<{kind}-{nonce}{' ' + attrs if attrs else ''}>"
    return f"{open_tag}\n{text}\n</{kind}-{nonce}>"


def task_text(task: Task, info_keys: Sequence[str] = ()) -> str:
    """The task as the judge sees it: the prompt messages, then the listed `Task.info` fields."""
    lines = [m.content if m.role == "user" else f"[{m.role}] {m.content}" for m in task.prompt]
    data = []
    for key in info_keys:
        if key in task.info:
            value = task.info[key]
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
            data.append(f"- {key}: {value}")
    if data:
        lines += ["", "Task data:", *data]
    return "\n".join(lines)


def reference_text(task: Task) -> str | None:
    """The gold answer as text, or None when the task has none."""
    if task.answer is None:
        return None
    return task.answer if isinstance(task.answer, str) else json.dumps(task.answer)


def criteria_text(criteria: Sequence[Criterion]) -> str:
    """Numbered criteria with descriptions and allowed verdicts (worst to best)."""
    blocks = []
    for i, c in enumerate(criteria, 1):
        choices = ", ".join(json.dumps(x) for x in c.choices)
        blocks.append(
            f"{i}. {c.name} ({c.category.value})\n"
            f"   Description: {c.description}\n"
            f"   Allowed verdicts, worst to best: {choices}"
        )
    return "\n".join(blocks)


def _full_trace(t: Trajectory) -> str:
    rest = t.messages[len(t.task.prompt) :]
    return "\n\n".join(f"[{m.role}{':' + m.name if m.name else ''}]\n{m.content}" for m in rest)


VIEWS: dict[str, Callable[[Trajectory], str]] = {
    "completion": lambda t: t.completion,
    "full_trace": _full_trace,
}
"""What the judge sees of a rollout: the assistant's text only, or every message after the
prompt (tool output included, which widens the injection surface)."""


def candidate_view(view: str) -> Callable[[Trajectory], str]:
    if view not in VIEWS:
        raise ValueError(f"unknown judge view {view!r}; allowed: {sorted(VIEWS)}")
    return VIEWS[view]


def judge_messages(kind: str, nonce: str, task_txt: str, ref: str | None, **values: str):
    """The system and user messages of a `kind` ("rubric" or "group") judge call.

    The task and reference are fenced with `nonce`; `values` fill the rest of the user template.
    """
    user = {
        "task": fence("task", task_txt, nonce),
        "reference": "" if ref is None else f"REFERENCE\n{fence('reference', ref, nonce)}\n\n",
        **values,
    }
    return [
        {"role": "system", "content": render(load_template(f"{kind}_system"), {"nonce": nonce})},
        {"role": "user", "content": render(load_template(f"{kind}_user"), user)},
    ]
