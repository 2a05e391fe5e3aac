"""Learners: the DeepSpeed engine that trains the policy, the critic (PPO's value model), LR schedules, distributed
setup, checkpoints."""

from .checkpoint import CheckpointManager, latest_tag, load_checkpoint, save_checkpoint
from .critic import Critic, CriticConfig, CriticTrainer
from .dist import barrier, init_distributed, is_main_process, world_size
from .engine import LearnerConfig, LearnerEngine, seed_everything
from .schedules import constant_multiplier, cosine_multiplier, make_lr_lambda

__all__ = [
    "CheckpointManager",
    "Critic",
    "CriticConfig",
    "CriticTrainer",
    "LearnerConfig",
    "LearnerEngine",
    "barrier",
    "constant_multiplier",
    "cosine_multiplier",
    "init_distributed",
    "is_main_process",
    "latest_tag",
    "load_checkpoint",
    "make_lr_lambda",
    "save_checkpoint",
    "seed_everything",
    "world_size",
]
