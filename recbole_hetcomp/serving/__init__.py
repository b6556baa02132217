"""Serving the distilled model: packages, ``Recommender``, its CLI and HTTP endpoint, and
what a model costs to serve.

    from recbole_hetcomp.serving import Recommender
    rec = Recommender.load("saved/HetCompStudent-ml-100k-20261202-101500")
    rec.recommend(["196", "42"], k=10)        # per user: [(item token, score), ...]
"""

from recbole_hetcomp.serving.cost import inference_ms_per_1000_users, parameter_count
from recbole_hetcomp.serving.package import PackageError, read_card
from recbole_hetcomp.serving.rebuild import load_data_and_model
from recbole_hetcomp.serving.recommender import Recommendations, Recommender

__all__ = ["Recommender", "Recommendations", "PackageError", "load_data_and_model",
           "read_card", "inference_ms_per_1000_users", "parameter_count"]
