"""``load_data_and_model``: RecBole's function of that name, for a model package.

RecBole's own unpickles a checkpoint holding the whole Config (code runs on load; torch >= 2.6
refuses it without ``weights_only=False``). Here the Config is rebuilt from the model card's
JSON keys, the dataset from its atomic files (``data.split``), and the weights are read with
``weights_only=True``.
"""

import os
from logging import getLogger

import numpy as np

from recbole_hetcomp.serving.package import (WEIGHTS, PackageError, read_card, read_weights,
                                             require_files)


def load_data_and_model(path, data_path=None):
    """(config, model, dataset, train_data, valid_data, test_data) of a package, as RecBole.

    Parameters
    ----------
    path : str
        The package directory.
    data_path : str, optional
        The directory that holds ``<dataset>/<dataset>.inter``, when the dataset is no longer
        where the model card says (the run's ``data_path``, made absolute).

    The dataset must give the split the model was trained on (its fingerprint is compared);
    the model is in evaluation mode.
    """
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.data.availability import required_inter_files
    from recbole_hetcomp.data.split import build_split, make_loaders
    from recbole_hetcomp.registry import get_model

    card = read_card(path)
    require_files(path, card, [WEIGHTS])
    state = read_weights(path)
    inherited = dict(card.get("config") or {})
    if data_path is not None:
        inherited["data_path"] = os.path.abspath(data_path)
    config = Config(model=card["model"], dataset=card["dataset"], inherited=inherited)
    missing = [f for f in required_inter_files(config) if not os.path.isfile(f)]
    if missing:
        # Checked here, not left to build_split: its advice (--data_path, or a download of a
        # fresh copy) is for a training run, not for rebuilding a model of this exact data.
        raise PackageError(f"the dataset '{card['dataset']}' this model was trained on is not "
                           f"at {config['data_path']} (no {os.path.basename(missing[0])}): pass "
                           "load_data_and_model(path, data_path=DIR) with the directory that "
                           f"holds {card['dataset']}/{os.path.basename(missing[0])}")
    split = build_split(config, getLogger())
    if split.fingerprint != card.get("split_fingerprint"):
        raise PackageError(f"the dataset '{card['dataset']}' at {config['data_path']} no longer "
                           "gives the split this model was trained on (fingerprints differ)")
    train_data, valid_data, test_data = make_loaders(config, split)
    model = get_model(card["model"])(config, split.train).to(config["device"])
    problem = load_plain_state(model, state, config["device"])
    if problem:
        raise PackageError(f"'{path}': its weights do not fit {card['model']} ({problem})")
    return config, model, split.dataset, train_data, valid_data, test_data


def load_plain_state(model, state, device):
    """Load a ``package.plain_state`` dict into ``model`` (then in evaluation mode).

    Returns None, or what does not fit (missing and unexpected keys) for the caller's message.
    """
    other = {k[len("__other__."):]: v for k, v in state.items() if k.startswith("__other__.")}
    weights = {k: v for k, v in state.items() if not k.startswith("__other__.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for key, value in other.items():
        current = getattr(model, key, None)
        # Give each cache back the type the model keeps it as (numpy or a tensor on its device).
        setattr(model, key, value.numpy() if isinstance(current, np.ndarray)
                else value.to(device))
    model.eval()
    return None


__all__ = ["load_data_and_model", "load_plain_state"]
