"""``run_hetcomp``: what ``run_hetcomp.py`` does, usable from Python.

A plugin or RecBole general model is trained and tested on the run's split (a teacher's
trajectory is recorded into the store on the way); ``HetCompStudent`` runs the whole pipeline
(teachers, knowledge, student, baseline, report).
"""

import logging
import os
from logging import getLogger

import torch

from recbole.utils import init_logger, set_color

from recbole_hetcomp.checks import check_log_directory, check_run, check_split, check_state
from recbole_hetcomp.config import Config
from recbole_hetcomp.device import describe
from recbole_hetcomp.data.split import build_split
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.report import (format_metrics, in_column_order, metric_columns,
                                    model_row)
from recbole_hetcomp.serving.export import check_export_settings, export_model
from recbole_hetcomp.teachers import load_teacher, store_trajectory, train_teacher
from recbole_hetcomp.training import train_model

STUDENT = "HetCompStudent"


def run_hetcomp(model=None, dataset=None, config_file_list=None, config_dict=None, *,
                cmd_args=None):
    """Run one model (or the HetComp pipeline) and return a result dict.

    Parameters
    ----------
    model, dataset : str, optional
        As RecBole's ``run_recbole`` (they may also come from config files or ``cmd_args``).
    config_file_list : list of str, optional
    config_dict : dict, optional
    cmd_args : list of str, optional, keyword only
        ``--key=value`` overrides, the highest priority. (Keyword only: the fifth positional
        argument of ``run_recbole`` is ``saved``, which here is the ``export_model`` key.)

    Returns
    -------
    dict
        The same keys for every model:

        - ``model``, ``dataset``: what ran;
        - ``test_result``: metric -> test value of the model run (the student's mean over
          seeds in a pipeline run);
        - ``columns``: the metric keys of ``metrics`` x ``topk``;
        - ``rows``: the report's rows (``report.model_row`` dicts: teachers, ensemble,
          baseline, student in a pipeline run; the one model otherwise).

        A pipeline run adds ``runs`` (per-seed histories), ``summary`` and the written
        ``markdown``, ``json`` and ``plot`` paths; a single model adds, as RecBole's
        ``run_recbole``, ``best_valid_score``, ``valid_score_bigger`` and ``best_valid_result``,
        then ``best_epoch``, ``train_seconds``, and, when recorded, ``trajectory`` and
        ``snapshot_epochs``; ``package`` is the model package written (``export_model``;
        the pipeline's are in ``packages``), or None.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    check_state(config)  # both before RecBole's logger, which would fail with a traceback
    check_log_directory(config)
    _init_logging(config)
    logger = getLogger()
    tconfigs = check_run(config, logger)  # every mistake the config shows, before any work
    check_export_settings(config)
    # After the checks: a refused run's one error line is not buried under RecBole's
    # 120-line settings printout (its warnings, e.g. a misspelt key, still show).
    logger.info(config)
    threads = set_torch_threads(config["torch_threads"])
    logger.info(f"torch threads: {threads} (torch_threads: {config['torch_threads']}); "
                f"device: {describe(config['device'])}")
    split = build_split(config, logger)
    check_split(config, split, tconfigs)
    if config["model"] == STUDENT:
        from recbole_hetcomp.pipeline import run_pipeline

        report = run_pipeline(config, split, logger)
        return dict(report, test_result=report["rows"][-1]["test_result"])
    fresh = None  # a trajectory just recorded, stored after the package
    if config["record_trajectory"]:
        trajectory = load_teacher(config, split, logger)
        if trajectory is None:
            trajectory = fresh = train_teacher(config, split, logger)
        else:  # run_recbole would train again: say why this does not
            logger.info(f"{config['model']} is not trained again: the results below are the "
                        "recorded run's (--record_trajectory=False trains it anew)")
        result = {k: trajectory.manifest[k] for k in (
            "test_result", "best_valid_result", "best_epoch", "train_seconds", "record_seconds",
            "n_params", "inference_ms_per_1000_users", "snapshot_epochs")}
        model, trajectory.model = trajectory.model, None
        result["trajectory"] = trajectory
    else:
        model, _, result = train_model(config, split, logger)
    columns = metric_columns(config["metrics"], config["topk"])
    result.update(model=config["model"], dataset=config["dataset"], columns=columns,
                  test_result=in_column_order(result["test_result"], columns),
                  best_valid_result=in_column_order(result["best_valid_result"], columns),
                  # run_recbole's keys, whether the model was trained now or taken from the store
                  best_valid_score=result["best_valid_result"].get(config["valid_metric"].lower(),
                                                                   result.get("best_valid_score")),
                  valid_score_bigger=config["valid_metric_bigger"])
    result["rows"] = [model_row(config["model"], "model", result["test_result"],
                                result["n_params"], result["inference_ms_per_1000_users"],
                                result["train_seconds"])]
    logger.info(set_color("test result", "yellow") + f": {format_metrics(result['test_result'])}")
    result["package"] = None
    if config["export_model"] and model is not None:
        result["package"] = export_model(model, config, split, logger, row=result["rows"][0],
                                         test_result=result["test_result"])
    elif config["export_model"]:
        logger.info(f"{config['model']} was taken from the trajectory store, which keeps no "
                    "weights: no model package (--record_trajectory=False trains it anew and "
                    "packages it)")
    if fresh is not None:
        # Stored only once the package is written: a package write that fails (disk full)
        # then leaves no stored trajectory, so the same command retrains and writes both,
        # instead of reusing a trajectory that keeps no weights and never packaging the model.
        store_trajectory(config, split, fresh, logger)
    return result


def set_torch_threads(wanted):
    """Set torch's intra-op threads: ``wanted``, or by default (None) every usable core but one.

    OpenMP threads spin while they wait for each other; when another process holds one of
    their cores, every parallel op waits for a thread that is not running (measured on 2 cores:
    a 2-thread student epoch took 3x its 1-thread time with the other core busy). Leaving a core
    free keeps a run fast beside another job; ``OMP_NUM_THREADS``, when set, is used instead.
    Returns the thread count in force.
    """
    if wanted is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        wanted = int(env) if env.isdigit() and int(env) > 0 else max(1, _usable_cores() - 1)
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise HetCompError(f"torch_threads must be a positive integer or ~ (all cores but "
                           f"one), got {wanted!r}")
    torch.set_num_threads(wanted)
    return torch.get_num_threads()


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroup CPU sets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_logging(config):
    # RecBole's init_logger goes through logging.basicConfig, which does nothing once the root
    # logger has handlers: swap out the handlers of an earlier run (tests, several runs in one
    # process), keep anyone else's (pytest's capture), and tag ours.
    root = logging.getLogger()
    others = [h for h in root.handlers if not getattr(h, "_hetcomp", False)]
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if getattr(handler, "_hetcomp", False):
            handler.close()
    init_logger(config)
    for handler in root.handlers:
        handler._hetcomp = True
    for handler in others:
        root.addHandler(handler)
