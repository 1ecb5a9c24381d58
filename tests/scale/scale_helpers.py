"""Shared settings of the scale tests."""


def scaled(*extra):
    """Overrides that place a run's actors on the 2-CPU test cluster: half a CPU each, so two
    rollout workers and a trainer rank fit."""
    return ["scale.actor_cpus=0.5", *extra]
