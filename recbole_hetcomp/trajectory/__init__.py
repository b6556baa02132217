"""Teacher training trajectories: the recorder (a training hook) and the on-disk store."""

from recbole_hetcomp.trajectory.recorder import TrajectoryRecorder, select_snapshots
from recbole_hetcomp.trajectory.store import Trajectory, TrajectoryStore, StoreError

__all__ = ["TrajectoryRecorder", "select_snapshots", "Trajectory", "TrajectoryStore",
           "StoreError"]
