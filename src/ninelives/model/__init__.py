"""Redundancy planning: ``ninelives model ARCH.yaml`` predicts the availability of an
architecture from its components, exactly and by simulation, and names its weakest link.

- :mod:`~ninelives.model.spec` and :mod:`~ninelives.model.load`: the file, its problems;
- :mod:`~ninelives.model.blocks`: the block tree, exact availability and importance;
- :mod:`~ninelives.model.simulate`: the Monte Carlo (NumPy);
- :mod:`~ninelives.model.report` and :mod:`~ninelives.model.plot`: table, JSON and SVG.
"""

from ninelives.model.blocks import Block, availability, importance
from ninelives.model.load import ArchError, load_arch, parse_arch
from ninelives.model.report import Prediction, predict
from ninelives.model.simulate import Simulated, simulate

__all__ = [
    "ArchError", "Block", "Prediction", "Simulated", "availability", "importance", "load_arch",
    "parse_arch", "predict", "simulate",
]
