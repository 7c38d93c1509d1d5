from callbacks.alignment import GradientAlignment
from callbacks.drift import L2Drift
from callbacks.mlm import MaskedLMLoss
from callbacks.trajectory import TrajectoryRecorder

__all__ = ["GradientAlignment", "L2Drift", "MaskedLMLoss", "TrajectoryRecorder"]
