"""Train and test one model on the run's split: the one path for teachers, the same-size
baseline, the HetComp student and single-model runs."""

import time

from recbole.utils import init_seed

from recbole_hetcomp.data.split import make_loaders
from recbole_hetcomp.device import batch_users, synchronize
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.serving import inference_ms_per_1000_users, parameter_count
from recbole_hetcomp.trainer import make_trainer
from recbole_hetcomp.trajectory import TrajectoryRecorder


def train_model(config, split, logger, record=False, knowledge=None):
    """Train ``config['model']`` on ``split`` and test its best validation state.

    Parameters
    ----------
    config : Config
        The model's own Config (its seed, budget and keys).
    split : Split
        The run's shared split.
    logger : logging.Logger
    record : bool
        Record the model's trajectory at every validation (teachers).
    knowledge : KnowledgeSet, optional
        The ensemble knowledge a distillation trainer learns from (the student).

    Returns
    -------
    (model, trainer, result)
        ``result`` holds ``model``, ``best_valid_score``, ``best_valid_result``,
        ``test_result`` (metric -> float), ``best_epoch``, ``valid_history``,
        ``train_seconds``, ``record_seconds``, ``n_params`` and
        ``inference_ms_per_1000_users``.
    """
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = make_loaders(config, split)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, split.train).to(config["device"])
    logger.info(model)
    recorder = None
    if record:
        recorder = TrajectoryRecorder(
            model, split.train, config["trajectory_topk"],
            batch_users(config, "trajectory_batch_size", "ranking", split.n_items),
            device=config["device"])
    trainer = make_trainer(config, model, recorder)
    if knowledge is not None:
        trainer.set_knowledge(knowledge)
    synchronize(config["device"])
    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=config["show_progress"])
    if recorder is not None and not recorder.epochs:  # no validation ran: record the end state
        trainer._save_checkpoint(config["epochs"] - 1, verbose=False)
        recorder.record(config["epochs"] - 1, 0.0, recorder.rank_all())
    synchronize(config["device"])  # queued GPU work belongs to training, not to the test
    train_seconds = time.perf_counter() - start
    test_result = trainer.evaluate(test_data, load_best_model=True,
                                   show_progress=config["show_progress"])
    result = {
        "model": config["model"],
        "best_valid_score": float(best_valid_score),
        "best_valid_result": _plain(best_valid_result),
        "test_result": _plain(test_result),
        "best_epoch": trainer.best_epoch,
        "valid_history": trainer.valid_history,
        "train_seconds": train_seconds,
        "record_seconds": getattr(trainer, "record_seconds", 0.0),
        "n_params": parameter_count(model),
        "inference_ms_per_1000_users": inference_ms_per_1000_users(
            model, split.dataset.uid_field, split.n_users),
    }
    return model, trainer, result


def _plain(result):
    return {k: float(v) for k, v in (result or {}).items()}
