from callbacks.trajectory import TrajectoryRecorder

__all__ = ["TrajectoryRecorder"]
