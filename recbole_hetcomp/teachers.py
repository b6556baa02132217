"""Train a teacher with trajectory recording, or take it from the trajectory store."""

import os
import time

import torch
import yaml
from recbole.utils import set_color

import recbole
import recbole_hetcomp
from recbole_hetcomp.checks import check_fractions
from recbole_hetcomp.config import TRAINING_KEYS, Config, inherited_keys, properties_file
from recbole_hetcomp.device import describe, synchronize
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.training import train_model
from recbole_hetcomp.trajectory import StoreError, Trajectory, TrajectoryStore
from recbole_hetcomp.trajectory.store import settings_hash

def model_keys(model_name):
    """Keys of the model's default yaml files (RecBole's and this package's)."""
    keys = set()
    paths = [os.path.join(os.path.dirname(recbole.__file__), "properties", "model",
                          f"{model_name}.yaml"),
             properties_file("model", f"{model_name}.yaml")]
    for path in paths:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                keys.update((yaml.safe_load(f) or {}).keys())
    return sorted(keys)


def teacher_settings(config):
    """Everything that identifies a teacher's trajectory besides the split."""
    keys = sorted(set(model_keys(config["model"])) | set(TRAINING_KEYS))
    return {"model": config["model"], **{k: config[k] for k in keys}}


def teacher_config(run_config, teacher):
    """Config of ``teacher`` for a run: its own defaults, the run's shared keys
    (``config.SHARED_KEYS``) and the ``teacher_config`` overrides.

    The run's other keys (training and model keys, from any channel) belong to the model being
    run, the student; so do its config files, which are not read again here.
    """
    overrides = dict(run_config["teacher_config"] or {})
    unknown = [name for name in overrides if name != "default" and name not in
               run_config["teachers"]]
    if unknown:
        raise HetCompError(f"teacher_config names {', '.join(unknown)}, which "
                           f"{'is' if len(unknown) == 1 else 'are'} not in teachers "
                           f"{run_config['teachers']}")
    own = {**(overrides.get("default") or {}), **(overrides.get(teacher) or {})}
    get_model(teacher)  # a clear error for an unknown teacher before anything else
    # Both come typed from the run's Config: passed on as they are, never re-parsed.
    return Config(model=teacher, dataset=run_config["dataset"],
                  inherited={**inherited_keys(run_config), **own})


def store_path(config, split):
    store = TrajectoryStore(config["trajectory_dir"], config["trajectory_keep_aside"])
    return store, store.path_for(config["dataset"], split.fingerprint, config["model"],
                                 teacher_settings(config))


def load_teacher(config, split, logger):
    """The stored trajectory for this teacher, split and settings, or None (set aside if bad)."""
    store, path = store_path(config, split)
    for tmp in store.remove_leftovers(path):
        logger.warning(f"[{config['model']}] removed {tmp}, left by an interrupted write")
    if not store.exists(path):
        if os.path.isdir(path):  # a directory without its manifest (deleted, or never written)
            aside = store.set_aside(path, "no-manifest")
            logger.warning(set_color(f"refusing trajectory store {path}: it has no "
                                     f"manifest.json; moved to {aside} and retraining", "red"))
        return None
    try:
        trajectory = store.load(path, split.fingerprint, teacher_settings(config))
    except StoreError as exc:
        if config["trajectory_on_error"] == "raise":
            raise
        aside = store.set_aside(path, "refused")
        logger.warning(set_color(f"refusing trajectory store: {exc}; moved to {aside} and "
                                 "retraining", "red"))
        return None
    logger.info(set_color(f"[{config['model']}] reusing recorded trajectory {path} "
                          f"(snapshot epochs {trajectory.manifest['snapshot_epochs']})", "green"))
    return trajectory


def record_teacher(config, split, logger):
    """Train a teacher with recording and write its trajectory to the store."""
    return store_trajectory(config, split, train_teacher(config, split, logger), logger)


def train_teacher(config, split, logger):
    """Train a teacher with recording; returns its trajectory, not yet stored, with the
    trained model in ``trajectory.model``.

    Apart from ``store_trajectory`` so that a Ray worker can train and hand the trajectory
    back to the driver, which alone writes the store (``parallel.py``).
    """
    check_fractions(config)
    fractions = list(config["trajectory_fractions"])
    model, trainer, result = train_model(config, split, logger, record=True)
    recorder = trainer.recorder
    start = time.perf_counter()
    trainer.restore_best()
    observed = trainer.best_observed
    if observed is None:  # no full-sort validation ran: score every user once
        observed = recorder.rank_all(observed=True)
    chosen, rankings = recorder.snapshots(trainer.best_epoch, fractions)
    synchronize(config["device"])
    result["record_seconds"] += time.perf_counter() - start
    settings = teacher_settings(config)
    manifest = {
        "teacher": config["model"],
        "dataset": config["dataset"],
        "settings": settings,
        "settings_hash": settings_hash(settings),
        "seed": config["seed"],
        "split_fingerprint": split.fingerprint,
        "n_users": split.n_users,
        "n_items": split.n_items,
        "M": recorder.top_m,
        "C": len(chosen),
        "fractions": fractions,
        "snapshot_epochs": [recorder.epochs[i] for i in chosen],
        "snapshot_valid_scores": [recorder.scores[i] for i in chosen],
        "evaluations": [{"epoch": e, "valid_score": s}
                        for e, s in zip(recorder.epochs, recorder.scores)],
        # Not part of the store's key (the same lists are expected on every device: ties are
        # broken by item id), but float sums differ in their last bits between devices.
        "device": describe(config["device"]),
        "versions": {"recbole_hetcomp": recbole_hetcomp.__version__,
                     "recbole": recbole.__version__, "torch": torch.__version__},
        **{k: result[k] for k in ("best_epoch", "best_valid_result", "test_result",
                                  "train_seconds", "record_seconds", "n_params",
                                  "inference_ms_per_1000_users")},
    }
    trajectory = Trajectory(rankings, observed, manifest)
    trajectory.model = model
    return trajectory


def store_trajectory(config, split, trajectory, logger):
    """Write a freshly trained teacher's trajectory to the store (atomically); returns it."""
    store, path = store_path(config, split)
    store.save(path, trajectory)
    manifest = trajectory.manifest
    logger.info(set_color(f"[{config['model']}] trajectory stored in {path} (snapshot epochs "
                          f"{manifest['snapshot_epochs']}, recording took "
                          f"{manifest['record_seconds']:.2f}s of "
                          f"{manifest['train_seconds']:.1f}s)", "green"))
    return trajectory


def teacher_trajectory(config, split, logger):
    """Stored trajectory if valid, else train and record it."""
    return load_teacher(config, split, logger) or record_teacher(config, split, logger)
