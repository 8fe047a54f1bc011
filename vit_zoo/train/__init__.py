"""Training: strategies and the training jobs (digits demos)."""

from vit_zoo.train.strategies import KINDS, strategy

__all__ = ["KINDS", "strategy"]
