"""The scaled group source: Ray rollout workers instead of `collect_groups`, same records out.

`ScaledGroups.collect(step)` returns what `collect_groups` returns (every group seen, in
position order, with the sampling metrics), so the rest of the RL step (shaping, advantages,
packing, the update, monitors, the store) is the single-process code. What it does instead:

1. **Dispatch.** A sampling round of a step is cut into one contiguous `Slice` per worker (its
   seeds the single-process run's: same episodes, however many workers). A slice goes to a
   worker as a Ray call; the groups come back as records through the object store.
2. **Pipeline.** After taking step s's groups, round 0 of steps s+1 .. s+k
   (k = `max_off_policy_steps`) is dispatched at once, so the workers sample them with the
   policy of step s while the trainer trains; the adapter sync after the update is queued
   behind those calls on each worker and applies to the slices after them. A group of step t
   is thus sampled by version >= t - k. k = 0 is the synchronous run: nothing is sampled before
   the policy that trains on it exists.
3. **Staleness.** Every group carries the version that sampled it; a slice holding a group
   older than k steps is dropped and sampled again by the current policy (`StalenessBuffer`).
   The sampler's log-probs travel with the groups, so the trainer's `mismatch/*` metrics and
   `algorithm.tis` see the staleness as a sampler/trainer mismatch and correct for it.
4. **Dynamic sampling.** Dropped zero-variance groups are topped up with more rounds of the
   same step, as in process (the buffer tops up).
5. **Faults.** A call that fails because its worker died (`RayActorError`) replaces the worker
   (a new actor, given the current weights) and re-sends every slice that worker held; slices
   come back whole, so no partial group is ever trained. Any other failure (an environment, a
   judge, a server error) stops the run with the worker's error.
6. **Resume.** `cursor()` adds the pending slices (by task index) to the checkpoint's data
   cursor; a resumed run sends them again (with the resumed policy) before anything new.

Adapter sync: in-process workers get the trainable weights as a state dict through one object
ref per step (a broadcast over the object store); server workers get the path of the adapter
the trainer wrote under `sampler.adapter_dir` (default `RUN_DIR/served`) and load it into their
server (file + load; the last `k + 2` versions are kept on disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from burnish.config import RunConfig
from burnish.scale.buffer import Slice, StalenessBuffer, slices_from_state, split_positions
from burnish.scale.rollout_workers import JudgeWorker, RolloutWorker, trainable_state
from burnish.train.groups import TaskCursor
from burnish.train.plan import CollectSettings
from burnish.types import Group

log = logging.getLogger("burnish")


def ensure_ray(config: RunConfig) -> bool:
    """Join `scale.ray_address`, or the cluster this process runs, or start a local one;
    True when this call started it (and the run shuts it down)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "[scale] with rollout_workers or trainer_workers > 0 needs Ray: "
            "pip install 'burnish[ray]'"
        ) from e

    if ray.is_initialized():
        return False
    s = config.scale
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if s.ray_address is None:
        kwargs.update(num_cpus=s.local_cpus, object_store_memory=256 * 2**20)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=s.ray_address, **kwargs)
    return True


class ScaledGroups:
    """A run's groups from Ray rollout workers (see the module docstring)."""

    def __init__(
        self, config: RunConfig, settings: CollectSettings, tasks: TaskCursor, run_dir: Path
    ) -> None:
        import ray

        s = config.scale
        if s.rollout_urls and not config.lora.enabled:
            raise ValueError("scale.rollout_urls serve LoRA adapters: set lora.enabled = true")
        self.config, self.settings, self.tasks = config, settings, tasks
        self.k = s.max_off_policy_steps
        self.buffer = StalenessBuffer(self.k)
        self.adapter_dir = Path(config.sampler.adapter_dir or run_dir / "served").resolve()
        self._data = config.model_dump(mode="json")
        self._scope = _scope(run_dir) if s.rollout_urls else ""
        self._rollout = ray.remote(
            num_cpus=s.actor_cpus, num_gpus=0.0 if s.rollout_urls else s.actor_gpus
        )(RolloutWorker)
        judge = ray.remote(num_cpus=s.actor_cpus)(JudgeWorker)
        self.judges = [
            judge.options(max_concurrency=64).remote(self._data) for _ in range(s.judge_workers)
        ]
        self._id, self._made = secrets.token_hex(3), 0
        self.workers = [self._new_worker(i) for i in range(s.rollout_workers)]
        ray.get([w.ready.remote() for w in [*self.workers, *self.judges]])
        self.jobs: dict[Any, tuple[int, Slice | None, asyncio.Future]] = {}
        """In-flight calls: object ref -> (worker index, slice or None for a `load`, awaitable)."""
        self.version = 0
        self._weights: Any = None
        self._ahead = -1
        """The last step whose round 0 has been dispatched."""
        self._resumed: list[Slice] = []
        self._stale_resends = 0
        self.counts = {"workers_replaced": 0, "slices_resent": 0}

    def _new_worker(self, index: int):
        self._made += 1  # a fresh name: a replaced actor's name may not be released yet
        name = f"burnish-rollout-{self._id}-{index}-{self._made}"
        return self._rollout.options(name=name).remote(self._data, index, self._scope, self.judges)

    # ---- the group source of the loop -----------------------------------------------------

    async def sync(self, policy: Any, version: int) -> None:
        """Send policy `version` (after `version` steps) to every worker; queued behind the
        slices each is sampling, so those keep the version they started with."""
        import ray

        self.version = version
        if self.config.scale.rollout_urls:
            from burnish.models import save_adapter

            path = save_adapter(policy, self.adapter_dir / f"v{version}")
            self._weights = str(path)
            for old in self.adapter_dir.glob("v*"):
                if old.name[1:].isdigit() and int(old.name[1:]) < version - self.k - 1:
                    shutil.rmtree(old, ignore_errors=True)
        else:
            self._weights = ray.put(trainable_state(policy))
        for i in range(len(self.workers)):
            self._load(i)
        if self._resumed:  # a resumed run samples what was in flight first
            for s in self._resumed:
                self._send(s)
                self._ahead = max(self._ahead, s.step)
            self._resumed = []

    async def collect(self, step: int) -> tuple[list[Group], dict[str, float]]:
        """The step's groups (dynamic sampling tops them up), then the pipeline's next rounds."""
        st = self.settings
        rounds = 1 + (st.max_resample_rounds if st.dynamic_sampling else 0)
        groups: list[Group] = []
        dropped0 = self.buffer.dropped
        for round_ in range(rounds):
            if round_ > 0 or self._ahead < step:
                self._dispatch(step, round_, st.prompts_per_step - sum(g.kept for g in groups))
            groups += await self._round(step, round_)
            if sum(g.kept for g in groups) >= st.prompts_per_step:
                break
        self._ahead = max(self._ahead, step)
        for ahead in range(self._ahead + 1, step + self.k + 1):
            self._dispatch(ahead, 0, st.prompts_per_step)
            self._ahead = ahead
        lag = [self.version - g.policy_version for g in groups]
        return groups, {
            "sampling/rounds": float(round_ + 1),
            "sampling/groups_seen": float(len(groups)),
            "sampling/groups_kept": float(sum(g.kept for g in groups)),
            "async/staleness_mean": sum(lag) / max(len(lag), 1),
            "async/staleness_max": float(max(lag, default=0)),
            "async/dropped_stale": float(self.buffer.dropped - dropped0),
        }

    def cursor(self) -> dict[str, Any]:
        """The data cursor of a checkpoint: tasks drawn, and the slices still pending."""
        return {"tasks": self.tasks.drawn, "pending": self.buffer.state()}

    def load_cursor(self, cursor: dict[str, Any]) -> None:
        self.tasks.drawn = int(cursor.get("tasks", 0))
        self._resumed = slices_from_state(cursor.get("pending", []), self.tasks)

    def stats(self) -> dict[str, Any]:
        """For `summary.json`: groups dropped as stale, workers replaced, slices sent again."""
        return {"groups_dropped_stale": self.buffer.dropped, **self.counts}

    async def close(self) -> None:
        import ray

        for _, _, f in self.jobs.values():
            f.cancel()
        for a in [*self.workers, *self.judges]:
            ray.kill(a)
        self.workers, self.judges, self.jobs = [], [], {}

    # ---- dispatch, waiting, faults ----------------------------------------------------------

    def _dispatch(self, step: int, round_: int, n: int) -> None:
        """Draw `n` tasks for a round and send them as one slice per worker."""
        if n <= 0:
            return
        first_index = self.tasks.drawn
        drawn = self.tasks.take(n)
        for first, count in split_positions(n, len(self.workers)):
            self._send(
                Slice(
                    step,
                    round_,
                    first,
                    tuple(range(first_index + first, first_index + first + count)),
                    tuple(drawn[first : first + count]),
                )
            )

    def _load(self, worker: int) -> None:
        """Send the current weights to a worker (a job without a slice: its failure counts)."""
        ref = self.workers[worker].load.remote(self._weights, self.version)
        self.jobs[ref] = (worker, None, asyncio.wrap_future(ref.future()))

    def _send(self, s: Slice, worker: int | None = None) -> None:
        """Send a slice to `worker` (default: the one with the fewest slices in flight)."""
        if worker is None:
            load = [0] * len(self.workers)
            for w, job, _ in self.jobs.values():
                load[w] += job is not None
            worker = load.index(min(load))
        ref = self.workers[worker].sample.remote(s)
        self.jobs[ref] = (worker, s, asyncio.wrap_future(ref.future()))
        self.buffer.add_pending(s)

    async def _round(self, step: int, round_: int) -> list[Group]:
        """Wait until every slice of the round came back fresh; replace dead workers."""
        import ray

        while not self.buffer.ready(step, round_):
            futures = {f: ref for ref, (_, _, f) in self.jobs.items()}
            assert futures, f"round {round_} of step {step} is pending with nothing in flight"
            done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
            for f in done:
                ref = futures[f]
                if ref not in self.jobs:  # resent already: its worker died earlier in this loop
                    continue
                worker, s, _ = self.jobs.pop(ref)
                what = "loading the policy" if s is None else f"slice {s.key}"
                try:
                    groups = f.result()
                except ray.exceptions.RayActorError as e:
                    self._replace(worker, e)
                    if s is not None:
                        self._send(s)
                        self.counts["slices_resent"] += 1
                    continue
                except ray.exceptions.RayTaskError as e:
                    raise RuntimeError(f"rollout worker {worker} failed on {what}") from e
                if s is not None and not self.buffer.put(s, groups):  # stale: sample it again
                    self._stale_resends += 1
                    if self._stale_resends > 4 * len(self.workers):
                        raise RuntimeError(
                            f"slice {s.key} came back stale again (policy "
                            f"{[g.policy_version for g in groups]}, step {s.step}, "
                            f"max_off_policy_steps {self.k}): a worker does not take new weights"
                        )
                    self._send(s)
        return self.buffer.take(step, round_)

    def _replace(self, worker: int, error: Exception) -> None:
        """A new actor for a dead worker, with the current weights; its other slices resent."""
        import ray

        if self.counts["workers_replaced"] >= 2 * len(self.workers) + 1:
            raise RuntimeError(
                f"rollout workers died {self.counts['workers_replaced'] + 1} times; the last: "
                f"worker {worker}: {error}"
            ) from error
        log.warning("rollout worker %d died (%s); replacing it", worker, type(error).__name__)
        ray.kill(self.workers[worker])
        self.workers[worker] = self._new_worker(worker)
        self._load(worker)
        self.counts["workers_replaced"] += 1
        for ref, (w, s, f) in list(self.jobs.items()):
            if w == worker:  # lost with the old actor
                del self.jobs[ref]
                f.cancel()
                if s is not None:
                    self._send(s, worker)
                    self.counts["slices_resent"] += 1


def _scope(run_dir: Path) -> str:
    from burnish.train.engines import run_scope

    return run_scope(run_dir)
