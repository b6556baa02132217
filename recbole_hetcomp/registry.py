"""Model and trainer lookup: this package first, then RecBole (as RecBole-GNN does)."""

import importlib

import torch
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
    # RecBole looks a name up package by package, importing each package whole on the way;
    # its sequential package imports SINE, which switches autograd's anomaly detection on for
    # the whole process (a NaN check after every backward operation: a host sync each on a
    # GPU, slower training everywhere). Any name that is not a general model gets that far
    # (and is refused below): the anomaly mode is put back as it was.
    anomaly = torch.is_anomaly_enabled()
    try:
        model_class = recbole_get_model(name)
    except (ValueError, ImportError, AttributeError):
        raise HetCompError(
            f"unknown model '{name}': use one of this package's models "
            f"({', '.join(plugin_models())}) or a RecBole model name such as BPR, LightGCN, "
            "MultiVAE (names are case-sensitive)") from None
    finally:
        torch.autograd.set_detect_anomaly(anomaly)
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
