"""The run store: one SQLite file per run, written as the run goes.

Tables: `steps` (every metric of every step), `rollouts` (every trajectory with its task, text,
reward, components, stop reason and token counts), `evals` (test-split metrics), `alerts` and
`flagged` (reward-hacking monitors). Each step is written in one transaction, so a crash leaves
whole steps only.

Resuming from checkpoint `step_N` (N steps done) re-runs step N: `truncate_from(N)` first
deletes every row of steps >= N and every eval labelled > N (an eval labelled s is taken after
s steps). A step is written once: `log_step` refuses a step that already has rows, and
(step, group, sample) is unique in `rollouts` and `flagged`, so a missed truncation fails loudly
instead of doubling rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from burnish.types import Group

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY, time REAL, metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER NOT NULL, env TEXT, task_id TEXT,
    grp INTEGER, sample INTEGER, prompt TEXT, completion TEXT, reward REAL, advantage REAL,
    components TEXT, stop_reason TEXT, num_tokens INTEGER, num_sampled INTEGER, turns INTEGER,
    error TEXT, task_info TEXT, info TEXT);
CREATE INDEX IF NOT EXISTS rollouts_step ON rollouts(step);
CREATE TABLE IF NOT EXISTS evals (
    step INTEGER NOT NULL, env TEXT NOT NULL, metrics TEXT NOT NULL, PRIMARY KEY (step, env));
CREATE TABLE IF NOT EXISTS forgetting (
    step INTEGER NOT NULL, name TEXT NOT NULL, metrics TEXT NOT NULL, PRIMARY KEY (step, name));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER NOT NULL, rule TEXT, signal TEXT,
    value REAL, threshold REAL, evidence TEXT);
CREATE TABLE IF NOT EXISTS flagged (
    id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER NOT NULL, grp INTEGER, sample INTEGER,
    reward REAL, flags TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS flagged_step ON flagged(step);
CREATE INDEX IF NOT EXISTS alerts_step ON alerts(step);
"""
_UNIQUE = (
    "CREATE UNIQUE INDEX IF NOT EXISTS rollouts_unique ON rollouts(step, grp, sample)",
    "CREATE UNIQUE INDEX IF NOT EXISTS flagged_unique ON flagged(step, grp, sample)",
)
"""Added when the file allows it: a store written by an older burnish may hold duplicates, which
`truncate_from` removes (the constraints are added then)."""
_PER_STEP = ("steps", "rollouts", "alerts", "flagged")


def _json(v: Any) -> str:
    return json.dumps(v, default=str)


def _prompt_text(group: Group) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in group.task.prompt)


def _rollout_info(traj, score, task) -> dict[str, Any]:
    """The `info` column of a rollout: the episode's info, the score's, and the gold answer."""
    info = {**traj.info, "score": score.info}
    if task.answer is not None:
        info["gold_answer"] = task.answer
    return info


class RunStore:
    """Read and write one run's SQLite store (`run.db` in the run directory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path))
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(_SCHEMA)
        self.conn.commit()
        self._ensure_unique()

    def _ensure_unique(self) -> None:
        for statement in _UNIQUE:
            try:
                with self.conn:
                    self.conn.execute(statement)
            except sqlite3.IntegrityError:  # duplicates already there: log_step still guards
                pass

    @classmethod
    def open(cls, run_dir: str | Path) -> RunStore:
        """Open the store of a run directory (a path to a .db file also works)."""
        p = Path(run_dir)
        if p.suffix == ".db":
            return cls(p)
        if not p.is_dir():
            raise FileNotFoundError(f"run directory not found: {p}")
        return cls(p / "run.db")

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ writing

    def log_step(
        self,
        step: int,
        metrics: dict[str, float],
        groups: Sequence[Group] = (),
        alerts: Iterable[Any] = (),
        flagged: Iterable[Any] = (),
    ) -> None:
        """Write one step (metrics, rollouts, alerts, flagged samples) in one transaction.

        Raises:
            ValueError: the store already holds rows of `step` (resume with `truncate_from`).
        """
        with self.conn:
            held = [t for t in _PER_STEP if self._has_step(t, step)]
            if held:
                raise ValueError(
                    f"step {step} is already in the run store {self.path} (tables {held}); a "
                    f"re-run step must be deleted first: call truncate_from({step})"
                )
            self.conn.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?)", (step, time.time(), _json(metrics))
            )
            rows = []
            for g_idx, group in enumerate(groups):
                prompt = _prompt_text(group)
                for s_idx, (traj, score) in enumerate(zip(group.trajectories, group.scores)):
                    adv = group.advantages[s_idx] if group.advantages is not None else None
                    rows.append(
                        (
                            step,
                            group.task.env,
                            group.task.id,
                            g_idx,
                            s_idx,
                            prompt,
                            traj.completion,
                            score.value,
                            adv,
                            _json(dict(score.components)),
                            traj.stop_reason.value,
                            len(traj.tokens),
                            traj.num_sampled,
                            traj.turns,
                            traj.error,
                            _json(dict(group.task.info)),
                            _json(_rollout_info(traj, score, group.task)),
                        )
                    )
            self.conn.executemany(
                "INSERT INTO rollouts (step, env, task_id, grp, sample, prompt, completion, reward,"
                " advantage, components, stop_reason, num_tokens, num_sampled, turns, error,"
                " task_info, info) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self.conn.executemany(
                "INSERT INTO alerts (step, rule, signal, value, threshold, evidence)"
                " VALUES (?,?,?,?,?,?)",
                [(step, a.rule, a.signal, a.value, a.threshold, _json(a.evidence)) for a in alerts],
            )
            self.conn.executemany(
                "INSERT INTO flagged (step, grp, sample, reward, flags, text) VALUES (?,?,?,?,?,?)",
                [
                    (
                        step,
                        f.group_index,
                        f.rollout_index,
                        f.reward,
                        _json({"flags": dict(f.flags), "reasons": list(f.reasons)}),
                        f.excerpt,
                    )
                    for f in flagged
                ],
            )

    def _has_step(self, table: str, step: int) -> bool:
        row = self.conn.execute(f"SELECT 1 FROM {table} WHERE step = ? LIMIT 1", (step,))
        return row.fetchone() is not None

    def log_eval(self, step: int, env: str, metrics: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO evals VALUES (?, ?, ?)", (step, env, _json(metrics))
            )

    def log_forgetting(self, step: int, name: str, metrics: dict[str, Any]) -> None:
        """One forgetting measurement at an eval point: a retention skill (``retention/ENV``) or
        the KL to base (``kl/base``), kept apart from the new task's `evals`."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO forgetting VALUES (?, ?, ?)", (step, name, _json(metrics))
            )

    def forgetting(self) -> list[dict[str, Any]]:
        """Every forgetting row by step and name: its metrics plus "step" and "name"."""
        cur = self.conn.execute("SELECT step, name, metrics FROM forgetting ORDER BY step, name")
        return [{**json.loads(r["metrics"]), "step": r["step"], "name": r["name"]} for r in cur]

    def truncate_from(self, step: int) -> None:
        """Delete every row of steps >= `step` and every eval labelled > `step`, in one
        transaction: what resuming from checkpoint `step_{step}` re-runs.

        An eval labelled s was taken after s steps, so the one labelled `step` (taken with the
        checkpoint's weights) is kept.
        """
        with self.conn:
            for table in _PER_STEP:
                self.conn.execute(f"DELETE FROM {table} WHERE step >= ?", (step,))
            self.conn.execute("DELETE FROM evals WHERE step > ?", (step,))
            self.conn.execute("DELETE FROM forgetting WHERE step > ?", (step,))
        self._ensure_unique()

    def truncate_after(self, step: int) -> None:
        """Delete everything logged after `step`; `step` itself stays.

        Not for resuming: checkpoint `step_N` re-runs step N, so use `truncate_from(N)`.
        """
        with self.conn:
            for table in ("steps", "rollouts", "alerts", "flagged"):
                self.conn.execute(f"DELETE FROM {table} WHERE step > ?", (step,))
            self.conn.execute("DELETE FROM evals WHERE step > ?", (step,))
            self.conn.execute("DELETE FROM forgetting WHERE step > ?", (step,))

    # ------------------------------------------------------------------ reading

    def steps(self) -> list[dict[str, Any]]:
        """All steps in order, each a dict of metrics plus "step"."""
        cur = self.conn.execute("SELECT step, metrics FROM steps ORDER BY step")
        return [{"step": r["step"], **json.loads(r["metrics"])} for r in cur]

    def evals(self, env: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT step, env, metrics FROM evals"
        args: tuple = ()
        if env is not None:
            q += " WHERE env = ?"
            args = (env,)
        cur = self.conn.execute(q + " ORDER BY step, env", args)
        return [{"step": r["step"], "env": r["env"], **json.loads(r["metrics"])} for r in cur]

    def rollouts(self, step: int | None = None) -> list[dict[str, Any]]:
        """Stored rollouts (all, or one step's), JSON columns decoded."""
        q = "SELECT * FROM rollouts"
        args: tuple = ()
        if step is not None:
            q += " WHERE step = ?"
            args = (step,)
        out = []
        for r in self.conn.execute(q + " ORDER BY id", args):
            d = dict(r)
            d["group"] = d.pop("grp")
            for k in ("components", "task_info", "info"):
                d[k] = json.loads(d[k]) if d[k] else {}
            out.append(d)
        return out

    def rollout_envs(self) -> list[str]:
        """The environments the run trained on (those with stored rollouts), sorted."""
        cur = self.conn.execute("SELECT DISTINCT env FROM rollouts WHERE env IS NOT NULL")
        return sorted(r["env"] for r in cur)

    def alerts(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM alerts ORDER BY step, id")
        return [{**dict(r), "evidence": json.loads(r["evidence"] or "null")} for r in cur]

    def flagged(self, step: int | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM flagged"
        args: tuple = ()
        if step is not None:
            q += " WHERE step = ?"
            args = (step,)
        cur = self.conn.execute(q + " ORDER BY step, id", args)
        out = []
        for r in cur:
            d = dict(r)
            d["group"] = d.pop("grp")
            d["flags"] = json.loads(d["flags"] or "{}")
            out.append(d)
        return out

    def last_step(self) -> int | None:
        r = self.conn.execute("SELECT MAX(step) AS s FROM steps").fetchone()
        return r["s"]
