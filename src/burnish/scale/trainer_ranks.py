"""Data-parallel training ranks over `torch.distributed`: gloo on CPU, NCCL on GPU.

The trainer's own process is rank 0: it keeps the policy, the optimizer, the scheduler, the
checkpoints and the evaluations exactly as a single-process run does. Ranks 1..N-1 are Ray
actors that build the same policy and optimizer from the run's configuration, take rank 0's
weights and optimizer state once at the start (a resumed run's checkpoint included), and then
stay equal to it step after step: every rank receives the whole packed batch (a `TrainBatch`
record through the Ray object store), trains its rows of each minibatch with the whole
minibatch's loss normalisers, and the gradients are summed over the ranks before the clip and
the optimizer step. So N ranks take the step that one process takes on the full batch, up to
the order of float additions.

The gradient exchange is `DistributedDataParallel` (`scale.trainer_strategy = "ddp"`, the only
strategy a run takes) around a `StepForward` of the policy, with a communication hook that sums
instead of averaging and `no_sync` on every micro-batch of an optimizer step but the last
(`burnish.scale.data_parallel`); the metrics' sums go through `torch.distributed.all_reduce`.
FSDP2 (`"fsdp2"`) is refused at load (`ScaleConfig`): it shards the parameters and the
optimizer state over the ranks, while rank 0 samples, evaluates and checkpoints alone with the
full weights and optimizer (docs/scale.md §5); its wrapper exists and is tested for the step.

Faults: a rank's process that dies breaks the collective. Rank 0 names the dead rank (Ray's
`RayActorError` for its call) and stops the run with `TrainerRankDied`; the checkpoints written
so far are untouched and `--resume` continues from the last one. `scale.collective_timeout_s`
bounds the wait in a collective whose peer hangs without dying.
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

import torch

from burnish.config import RunConfig
from burnish.scale.data_parallel import wrap
from burnish.scale.rollout_workers import load_trainable, trainable_state
from burnish.train.step import Shard, train_on_batch
from burnish.types import TrainBatch

_OPS = {"sum": "SUM", "max": "MAX"}
_GRACE_S = 10.0
"""How long rank 0, its own part failed, waits for the other ranks' calls to say which died."""


class TrainerRankDied(RuntimeError):
    """A trainer rank's process died: the run stops (and resumes from its last checkpoint)."""


def all_reduce(tensor: torch.Tensor, op: str) -> None:
    """`torch.distributed.all_reduce` in place (a CPU tensor goes through the GPU for NCCL)."""
    import torch.distributed as dist

    reduce_op = getattr(dist.ReduceOp, _OPS[op])
    if dist.get_backend() == "nccl" and not tensor.is_cuda:  # metric sums live on the CPU
        on_device = tensor.cuda()
        dist.all_reduce(on_device, op=reduce_op)
        tensor.copy_(on_device.cpu())
    else:
        dist.all_reduce(tensor, op=reduce_op)


def init_method(host: str) -> str:
    """A `tcp://host:port` rendezvous on a free port of this machine."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return f"tcp://{host}:{port}"


def join(address: str, rank: int, world: int, backend: str, timeout_s: float) -> None:
    """Join the process group (blocks until every rank joined); collectives time out after
    `timeout_s`."""
    import torch.distributed as dist

    dist.init_process_group(
        backend,
        init_method=address,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


class TrainerRank:
    """Rank `rank` > 0 of the data-parallel trainer; wrapped by `ray.remote`."""

    def __init__(self, config: dict[str, Any], rank: int, world: int) -> None:
        from burnish.models import set_threads
        from burnish.train.plan import RunPlan
        from burnish.train.setup import build_env, build_optimizer, build_policy

        c = RunConfig.model_validate(config)
        set_threads(c.model.threads)
        self.policy, _ = build_policy(c.model, c.lora, seed=c.train.seed)
        self.optimizer, self.scheduler = build_optimizer(c.train, self.policy)
        self.plan = RunPlan.from_config(c, build_env(c.env))
        self.rank, self.world = rank, world
        self.strategy, self.timeout_s = c.scale.trainer_strategy, c.scale.collective_timeout_s
        self.shard: Shard | None = None

    def join(self, address: str, backend: str) -> int:
        join(address, self.rank, self.world, backend, self.timeout_s)
        return self.rank

    def load(self, weights: dict, optimizer: dict, scheduler: dict) -> int:
        """Take rank 0's weights, optimizer and scheduler state, then wrap the policy for the
        gradient exchange (a collective: rank 0 wraps its own at the same time)."""
        load_trainable(self.policy, weights)
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        forward, accumulate = wrap(self.policy, self.strategy, self.world)
        self.shard = Shard(self.rank, self.world, all_reduce, forward, accumulate)
        return self.rank

    def train(self, batch: TrainBatch) -> dict[str, float]:
        """This rank's part of one step (rank 0 runs its own at the same time)."""
        assert self.shard is not None, f"rank {self.rank} trains before load()"
        metrics = train_on_batch(
            self.policy, batch, self.plan.loss, self.optimizer, self.plan.step, self.shard
        )
        self.scheduler.step()
        return metrics

    def weights(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.policy)

    def leave(self) -> int:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        return self.rank


class TrainerRanks:
    """Rank 0 (this process) and the Ray actors of ranks 1..N-1 (see the module docstring)."""

    def __init__(self, config: RunConfig) -> None:
        import ray

        s = config.scale
        self.world, self.strategy = s.trainer_workers, s.trainer_strategy
        self.backend = "nccl" if s.actor_gpus > 0 and torch.cuda.is_available() else "gloo"
        remote = ray.remote(num_cpus=s.actor_cpus, num_gpus=s.actor_gpus)(TrainerRank)
        data = config.model_dump(mode="json")
        self.ranks = [remote.remote(data, r, self.world) for r in range(1, self.world)]
        self.shard: Shard | None = None
        address = init_method(ray.util.get_node_ip_address())
        joins = [a.join.remote(address, self.backend) for a in self.ranks]
        join(address, 0, self.world, self.backend, s.collective_timeout_s)
        self._wait(joins, "joining the process group")

    def start(self, policy, optimizer, scheduler) -> None:
        """Make every rank equal to rank 0 (after a resume: the checkpoint's state), and wrap
        every rank's policy for the gradient exchange."""
        import ray

        refs = [ray.put(x) for x in (trainable_state(policy), optimizer.state_dict())]
        sched = scheduler.state_dict()
        loads = [a.load.remote(refs[0], refs[1], sched) for a in self.ranks]
        forward, accumulate = wrap(policy, self.strategy, self.world)
        self.shard = Shard(0, self.world, all_reduce, forward, accumulate)
        self._wait(loads, "loading rank 0's state")

    def train(self, policy, batch: TrainBatch, loss, optimizer, settings) -> dict[str, float]:
        """One step on every rank; rank 0's metrics (the reduced ones, equal on every rank)."""
        import ray

        assert self.shard is not None, "TrainerRanks.train before start()"
        per_minibatch = batch.size // settings.minibatches
        if per_minibatch < self.world:
            raise ValueError(
                f"{batch.size} rows in {settings.minibatches} minibatch(es) cannot be shared by "
                f"{self.world} trainer ranks: every rank needs a row of each minibatch"
            )
        ref = ray.put(batch)
        others = [a.train.remote(ref) for a in self.ranks]
        try:
            metrics = train_on_batch(policy, batch, loss, optimizer, settings, self.shard)
        except Exception as e:  # a collective broken by a dead rank: say which died
            self._raise_if_dead(others, e)
            raise
        for m in self._wait(others, "a training step"):
            if abs(m["loss/total"] - metrics["loss/total"]) > 1e-6 * max(1.0, abs(m["loss/total"])):
                raise RuntimeError(f"trainer ranks disagree on the loss: {m} vs {metrics}")
        return metrics

    def _wait(self, refs: list, what: str) -> list:
        """`ray.get` of one call per rank 1..N-1; a dead rank raises `TrainerRankDied`."""
        import ray

        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as e:
            self._raise_if_dead(refs, e, what)
            raise

    def _raise_if_dead(self, refs: list, cause: BaseException, what: str = "a training step"):
        """Raise `TrainerRankDied` for the first rank whose call failed because it died."""
        import ray

        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_GRACE_S)
        for rank, ref in enumerate(refs, start=1):
            if ref not in ready:
                continue
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as e:
                raise TrainerRankDied(
                    f"trainer rank {rank} of {self.world} died during {what} "
                    f"({type(e).__name__}); the run stops here. The checkpoints written so far "
                    "are intact: run it again with --resume (resume=True) to continue from the "
                    "last one"
                ) from cause
            except Exception:  # noqa: S112 - that rank's own failure: look at the others
                continue

    def close(self) -> None:
        """Leave the process group on every rank still alive, then end the rank actors."""
        import ray
        import torch.distributed as dist

        leaves = [a.leave.remote() for a in self.ranks]
        ray.wait(leaves, num_returns=len(leaves), timeout=_GRACE_S)
        if dist.is_initialized():
            dist.destroy_process_group()
        for a in self.ranks:
            ray.kill(a)
