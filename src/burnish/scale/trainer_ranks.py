"""Data-parallel training ranks over `torch.distributed`: gloo on CPU, NCCL on GPU.

The trainer's own process is rank 0: it keeps the policy, the optimizer, the scheduler, the
checkpoints and the evaluations exactly as a single-process run does. Ranks 1..N-1 are Ray
actors that build the same policy and optimizer from the run's configuration, take rank 0's
weights and optimizer state once at the start (a resumed run's checkpoint included), and then
stay equal to it step after step: every rank receives the whole packed batch (a `TrainBatch`
record through the Ray object store), trains its rows of each minibatch with the whole
minibatch's loss normalisers, and the gradients are summed over the ranks before the clip and
the optimizer step (`burnish.train.step.Shard`). So N ranks take the step that one process takes
on the full batch, up to the order of float additions.

Why an explicit all-reduce and not the `DistributedDataParallel` wrapper: burnish's forward
does not call the model's `forward` (it runs the PEFT model's base model for hidden states and
applies the LM head in chunks, `burnish.models.logprobs`), and DDP's reducer only arms itself in
its own `forward`; its per-backward reduction also needs `no_sync` bookkeeping across
micro-batches. One flat all-reduce of the trainable gradients per optimizer step is what DDP's
buckets amount to for a LoRA adapter (a few MB), and sums instead of averaging, which the
step's normalisers need. FSDP2 (`fully_shard`) for full fine-tuning of models too big for one
GPU is not wired (docs/scale.md).
"""

from __future__ import annotations

import socket
from typing import Any

import torch

from burnish.config import RunConfig
from burnish.scale.rollout_workers import load_trainable, trainable_state
from burnish.train.step import Shard, train_on_batch
from burnish.types import TrainBatch

_OPS = {"sum": "SUM", "max": "MAX"}


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


def join(address: str, rank: int, world: int, backend: str) -> None:
    """Join the process group (blocks until every rank joined)."""
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=address, rank=rank, world_size=world)


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

    def join(self, address: str, backend: str) -> int:
        join(address, self.rank, self.world, backend)
        return self.rank

    def load(self, weights: dict, optimizer: dict, scheduler: dict) -> int:
        """Take rank 0's weights, optimizer and scheduler state."""
        load_trainable(self.policy, weights)
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        return self.rank

    def train(self, batch: TrainBatch) -> dict[str, float]:
        """This rank's part of one step (rank 0 runs its own at the same time)."""
        shard = Shard(self.rank, self.world, all_reduce)
        metrics = train_on_batch(
            self.policy, batch, self.plan.loss, self.optimizer, self.plan.step, shard
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
        self.world = s.trainer_workers
        self.backend = "nccl" if s.actor_gpus > 0 and torch.cuda.is_available() else "gloo"
        remote = ray.remote(num_cpus=s.actor_cpus, num_gpus=s.actor_gpus)(TrainerRank)
        data = config.model_dump(mode="json")
        self.ranks = [remote.remote(data, r, self.world) for r in range(1, self.world)]
        address = init_method(ray.util.get_node_ip_address())
        joins = [a.join.remote(address, self.backend) for a in self.ranks]
        join(address, 0, self.world, self.backend)
        ray.get(joins)

    def start(self, policy, optimizer, scheduler) -> None:
        """Make every rank equal to rank 0 (after a resume: the checkpoint's state)."""
        import ray

        refs = [ray.put(x) for x in (trainable_state(policy), optimizer.state_dict())]
        sched = scheduler.state_dict()
        ray.get([a.load.remote(refs[0], refs[1], sched) for a in self.ranks])

    def train(self, policy, batch: TrainBatch, loss, optimizer, settings) -> dict[str, float]:
        """One step on every rank; rank 0's metrics (the reduced ones, equal on every rank)."""
        import ray

        per_minibatch = batch.size // settings.minibatches
        if per_minibatch < self.world:
            raise ValueError(
                f"{batch.size} rows in {settings.minibatches} minibatch(es) cannot be shared by "
                f"{self.world} trainer ranks: every rank needs a row of each minibatch"
            )
        ref = ray.put(batch)
        others = [a.train.remote(ref) for a in self.ranks]
        metrics = train_on_batch(
            policy, batch, loss, optimizer, settings, Shard(0, self.world, all_reduce)
        )
        for m in ray.get(others):
            if abs(m["loss/total"] - metrics["loss/total"]) > 1e-6 * max(1.0, abs(m["loss/total"])):
                raise RuntimeError(f"trainer ranks disagree on the loss: {m} vs {metrics}")
        return metrics

    def close(self) -> None:
        import ray
        import torch.distributed as dist

        ray.get([a.leave.remote() for a in self.ranks])
        if dist.is_initialized():
            dist.destroy_process_group()
        for a in self.ranks:
            ray.kill(a)
