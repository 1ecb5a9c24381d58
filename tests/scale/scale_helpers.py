"""Shared settings of the scale tests."""


def scaled(*extra):
    """Overrides that place a run's actors on the 2-CPU test cluster: half a CPU each, so two
    rollout workers and a trainer rank fit."""
    return ["scale.actor_cpus=0.5", *extra]


def rollout_counts(run_dir):
    """The run store's (step, group, sample) keys stored more than once, and rollouts per step."""
    from burnish.store import RunStore

    store = RunStore.open(run_dir / "run.db")
    try:
        sql = "SELECT step, grp, sample, COUNT(*) n FROM rollouts GROUP BY 1, 2, 3"
        dup = [tuple(r) for r in store.conn.execute(sql) if r["n"] > 1]
        per_step = dict(store.conn.execute("SELECT step, COUNT(*) FROM rollouts GROUP BY step"))
    finally:
        store.close()
    return dup, per_step


def moved_lora_policy(config):
    """The run's policy, optimizer and scheduler, with LoRA B moved off its zero start so that
    every LoRA weight has a gradient."""
    import torch

    from burnish.train.setup import build_optimizer, build_policy

    policy, _ = build_policy(config.model, config.lora, seed=config.train.seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for name, p in policy.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    optimizer, scheduler = build_optimizer(config.train, policy)
    return policy, optimizer, scheduler


def sharded_step(rank, world, address, config_data, batch, strategy, out):
    """One `train_on_batch` on rank `rank` of a gloo group with the `strategy` wrapper (run in
    a process of its own, `torch.multiprocessing.spawn`); rank 0 saves the full gradients, the
    updated weights and the metrics to `out`."""
    import torch
    import torch.distributed as dist

    from burnish.config import RunConfig
    from burnish.scale.data_parallel import wrap
    from burnish.scale.trainer_ranks import all_reduce, join
    from burnish.train.plan import RunPlan
    from burnish.train.setup import build_env, build_optimizer
    from burnish.train.step import Shard, train_on_batch

    config = RunConfig.model_validate(config_data)
    join(address, rank, world, "gloo", 120.0)
    policy, _, _ = moved_lora_policy(config)
    forward, accumulate = wrap(policy, strategy, world)
    optimizer, _ = build_optimizer(config.train, policy)  # over the (sharded) parameters
    plan = RunPlan.from_config(config, build_env(config.env))
    shard = Shard(rank, world, all_reduce, forward, accumulate)
    metrics = train_on_batch(policy, batch, plan.loss, optimizer, plan.step, shard)

    def full(t):
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    trainable = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    grads = {n: full(p.grad).clone() for n, p in trainable}
    weights = {n: full(p.detach()).clone() for n, p in trainable}
    if rank == 0:
        torch.save({"grads": grads, "weights": weights, "metrics": metrics}, out)
    dist.destroy_process_group()
