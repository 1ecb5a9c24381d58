"""Write a small example run whose rewards came from a length-biased judge.

    python examples/judges/make_example_run.py runs/judge-example
    burnish judge replay runs/judge-example --rubric examples/judges/keywords.toml \
        --scripted examples/judges/rules_keywords.toml

The rollouts are the labelled examples in labels.jsonl, one group per prompt; their stored
rewards are the scores of the scripted length-biased group judge, so replaying them with the
keyword-coverage judge shows which rollouts the length bias over- or under-rewarded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from burnish.judges.calibrate import load_labels
from burnish.judges.config import JudgeConfig
from burnish.judges.group_judge import GroupJudge
from burnish.judges.rubric import load_rubric
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import MODEL_ID, load_rules
from burnish.store import RunStore
from burnish.types import Group, Message, StopReason, Trajectory

HERE = Path(__file__).parent


async def _groups(judge: GroupJudge, rows) -> list[Group]:
    by_task: dict[str, list] = {}
    for r in rows:
        by_task.setdefault(r.task().id, []).append(r)
    groups = []
    for members in by_task.values():
        task = members[0].task()
        trajs = tuple(
            Trajectory(
                task, (), (*task.prompt, Message("assistant", r.completion)), StopReason.DONE
            )
            for r in members
        )
        groups.append(Group(task, trajs, tuple(await judge.score_group(task, trajs))))
    return groups


def main(run_dir: str) -> None:
    rubric = load_rubric(HERE / "keywords.toml")
    rows = load_labels(HERE / "labels.jsonl", rubric)
    with scripted_judge_server(load_rules(HERE / "rules_length_biased.toml")) as server:
        config = JudgeConfig(server.base_url, MODEL_ID, api_key_env=None)
        groups = asyncio.run(_groups(GroupJudge(config, rubric=rubric, seed=0), rows))
    store = RunStore(Path(run_dir) / "run.db")
    store.log_step(0, {}, groups)
    store.close()
    print(f"wrote {sum(len(g.trajectories) for g in groups)} rollouts to {run_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/judge-example")
