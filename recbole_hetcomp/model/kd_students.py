"""Same-size students trained by other ranking-distillation methods, for the report's baselines.

- ``RRD``: relaxed ranking distillation (Kang, Hwang, Kweon, Yu, "DE-RRD: A Knowledge
  Distillation Framework for Recommender System", CIKM 2020).
- ``DCD``: dual correction distillation (Lee and Kim, "Dual Correction Strategy for Ranking
  Distillation in Top-N Recommender System", CIKM 2021).

Both are the HetComp student's model (matrix factorisation of the same size); what differs is
the loss, in ``trainer/ranking_distillation.py`` (formulas: ``knowledge/kd_baselines.py``), and
the teacher: the run's ensemble ranking of the converged teachers, the same knowledge HetComp
ends on. They train inside a pipeline run (``--distillation_baselines=[RRD,DCD]``), which holds
that ensemble.
"""

from recbole_hetcomp.model.hetcomp_student import HetCompStudent


class RRD(HetCompStudent):
    """Matrix factorisation trained with relaxed ranking distillation from the ensemble."""


class DCD(HetCompStudent):
    """Matrix factorisation trained with dual correction distillation from the ensemble."""
