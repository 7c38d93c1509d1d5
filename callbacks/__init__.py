from callbacks.alignment import GradientAlignment
from callbacks.drift import L2Drift
from callbacks.efficiency import Efficiency
from callbacks.mlm import MaskedLMLoss
from callbacks.trajectory import TrajectoryRecorder

__all__ = ["Efficiency", "GradientAlignment", "L2Drift", "MaskedLMLoss", "TrajectoryRecorder"]
