"""The HetComp pipeline behind ``--model=HetCompStudent``.

one split -> each teacher trained with trajectory recording (or taken from the store) ->
ensemble weights (uniform, fitted on validation, or given) -> knowledge -> per seed: the
student, a same-size baseline trained without distillation, and the listed ablations and
distillation baselines (``variants.py``) -> test evaluation of every row -> report.

Teachers, and seeds, run one after another in this process, or as Ray tasks with
``teacher_workers`` / ``seed_workers`` > 1 (``parallel.py``). Each finished seed is kept on disk
until the report is written (``run_state.py``), so an interrupted run trains only the seeds it
had not finished.
"""

import copy
import time

from recbole.utils import set_color

from recbole_hetcomp.checks import baseline_rates
from recbole_hetcomp.config import Config, inherited_keys
from recbole_hetcomp.device import batch_users
from recbole_hetcomp.ensemble import choose_weights, ensemble_row
from recbole_hetcomp.errors import HetCompError, os_error_text
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.report import (format_metrics, in_column_order, metric_columns,
                                    seeded_row, teacher_row, write_report)
from recbole_hetcomp.run_state import SeedStore
from recbole_hetcomp.serving.export import check_export_settings, export_model
from recbole_hetcomp.serving.package import plain_state
from recbole_hetcomp.serving.rebuild import load_plain_state
from recbole_hetcomp.teachers import teacher_config, teacher_trajectory
from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet
from recbole_hetcomp.training import train_model
from recbole_hetcomp.variants import plan_variants


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
    if config["teacher_workers"] > 1:
        from recbole_hetcomp.parallel import parallel_teachers  # Ray only when asked for

        trajectories, packages = parallel_teachers(config, split, logger, stage)
    else:
        for index, name in enumerate(teachers, 1):
            tconfig = teacher_config(config, name)
            # its own budget, not the run's: --epochs sizes the student only (teacher_config)
            stage(f"teacher {index}/{len(teachers)}: {name} (up to {tconfig['epochs']} epochs, "
                  f"learning rate {tconfig['learning_rate']}; teacher_config sets them)")
            trajectory = teacher_trajectory(tconfig, split, logger)
            if config["export_teachers"]:
                packages[name] = _export_teacher(tconfig, split, trajectory, logger)
            trajectory.model = None  # teachers are not kept in memory
            trajectories.append(trajectory)

    stage("ensemble knowledge")
    history = split.train.history_item_matrix()[0]
    rows = [teacher_row(t.manifest) for t in trajectories]
    weights, weights_info = choose_weights(config, split, trajectories, logger)
    teacher_rows = list(rows)
    rows.append(ensemble_row(config, split, trajectories, teacher_rows,
                             name=f"Ensemble ({len(trajectories)} teachers, uniform)"))
    if weights is not None:
        rows.append(ensemble_row(config, split, trajectories, teacher_rows, weights,
                                 name=f"Ensemble ({len(trajectories)} teachers, "
                                      f"{weights_info['setting']}-weighted)"))
        rows[-1]["kind"] = "weighted_ensemble"
        rows[-1]["weights"] = weights_info["weights"]
    variants = plan_variants(config, trajectories)

    seeds = list(config["seeds"] or [config["seed"]])
    finished = SeedStore(config, split, trajectories, weights, logger)
    outcomes = {}  # seed -> train_seed's outcome
    for seed in seeds:
        outcome = finished.load(seed)
        if outcome is not None:
            stage(f"seed {seed}: finished by an earlier run of this configuration that did not "
                  f"complete; its results are reused ({finished.folder})")
            _log_outcome(config, outcome, logger)
            outcomes[seed] = outcome
    missing = [seed for seed in seeds if seed not in outcomes]
    if config["seed_workers"] > 1 and missing:
        from recbole_hetcomp.parallel import parallel_seeds  # Ray only when asked for

        def keep(outcome):
            _keep_seed(finished, outcome, logger)
            _log_outcome(config, outcome, logger)
            outcomes[outcome["seed"]] = outcome

        parallel_seeds(config, split, trajectories, weights, missing, logger, stage, keep)
    else:
        for seed in missing:
            outcomes[seed] = train_seed(config, split, trajectories, history, seed, logger,
                                        weights, variants, stage)
            _keep_seed(finished, outcomes[seed], logger)
    results = {}  # row name -> (kind, [result per seed])
    runs = []
    best_student = best_baseline = None  # (result, outcome, row) of the best seed on valid
    for seed in seeds:
        outcome = outcomes[seed]
        results.setdefault("HetCompStudent", ("student", []))[1].append(outcome["student"])
        runs.append(outcome["run"])
        best_student = _better(best_student, (outcome["student"], outcome, "student"))
        if outcome["baseline"] is not None:
            results.setdefault(f"{config['baseline']} (same size)", ("baseline", []))[1].append(
                outcome["baseline"])
            if config["export_teachers"]:
                best_baseline = _better(best_baseline, (outcome["baseline"], outcome,
                                                        "baseline"))
        for variant in outcome["variants"]:
            results.setdefault(variant["row"], (variant["kind"], []))[1].append(
                variant["result"])
    order = ("baseline", "student", "ablation", "distillation")  # the table's reading order
    for name, (kind, per_seed) in sorted(results.items(), key=lambda kv: order.index(kv[1][0])):
        rows.append(_seeded_row(name, per_seed, kind))
    if best_baseline:
        packages["baseline"] = _export_best(best_baseline, config, split,
                                            _row(rows, "baseline"), logger)
    if config["export_model"]:
        stage("model package")
        packages["student"] = _export_best(best_student, config, split,
                                           _row(rows, "student"), logger)
    stage("report")
    report = write_report(config, split, rows, runs, logger, packages,
                          extra={"ensemble_weights": weights_info,
                                 "variants": {v.row_name: v.description for v in variants}})
    finished.clear()  # the run is complete: nothing left to resume
    stage("done")
    return report


def train_seed(config, split, trajectories, history, seed, logger, weights, variants, stage):
    """One seed's rows, trained in turn: the student, the same-size baseline, the variants.

    Returns the seed's outcome: ``seed``; ``student`` and ``baseline`` (None without one)
    results; ``run``, the seed's histories for the report; ``variants``, a ``{row, kind,
    result}`` per variant; ``states``, the best-state weights (``plain_state``) of the student
    and the baseline, from which the best seed's model package is made wherever the seed was
    trained (here, a Ray worker, or a run that was stopped: ``run_state.py``).
    """
    stage(f"student HetCompStudent, seed {seed}")
    student, run, model, _ = train_student(config, split, trajectories, history, seed, logger,
                                           weights)
    _log_test("HetCompStudent", seed, student, logger)
    outcome = {"seed": seed, "student": student, "run": run, "baseline": None, "variants": [],
               "states": {"student": plain_state(model)}}
    if config["baseline"]:
        stage(f"baseline {config['baseline']} (embedding_size "
              f"{config['embedding_size']}, no distillation), seed {seed}")
        baseline, bmodel, _ = train_baseline(config, split, seed, logger)
        _log_test(config["baseline"], seed, baseline, logger)
        run["baseline_valid_history"] = baseline.pop("valid_history")
        run["baseline_learning_rate"] = baseline["learning_rate"]
        run["baseline_learning_rate_search"] = baseline.pop("learning_rate_search")
        outcome["baseline"], outcome["states"]["baseline"] = baseline, plain_state(bmodel)
    for variant in variants:
        stage(f"{variant.row_name}, seed {seed}")
        result, vrun = variant.train(config, split, history, seed, logger, weights)
        _log_test(variant.row_name, seed, result, logger)
        outcome["variants"].append({"row": variant.row_name, "kind": variant.kind,
                                    "result": result})
        run.setdefault("variants", {})[variant.row_name] = vrun
    return outcome


def _keep_seed(finished, outcome, logger):
    """Save a finished seed for a resumed run; a failed write (disk full) costs only that.

    The run state is a convenience: the seed's results are in memory and the run goes on to
    its report. Stopping here would lose the seed the run state exists to keep.
    """
    try:
        finished.save(outcome)
    except OSError as exc:
        logger.warning(f"seed {outcome['seed']} could not be kept in the run state "
                       f"({os_error_text(exc)}); the run goes on, but a "
                       "stopped run would train it again")


def _row(rows, kind):
    return next(r for r in rows if r["kind"] == kind)


def student_knowledge(config, split, trajectories, history, weights=None):
    """The KnowledgeSet a HetComp student with ``config`` (its own Config) learns from."""
    return KnowledgeSet(trajectories, history, split.n_items, config["hetcomp_k"],
                        config["hetcomp_l"], config["temperature"],
                        batch_users(config, "knowledge_batch_size", "ranking", split.n_items),
                        config["device"], weights)


def train_student(config, split, trajectories, history, seed, logger, weights=None):
    """Distil the knowledge into a fresh student with ``seed``.

    Returns (result, histories, model in its best validation state, the student's config)."""
    config = student_config(config, seed)
    knowledge = student_knowledge(config, split, trajectories, history, weights)
    model, trainer, result = train_model(config, split, logger, knowledge=knowledge)
    result["seed"] = seed
    run = {"seed": seed, "kc_history": trainer.kc_history,
           "valid_history": trainer.valid_history}
    return result, run, model, config


def student_config(config, seed):
    """The run's Config with the student's ``seed``."""
    config = copy.deepcopy(config)
    config["seed"] = seed
    return config


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
    """The (result, ...) with the higher validation score (the first on ties)."""
    if current is None or candidate[0]["best_valid_score"] > current[0]["best_valid_score"]:
        return candidate
    return current


def _export_best(best, run_config, split, row, logger):
    result, outcome, kind = best
    seed = outcome["seed"]
    config = (student_config(run_config, seed) if kind == "student"
              else baseline_config(run_config, seed, result["learning_rate"]))
    model = restore_model(config, split, outcome["states"][kind])
    return export_model(model, config, split, logger, row=row,
                        test_result=result["test_result"],
                        extra={"chosen_as": f"the best of {row.get('seeds', 1)} seed(s) on "
                                            f"validation {config['valid_metric']}"})


def restore_model(config, split, state):
    """``config``'s model with the weights ``state`` (``plain_state``), in evaluation mode."""
    model = get_model(config["model"])(config, split.train).to(config["device"])
    problem = load_plain_state(model, state, config["device"])
    if problem:  # the same code made the weights: a bug, not the user's mistake
        raise RuntimeError(f"the weights kept for {config['model']} do not fit it ({problem})")
    return model


def _export_teacher(tconfig, split, trajectory, logger):
    if trajectory.model is None:
        logger.warning(f"{tconfig['model']} came from the trajectory store, which keeps no "
                       "weights: no package for it (retrain it with a new trajectory_dir to "
                       "package it)")
        return None
    return export_model(trajectory.model, tconfig, split, logger,
                        row=teacher_row(trajectory.manifest),
                        test_result=trajectory.manifest["test_result"])


def _log_test(name, seed, result, logger, columns=()):
    # Each seed's numbers reach the log as soon as they exist (a long multi-seed run that is
    # stopped still leaves them).
    logger.info(set_color(f"{name} seed {seed} test result", "yellow")
                + f": {format_metrics(in_column_order(result['test_result'], columns))}")


def _log_outcome(config, outcome, logger):
    """The test lines of a seed that was trained elsewhere (a Ray worker, an earlier run)."""
    seed = outcome["seed"]
    columns = metric_columns(config["metrics"], config["topk"])  # a file keeps sorted keys
    _log_test("HetCompStudent", seed, outcome["student"], logger, columns)
    if outcome["baseline"] is not None:
        _log_test(config["baseline"], seed, outcome["baseline"], logger, columns)
    for variant in outcome["variants"]:
        _log_test(variant["row"], seed, variant["result"], logger, columns)


def _seeded_row(name, results, kind):
    return seeded_row(name, kind, [r["test_result"] for r in results], results[0]["n_params"],
                      [r["inference_ms_per_1000_users"] for r in results],
                      [r["train_seconds"] for r in results])
