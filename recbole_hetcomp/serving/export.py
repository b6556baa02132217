"""Write a trained model as a package (``package.py``) with its model card."""

import datetime
import json
import os
import platform

import recbole
import torch

import recbole_hetcomp
from recbole_hetcomp.config import TRAINING_KEYS
from recbole_hetcomp.serving import index as faiss_index
from recbole_hetcomp.serving.cost import parameter_count
from recbole_hetcomp.serving.factors import can_factorise, serving_factors
from recbole_hetcomp.serving.package import remove_stale_stages, write_package


def check_export_settings(config):
    """Stop before any training when the export keys cannot be honoured."""
    if config["export_index"]:
        faiss_index.require_faiss()


def export_model(model, config, split, logger, row=None, test_result=None, extra=None):
    """Write ``model`` (trained under ``config`` on ``split``) as a package under
    ``config['checkpoint_dir']``; returns the package's path.

    The factorised serving form (and, with ``export_index``, a faiss index) is included when
    the model has one; every package holds the weights that ``load_data_and_model`` rebuilds
    the model from.
    """
    factors = index_bytes = None
    if can_factorise(model):
        factors = serving_factors(model)
        if config["export_index"]:
            index_bytes = faiss_index.build_index_bytes(factors[1].numpy(),
                                                        None if factors[2] is None
                                                        else factors[2].numpy())
    elif config["export_index"]:
        logger.warning(f"{config['model']} has no factorised form: its package has no index")
    card = model_card(model, config, split, factors, row, test_result, extra)
    for stage in remove_stale_stages(config["checkpoint_dir"]):
        logger.warning(f"removed {stage}, left by an interrupted package write")
    path = write_package(config["checkpoint_dir"], model, split.dataset, card, factors,
                         index_bytes)
    # the CLIs serve only the factorised models: say so where it is not one
    note = "" if factors is not None else (
        f" ({config['model']} has no factorised form: hetcomp-recommend and hetcomp-serve do "
        "not serve it; load it with recbole_hetcomp.serving.load_data_and_model)")
    logger.info(f"model package written to {path}{note}")
    return path


def model_card(model, config, split, factors, row, test_result, extra):
    from recbole_hetcomp.teachers import model_keys

    resolved_keys = sorted(set(model_keys(config["model"])) | set(TRAINING_KEYS))
    card = {
        "model": config["model"],
        "dataset": config["dataset"],
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seed": config["seed"],
        "sizes": {"n_users": split.n_users, "n_items": split.n_items,
                  "embedding_size": config["embedding_size"],
                  "n_params": parameter_count(model)},
        "serving": {
            "factorised": factors is not None,
            "factor_dim": None if factors is None else int(factors[0].shape[1]),
            "item_bias": factors is not None and factors[2] is not None,
            "user_bias": factors is not None and factors[3] is not None,
            "index": "faiss IndexFlatIP" if config["export_index"] and factors is not None
                     else None,
        },
        "config": rebuild_config(config),
        "resolved": {k: _json_safe(config[k]) for k in resolved_keys},
        "test_result": test_result,
        "report_row": row,
        "split_fingerprint": split.fingerprint,
        "fields": {"user": split.dataset.uid_field, "item": split.dataset.iid_field},
        "versions": {"recbole_hetcomp": recbole_hetcomp.__version__,
                     "recbole": recbole.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device_trained_on": str(config["device"]),
    }
    card.update(extra or {})
    return card


def rebuild_config(config):
    """The user-set keys of ``config`` (what ``load_data_and_model`` passes to Config, typed).

    Only keys whose values survive JSON are kept; a relative ``data_path`` is made absolute so
    the package rebuilds from any working directory.
    """
    given = dict(config.external_config_dict)
    given.pop("config_files", None)
    out = {}
    for key, value in given.items():
        safe = _json_safe(value)
        if safe is not _UNSAFE:
            out[key] = safe
    if isinstance(out.get("data_path"), str):
        out["data_path"] = os.path.abspath(out["data_path"])
    out["seed"] = config["seed"]
    return out


_UNSAFE = object()


def _json_safe(value):
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return _UNSAFE
    back = json.loads(text)
    return back if back == value or isinstance(value, tuple) else _UNSAFE
