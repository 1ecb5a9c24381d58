"""The gradient exchange of data-parallel trainer ranks: DDP, or FSDP2 where a run allows it.

Both wrap a `burnish.train.step.StepForward` of the policy rather than the policy itself:
burnish's forward runs the PEFT model's body and applies the LM head in chunks, never the
policy's own `forward`, and DDP arms its reducer (FSDP2 gathers its parameters) in the `forward`
of the module it wraps. `train_on_batch` runs every micro-batch of an optimizer step but the
last under `accumulate` (DDP's `no_sync`), so the gradients are reduced once per optimizer step.

Departures from the wrappers' defaults:
- **Sum, not mean.** The step's loss normalisers already divide by the whole minibatch's token
  and sequence counts, so the ranks' gradients must be added. DDP: a communication hook that
  all-reduces each bucket with SUM and does not divide by the world size (`_sum_hook`); FSDP2:
  a gradient divide factor of 1.
- **No initial broadcast** (DDP `init_sync=False`): the ranks already hold rank 0's weights
  (`TrainerRanks.start`), and the frozen base model is built identically from the run's
  configuration, so broadcasting every parameter would only move the base model around.
- **No buffer broadcast** (`forward_sync_buffers=False`): the policy's buffers (rotary
  frequencies) are constants.
Only parameters with `requires_grad` (the LoRA adapter, or every weight under full fine-tuning)
are reduced: DDP and FSDP2 both skip frozen ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from burnish.train.step import StepForward

STRATEGIES = ("ddp", "fsdp2")


def _sum_hook(state: object, bucket):
    """DDP communication hook: the bucket's gradients summed over the ranks (no division).

    Returns a `torch.futures.Future[torch.Tensor]` (not annotated: DDP compares the annotation
    with the type itself, and this module's annotations are strings)."""
    import torch.distributed as dist

    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_ddp(policy: torch.nn.Module) -> tuple[torch.nn.Module, Callable]:
    """`DistributedDataParallel` around `StepForward(policy)`, summing gradients; returns the
    module and its accumulate context (`no_sync`)."""
    from torch.nn.parallel import DistributedDataParallel

    module = DistributedDataParallel(
        StepForward(policy), device_ids=None, init_sync=False, forward_sync_buffers=False
    )
    module.register_comm_hook(None, _sum_hook)
    return module, module.no_sync


def wrap_fsdp2(policy: torch.nn.Module, world: int) -> tuple[torch.nn.Module, Callable]:
    """`fully_shard` (FSDP2) of every decoder layer and then of `StepForward(policy)`, summing
    gradients (a divide factor of 1 on every sharded module); returns the module and its
    accumulate context. Build the optimizer after this call, over the sharded parameters.

    The policy's parameters become DTensor shards of this rank (their `.grad` too): the policy
    can no longer run alone (generate, evaluate, save) until gathered.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    device = next(policy.parameters()).device.type
    mesh = init_device_mesh(device, (world,))
    for layer in policy.modules():
        if type(layer).__name__.endswith("DecoderLayer"):
            fully_shard(layer, mesh=mesh)
    module = fully_shard(StepForward(policy), mesh=mesh)
    for part in module.modules():  # each layer's group reduces on its own: sum in every one
        if isinstance(part, FSDPModule):
            part.set_gradient_divide_factor(1.0)
            part.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM

    @contextlib.contextmanager
    def accumulate() -> Iterator[None]:
        module.set_requires_gradient_sync(False, recurse=True)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True, recurse=True)

    return module, accumulate


def wrap(policy: torch.nn.Module, strategy: str, world: int) -> tuple[torch.nn.Module, Callable]:
    """The step's forward module and accumulate context for `strategy` ("ddp" or "fsdp2"); a
    collective: every rank calls it at the same point."""
    if strategy == "ddp":
        return wrap_ddp(policy)
    if strategy == "fsdp2":
        return wrap_fsdp2(policy, world)
    raise ValueError(f"trainer strategy {strategy!r}: expected one of {STRATEGIES}")
