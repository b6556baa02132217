"""Model and trainer lookup: this package first, then RecBole (as RecBole-GNN does)."""

import importlib

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import ModelType

from recbole_hetcomp.errors import HetCompError


def plugin_models():
    """Names of the models this package adds (or overrides)."""
    module = importlib.import_module("recbole_hetcomp.model")
    return list(getattr(module, "__all__", []))


def get_model(name):
    """Return the model class called ``name``: this package's first, then RecBole's."""
    module = importlib.import_module("recbole_hetcomp.model")
    if name in getattr(module, "__all__", []):
        return getattr(module, name)
    try:
        model_class = recbole_get_model(name)
    except (ValueError, ImportError, AttributeError):
        raise HetCompError(
            f"unknown model '{name}': use one of this package's models "
            f"({', '.join(plugin_models())}) or a RecBole model name such as BPR, LightGCN, "
            "MultiVAE (names are case-sensitive)") from None
    if model_class.type not in (ModelType.GENERAL, ModelType.TRADITIONAL):
        raise HetCompError(f"model '{name}' is a {model_class.type.name.lower()} model; "
                           "recbole-hetcomp runs general (user-item) recommenders")
    return model_class


#: Models of this package that train with a trainer of their own (class in ``trainer/``).
TRAINERS = {"HetCompStudent": "HetCompTrainer", "RRD": "RankingDistillationTrainer",
            "DCD": "RankingDistillationTrainer"}


def get_trainer(model_type, model_name):
    """Return the trainer class for ``model_name``: this package's first, then RecBole's
    (``<Model>Trainer`` where RecBole has one, else its plain ``Trainer``)."""
    if model_name in TRAINERS:
        module = importlib.import_module("recbole_hetcomp.trainer")
        return getattr(module, TRAINERS[model_name])
    return recbole_get_trainer(model_type, model_name)
