"""The HetComp pipeline behind ``--model=HetCompStudent``.

one split -> each teacher trained with trajectory recording (or taken from the store) ->
knowledge -> student (and a same-size baseline trained without distillation), per seed ->
test evaluation of teachers, ensemble, baseline and student -> report.
"""

import copy
import time

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_hetcomp.checks import baseline_rates
from recbole_hetcomp.config import Config, inherited_keys
from recbole_hetcomp.data.split import make_loaders
from recbole_hetcomp.device import batch_users
from recbole_hetcomp.model.ensemble_ranker import EnsembleRanker
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.report import (format_metrics, model_row, seeded_row, teacher_row,
                                    write_report)
from recbole_hetcomp.serving.export import check_export_settings, export_model
from recbole_hetcomp.teachers import teacher_config, teacher_trajectory
from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet
from recbole_hetcomp.training import train_model


class Stages:
    """Log each stage with the time elapsed since the run started."""

    def __init__(self, logger):
        self.logger, self.start = logger, time.perf_counter()

    def __call__(self, text):
        elapsed = time.perf_counter() - self.start
        self.logger.info(set_color(f"[HetComp {elapsed:7.1f}s] ", "blue") + text)


def run_pipeline(config, split, logger):
    """Run the whole pipeline; returns the report dict (rows, histories, paths)."""
    stage = Stages(logger)
    teachers = list(config["teachers"] or [])
    if not teachers:
        raise HetCompError("no teachers configured: set teachers, e.g. [BPR, CML, MultiVAE]")
    check_export_settings(config)
    trajectories, packages = [], {}
    for index, name in enumerate(teachers, 1):
        stage(f"teacher {index}/{len(teachers)}: {name}")
        tconfig = teacher_config(config, name)
        trajectory = teacher_trajectory(tconfig, split, logger)
        if config["export_teachers"]:
            packages[name] = _export_teacher(tconfig, split, trajectory, logger)
        trajectory.model = None  # teachers are not kept in memory
        trajectories.append(trajectory)

    stage("ensemble knowledge")
    history = split.train.history_item_matrix()[0]
    rows = [teacher_row(t.manifest) for t in trajectories]
    rows.append(_ensemble_row(config, split, trajectories, rows))

    seeds = list(config["seeds"] or [config["seed"]])
    students, baselines, runs = [], [], []
    best_student = best_baseline = None  # (result, model, config) of the best seed on valid
    for seed in seeds:
        stage(f"student HetCompStudent, seed {seed}")
        student, run, model, sconfig = train_student(config, split, trajectories, history,
                                                     seed, logger)
        _log_test("HetCompStudent", seed, student, logger)
        students.append(student)
        runs.append(run)
        best_student = _better(best_student, (student, model, sconfig))
        if config["baseline"]:
            stage(f"baseline {config['baseline']} (embedding_size "
                  f"{config['embedding_size']}, no distillation), seed {seed}")
            baseline, bmodel, bconfig = train_baseline(config, split, seed, logger)
            baselines.append(baseline)
            if config["export_teachers"]:
                best_baseline = _better(best_baseline, (baseline, bmodel, bconfig))
            _log_test(config["baseline"], seed, baselines[-1], logger)
            run["baseline_valid_history"] = baselines[-1].pop("valid_history")
            run["baseline_learning_rate"] = baselines[-1]["learning_rate"]
            run["baseline_learning_rate_search"] = baselines[-1].pop("learning_rate_search")
    if baselines:
        rows.append(_seeded_row(f"{config['baseline']} (same size)", baselines, "baseline"))
        if best_baseline:
            packages["baseline"] = _export_best(best_baseline, split, rows[-1], logger)
    rows.append(_seeded_row("HetCompStudent", students, "student"))
    if config["export_model"]:
        stage("model package")
        packages["student"] = _export_best(best_student, split, rows[-1], logger)
    stage("report")
    report = write_report(config, split, rows, runs, logger, packages)
    stage("done")
    return report


def train_student(config, split, trajectories, history, seed, logger):
    """Distil the knowledge into a fresh student with ``seed``.

    Returns (result, histories, model in its best validation state, the student's config)."""
    config = copy.deepcopy(config)
    config["seed"] = seed
    knowledge = KnowledgeSet(trajectories, history, split.n_items, config["hetcomp_k"],
                             config["hetcomp_l"], config["temperature"],
                             batch_users(config, "knowledge_batch_size", "ranking",
                                         split.n_items), config["device"])
    model, trainer, result = train_model(config, split, logger, knowledge=knowledge)
    result["seed"] = seed
    run = {"seed": seed, "kc_history": trainer.kc_history,
           "valid_history": trainer.valid_history}
    return result, run, model, config


def baseline_config(config, seed, learning_rate):
    """Config of the same-size baseline: the run's shared keys, the student's size and budget.

    Embedding size, epochs and evaluation schedule are the student's, so the comparison is at
    equal size and budget; everything else is the baseline model's own default.
    """
    inherited = inherited_keys(config)
    inherited.update(embedding_size=config["embedding_size"], epochs=config["epochs"],
                     eval_step=config["eval_step"], stopping_step=config["stopping_step"],
                     seed=seed, learning_rate=learning_rate)
    return Config(model=config["baseline"], dataset=config["dataset"], inherited=inherited)


def train_baseline(config, split, seed, logger):
    """The baseline model with the student's size and training budget, no distillation.

    Each learning rate of ``baseline_learning_rates`` (default: the student's) gets the full
    budget; the one with the best validation score is kept, so the student is compared with a
    tuned model rather than one trained at a rate chosen for distillation. Returns (result,
    model, config) of that rate.
    """
    rates = baseline_rates(config)
    best, search, kept = None, [], None
    for rate in rates:
        bconfig = baseline_config(config, seed, rate)
        model, _, result = train_model(bconfig, split, logger)
        search.append({"learning_rate": rate, "best_valid_score": result["best_valid_score"],
                       "train_seconds": result["train_seconds"]})
        if len(rates) > 1:
            logger.info(f"{config['baseline']} learning_rate {rate}: best valid "
                        f"{config['valid_metric']} {result['best_valid_score']:.4f}")
        if best is None or result["best_valid_score"] > best["best_valid_score"]:
            best, kept = {**result, "learning_rate": rate}, (model, bconfig)
    best["learning_rate_search"] = search
    return (best,) + kept


def _better(current, candidate):
    """The (result, model, config) with the higher validation score (the first on ties)."""
    if current is None or candidate[0]["best_valid_score"] > current[0]["best_valid_score"]:
        return candidate
    return current


def _export_best(best, split, row, logger):
    result, model, config = best
    return export_model(model, config, split, logger, row=row,
                        test_result=result["test_result"],
                        extra={"chosen_as": f"the best of {row.get('seeds', 1)} seed(s) on "
                                            f"validation {config['valid_metric']}"})


def _export_teacher(tconfig, split, trajectory, logger):
    if trajectory.model is None:
        logger.warning(f"{tconfig['model']} came from the trajectory store, which keeps no "
                       "weights: no package for it (retrain it with a new trajectory_dir to "
                       "package it)")
        return None
    return export_model(trajectory.model, tconfig, split, logger,
                        row=teacher_row(trajectory.manifest),
                        test_result=trajectory.manifest["test_result"])


def _log_test(name, seed, result, logger):
    # Each seed's numbers reach the log as soon as they exist (a long multi-seed run that is
    # stopped still leaves them).
    logger.info(set_color(f"{name} seed {seed} test result", "yellow")
                + f": {format_metrics(result['test_result'])}")


def _ensemble_row(config, split, trajectories, teacher_rows):
    """Test metrics of the teachers' ensemble ranking; serving cost = all teachers together."""
    rankings = np.stack([t.rankings for t in trajectories]).astype(np.int64)
    model = EnsembleRanker(config, split.train, torch.from_numpy(rankings),
                           k=max(config["topk"]) * 2, temperature=config["temperature"],
                           batch_size=batch_users(config, "knowledge_batch_size", "ranking",
                                                  split.n_items)).to(config["device"])
    _, _, test_data = make_loaders(config, split)
    test = Trainer(config, model).evaluate(test_data, load_best_model=False)
    return model_row(f"Ensemble ({len(trajectories)} teachers)", "ensemble", test,
                     sum(r["n_params"] for r in teacher_rows),
                     sum(r["inference_ms_per_1000_users"] for r in teacher_rows),
                     sum(r["train_seconds"] for r in teacher_rows))


def _seeded_row(name, results, kind):
    return seeded_row(name, kind, [r["test_result"] for r in results], results[0]["n_params"],
                      [r["inference_ms_per_1000_users"] for r in results],
                      [r["train_seconds"] for r in results])
