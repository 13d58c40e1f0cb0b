"""Synthetic impression / click / conversion logs with known true probabilities.

The pipeline never reads the ground truth; benchmarks and tests compare the
trained model's predictions against it (the oracle AUC).
"""
from loggen.world import SceneParams, World, WorldConfig  # noqa: F401
from loggen.generator import generate_day, write_days  # noqa: F401
