"""The embedded default run of `burnish demo`: burnish-tiny + arithmetic + DAPO + LoRA on CPU."""

DEMO_CONFIG = """
[model]
name = "burnish-tiny"
threads = 2

[lora]
rank = 16
alpha = 32.0

[env]
name = "arithmetic"
max_turns = 1

[algorithm]
loss = "dapo"

[rollout]
prompts_per_step = 8
group_size = 8
max_new_tokens = 12

[train]
steps = 150
lr = 2e-3
checkpoint_every = 50

[eval]
every = 50
n_tasks = 200
samples = 4
"""
