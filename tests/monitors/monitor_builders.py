"""Builders of small groups for the monitor tests (imported by module name)."""

from __future__ import annotations

from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def build_group(
    completions,
    rewards,
    *,
    task_id="t0",
    info=None,
    components=None,
    stops=None,
    lengths=None,
):
    """A group of one task whose rollouts have the given texts, rewards and (optional) parts.

    Each rollout's sampled length is `lengths[i]` tokens, or its number of words (at least 1).
    """
    task = Task(id=task_id, prompt=(Message("user", "What is 2+2?"),), answer=4, info=info or {})
    trajs, scores = [], []
    for i, (text, r) in enumerate(zip(completions, rewards, strict=True)):
        n = lengths[i] if lengths is not None else max(1, len(text.split()))
        seg = Segment(tokens=tuple(range(n)), sampled=True, logprobs=(-1.0,) * n)
        trajs.append(
            Trajectory(
                task=task,
                segments=(seg,),
                messages=(*task.prompt, Message("assistant", text)),
                stop_reason=stops[i] if stops is not None else StopReason.DONE,
            )
        )
        scores.append(Score(r, components[i] if components is not None else {}))
    return Group(task=task, trajectories=tuple(trajs), scores=tuple(scores))
