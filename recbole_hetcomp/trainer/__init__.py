"""Trainers: teacher training with trajectory recording, and the HetComp distillation trainer."""

from recbole_hetcomp.trainer.teacher import BestStateMixin, TrajectoryMixin, make_trainer
from recbole_hetcomp.trainer.hetcomp import HetCompTrainer

__all__ = ["BestStateMixin", "HetCompTrainer", "TrajectoryMixin", "make_trainer"]
