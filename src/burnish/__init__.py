"""burnish: reinforcement-learning fine-tuning of language models.

Train a LoRA adapter with a GRPO-family algorithm on your environments, watch for reward hacking
while it trains, measure forgetting, evaluate against the base and serve many adapters on one base.
"""

__version__ = "0.1.0"
