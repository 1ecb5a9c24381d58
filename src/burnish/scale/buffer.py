"""The work of a scaled run as records, the staleness rule, and what a checkpoint keeps of it.

A `Slice` is a contiguous run of groups of one sampling round of one step: positions
`first .. first + len(tasks)` of round `round_` of step `step`. Its seeds are the ones the
single-process run gives those positions (`sampling_seed(seed, step, round_)`, episode index
`position * group_size + g`), so a synchronous scaled run samples what a single-process run
samples, however its slices are spread over workers.

`StalenessBuffer` holds the groups that came back, until the step they were sampled for takes
them. A group sampled by policy version v (v optimizer steps behind it) is fresh for step s when
`s - v <= max_off_policy_steps`; an older one is dropped and its slice sampled again by the
current policy. `pending` lists the slices dispatched and not yet taken, by their tasks' cursor
indices: a checkpoint keeps that list and a resumed run samples those slices again.

No Ray here: these are plain records and pure functions, tested on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from burnish.train.groups import TaskCursor
from burnish.types import Group, Task


@dataclass(frozen=True)
class Slice:
    """Groups `first .. first + len(tasks)` of round `round_` of step `step`."""

    step: int
    round_: int
    first: int
    """Position of the first group in its round (seed index `first * group_size`)."""
    task_indices: tuple[int, ...]
    """Each task's index in the run's task stream (`TaskCursor`), for a resumed run."""
    tasks: tuple[Task, ...]

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.step, self.round_, self.first)

    def to_json(self) -> list:
        return [self.step, self.round_, self.first, list(self.task_indices)]


def stale(step: int, version: int | None, max_off_policy_steps: int) -> bool:
    """Whether a group sampled by policy `version` is too old to train step `step`."""
    return version is None or step - version > max_off_policy_steps


@dataclass
class StalenessBuffer:
    """Slices in flight and the groups that came back, until their step takes them."""

    max_off_policy_steps: int
    pending: dict[tuple[int, int, int], Slice] = field(default_factory=dict)
    """Dispatched and not taken yet, by key."""
    done: dict[tuple[int, int, int], list[Group]] = field(default_factory=dict)
    """Slices that came back whole, by key (a slice is never split: no partial group)."""
    dropped: int = 0
    """Groups dropped as stale so far."""

    def add_pending(self, s: Slice) -> None:
        self.pending[s.key] = s

    def put(self, s: Slice, groups: Sequence[Group]) -> bool:
        """Store a slice's groups; False (and nothing stored) when any of them is stale for
        the slice's step: the caller samples the slice again."""
        if len(groups) != len(s.tasks):
            raise RuntimeError(
                f"slice {s.key} of {len(s.tasks)} tasks came back with {len(groups)} groups"
            )
        for g, task in zip(groups, s.tasks, strict=True):
            if g.task.id != task.id:
                raise RuntimeError(f"slice {s.key}: group of task {g.task.id!r}, sent {task.id!r}")
        if any(stale(s.step, g.policy_version, self.max_off_policy_steps) for g in groups):
            self.dropped += len(groups)
            return False
        self.done[s.key] = list(groups)
        return True

    def ready(self, step: int, round_: int) -> bool:
        """Whether every dispatched slice of the round came back."""
        return not any(k[:2] == (step, round_) for k in self.pending if k not in self.done)

    def take(self, step: int, round_: int) -> list[Group]:
        """The round's groups in position order; their slices leave the buffer."""
        keys = sorted(k for k in self.done if k[:2] == (step, round_))
        out = [g for k in keys for g in self.done.pop(k)]
        for k in keys:
            self.pending.pop(k, None)
        return out

    def state(self) -> list[list]:
        """The pending slices as JSON data (a checkpoint's `cursor["pending"]`)."""
        return [s.to_json() for s in sorted(self.pending.values(), key=lambda s: s.key)]


def slices_from_state(state: Sequence[Sequence], tasks: TaskCursor) -> list[Slice]:
    """Rebuild checkpointed pending slices, their tasks drawn again from the task stream."""
    wanted = sorted({int(i) for item in state for i in item[3]})
    by_index = _tasks_at(tasks, wanted)
    return [
        Slice(
            int(step),
            int(round_),
            int(first),
            tuple(int(i) for i in idx),
            tuple(by_index[int(i)] for i in idx),
        )
        for step, round_, first, idx in state
    ]


def _tasks_at(tasks: TaskCursor, indices: Sequence[int]) -> dict[int, Task]:
    """The tasks at the given stream indices (a fresh cursor over the same stream)."""
    if not indices:
        return {}
    cursor = TaskCursor(tasks.env, tasks.seed, drawn=indices[0])
    out, at = {}, indices[0]
    for i in indices:
        if i > at:
            cursor.take(i - at)
        out[i] = cursor.take(1)[0]
        at = i + 1
    return out


def split_positions(n: int, parts: int) -> list[tuple[int, int]]:
    """`n` positions as at most `parts` contiguous (first, count) runs of near-equal size."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, first = [], 0
    for i in range(parts):
        count = base + (i < extra)
        if count:
            out.append((first, count))
        first += count
    return out
