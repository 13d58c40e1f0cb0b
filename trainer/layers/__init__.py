"""Reusable, serialisable tf_keras layers (each has get_config and is registered)."""
from trainer import autograph_rules

autograph_rules.install()  # before any model is traced: see autograph_rules.py

from trainer.layers.dnn import DNN  # noqa: F401
from trainer.layers.heads import (AITMTransfer, BehaviorCalibrator, ConditionalProbability,  # noqa: F401
                                 ProbabilityProduct)
from trainer.layers.penalty import BatchL2  # noqa: F401
from trainer.layers.interactions import CrossNet, FMInteraction  # noqa: F401
from trainer.layers.moe import CGC, ExpertMix, Experts, Gate  # noqa: F401
from trainer.layers.task_networks import SequenceStep, TaskNetworks  # noqa: F401
from trainer.layers.domain import (DomainDNN, DomainEmbedding, DomainIndex, DomainTower,  # noqa: F401
                                   FeatureAttention, PartitionedNorm, PerDomainDense)
