"""Scale-out on Ray: rollout workers, judge workers, data-parallel trainer ranks, async
off-policy training with a staleness bound (docs/scale.md).

Nothing here is imported unless a run's `[scale]` section asks for workers, so burnish imports
and runs without Ray. The pieces:

- `buffer`: the work of a step as records (`Slice`: contiguous groups of one sampling round),
  the staleness rule and the checkpointable list of what is still pending (no Ray);
- `rollout_workers`: the Ray actor that samples and scores slices into `Group` records tagged
  with the policy version that sampled them; the judge actor;
- `trainer_ranks`: training ranks over `torch.distributed` (gloo on CPU, NCCL on GPU), the
  trainer's process being rank 0;
- `driver`: the group source the RL loop reads instead of `collect_groups`: dispatch, the
  pipeline of at most `max_off_policy_steps` steps ahead, adapter sync, worker replacement.
"""
