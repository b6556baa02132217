"""The teachers' ensemble of a run: its teacher weights (``ensemble_weights``) and its report rows.

``ensemble_weights`` is ``uniform`` (the paper's sum of rank importances), ``validation``
(weights fitted on the validation part from the converged teachers' recorded lists:
``knowledge/weights.py``; no teacher is re-scored and the test part is never read) or a list of
one non-negative weight per teacher. The weights scale each teacher's importances in the targets
T_u at every snapshot and in the observed lists P_u, and in the ensemble row of the report.
"""

import numpy as np
import torch
from recbole.trainer import Trainer

from recbole_hetcomp.data.split import make_loaders
from recbole_hetcomp.device import batch_users
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge import LIST_METRICS, integer_weights, select_weights
from recbole_hetcomp.model.ensemble_ranker import EnsembleRanker
from recbole_hetcomp.report import model_row

#: Units of weight handed out by the validation search (weights are multiples of 1/20).
SEARCH_STEPS = 20


def parse_valid_metric(valid_metric):
    """``Recall@50`` -> ('recall', 50); None when it is not a top-k list metric."""
    name, _, k = str(valid_metric).partition("@")
    if name.lower() not in LIST_METRICS or not k.isdigit():
        return None
    return name.lower(), int(k)


def check_weights_setting(config, n_teachers):
    """Refuse an ``ensemble_weights`` value that cannot be used (one line, before training)."""
    setting = config["ensemble_weights"]
    if isinstance(setting, (list, tuple)):
        if len(setting) != n_teachers:
            raise HetCompError(f"ensemble_weights lists {len(setting)} weights for "
                               f"{n_teachers} teachers {list(config['teachers'])}: give one "
                               "per teacher, in the same order")
        try:
            integer_weights(setting)
        except (ValueError, TypeError):
            raise HetCompError(f"ensemble_weights {list(setting)} must be non-negative numbers, "
                               "not all 0") from None
        return
    if setting not in ("uniform", "validation"):
        raise HetCompError(f"ensemble_weights must be uniform, validation or a list of one "
                           f"weight per teacher; got {setting!r}")
    if setting == "validation":
        parsed = parse_valid_metric(config["valid_metric"])
        if parsed is None:
            raise HetCompError(f"ensemble_weights: validation fits the weights on "
                               f"valid_metric, which must be one of Recall, NDCG, Hit, "
                               f"Precision, MRR at a cut-off (e.g. Recall@50); got "
                               f"{config['valid_metric']!r}: change it or set "
                               "ensemble_weights: uniform")


def converged_lists(trajectories):
    """(U, X, M) long: every teacher's converged (last snapshot) top-M list per user."""
    return torch.from_numpy(np.stack([t.rankings[-1].astype(np.int64) for t in trajectories],
                                     axis=1))


def choose_weights(config, split, trajectories, logger):
    """The integer teacher weights of the run (None = uniform) and what the choice saw.

    Returns
    -------
    weights : torch.Tensor or None
        (X,) int64.
    info : dict
        ``setting``, ``weights`` (normalised to sum 1, per teacher name) and, for
        ``validation``, the validation metric of the uniform, chosen and single-teacher
        ensembles.
    """
    names = [t.teacher for t in trajectories]
    setting = config["ensemble_weights"]
    info = {"setting": setting if isinstance(setting, str) else "given"}
    if setting == "uniform":
        return None, dict(info, weights={n: 1 / len(names) for n in names})
    if isinstance(setting, (list, tuple)):
        weights = integer_weights(setting)
    else:
        metric, k = parse_valid_metric(config["valid_metric"])
        if k > trajectories[0].rankings.shape[-1]:
            # still well defined: the ensemble's list is as long as its teachers' lists allow
            logger.warning(f"ensemble weights are fitted at {config['valid_metric']} on the "
                           f"teachers' top-{trajectories[0].rankings.shape[-1]} lists, shorter "
                           "than the cut-off")
        positives = split.valid.history_item_matrix()[0]            # (U, P) 0-padded
        weights, search = select_weights(
            converged_lists(trajectories), positives, metric, k, steps=SEARCH_STEPS,
            temperature=config["temperature"],
            batch_size=batch_users(config, "knowledge_batch_size", "ranking", split.n_items))
        info.update(metric=config["valid_metric"], uniform_valid=search["uniform"],
                    chosen_valid=search["chosen"], source=search["source"],
                    single_valid=dict(zip(names, search["single"])), path=search["path"])
        logger.info(f"ensemble weights fitted on validation {config['valid_metric']}: uniform "
                    f"{search['uniform']:.4f}, best single teacher "
                    f"{max(search['single']):.4f}, chosen {search['chosen']:.4f} "
                    f"({search['source']})")
    total = int(weights.sum())
    info["weights"] = {n: int(w) / total for n, w in zip(names, weights.tolist())}
    logger.info("ensemble weights: " + ", ".join(f"{n} {w:.2f}"
                                                  for n, w in info["weights"].items()))
    return weights, info


def evaluate_ensemble(config, split, trajectories, weights=None, parts=("test",)):
    """The ensemble ranking's metrics on each of ``parts`` ("valid", "test") by RecBole's
    evaluator (the popularity metrics included): {part: {metric: value}}. The ranker and the
    loaders are built once for all parts."""
    rankings = np.stack([t.rankings for t in trajectories]).astype(np.int64)
    model = EnsembleRanker(config, split.train, torch.from_numpy(rankings),
                           k=max(config["topk"]) * 2, temperature=config["temperature"],
                           batch_size=batch_users(config, "knowledge_batch_size", "ranking",
                                                  split.n_items),
                           weights=weights).to(config["device"])
    train_data, valid_data, test_data = make_loaders(config, split)
    trainer = Trainer(config, model)
    trainer.eval_collector.data_collect(train_data)  # item counts of the popularity metrics
    loaders = {"valid": valid_data, "test": test_data}
    return {part: {k: float(v) for k, v in
                   trainer.evaluate(loaders[part], load_best_model=False).items()}
            for part in parts}


def ensemble_row(config, split, trajectories, teacher_rows, weights=None, name=None):
    """Test metrics of the ensemble ranking, scored by RecBole's evaluator; serving cost = all
    teachers with a weight together."""
    test = evaluate_ensemble(config, split, trajectories, weights)["test"]
    used = [r for r, w in zip(teacher_rows, weights.tolist() if weights is not None
                              else [1] * len(teacher_rows)) if w > 0]
    name = name or f"Ensemble ({len(trajectories)} teachers)"
    return model_row(name, "ensemble", test, sum(r["n_params"] for r in used),
                     sum(r["inference_ms_per_1000_users"] for r in used),
                     sum(r["train_seconds"] for r in teacher_rows))
