"""Trainers: best-state keeping, trajectory recording (teachers) and the HetComp trainer."""

from recbole_hetcomp.trainer.best_state import BestStateMixin
from recbole_hetcomp.trainer.hetcomp import HetCompTrainer
from recbole_hetcomp.trainer.ranking_distillation import RankingDistillationTrainer
from recbole_hetcomp.trainer.recording import TrajectoryMixin, make_trainer

__all__ = ["BestStateMixin", "HetCompTrainer", "RankingDistillationTrainer", "TrajectoryMixin",
           "make_trainer"]
