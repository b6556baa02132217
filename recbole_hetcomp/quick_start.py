"""``run_hetcomp``: what ``run_hetcomp.py`` does, usable from Python.

A plugin or RecBole general model is trained and tested on the run's split (a teacher's
trajectory is recorded into the store on the way); ``HetCompStudent`` runs the whole pipeline
(teachers, knowledge, student, baseline, report).
"""

import logging
from logging import getLogger

from recbole.utils import init_logger, set_color

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split
from recbole_hetcomp.teachers import teacher_trajectory
from recbole_hetcomp.training import train_model

STUDENT = "HetCompStudent"


def run_hetcomp(model=None, dataset=None, config_file_list=None, config_dict=None,
                cmd_args=None):
    """Run one model (or the HetComp pipeline) and return a result dict.

    Parameters
    ----------
    model, dataset : str, optional
        As RecBole's ``run_recbole`` (they may also come from config files or ``cmd_args``).
    config_file_list : list of str, optional
    config_dict : dict, optional
    cmd_args : list of str, optional
        ``--key=value`` overrides, the highest priority.

    Returns
    -------
    dict
        ``model``, ``dataset``, ``test_result`` (metric -> value) and run details.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    _init_logging(config)
    logger = getLogger()
    logger.info(config)
    split = build_split(config, logger)
    if config["model"] == STUDENT:
        from recbole_hetcomp.pipeline import run_pipeline

        return run_pipeline(config, split, logger)
    if config["record_trajectory"]:
        trajectory = teacher_trajectory(config, split, logger)
        result = {k: trajectory.manifest[k] for k in (
            "test_result", "best_valid_result", "best_epoch", "train_seconds", "record_seconds",
            "n_params", "inference_ms_per_1000_users", "snapshot_epochs")}
        result["trajectory"] = trajectory
    else:
        _, _, result = train_model(config, split, logger)
    result.update(model=config["model"], dataset=config["dataset"])
    logger.info(set_color("test result", "yellow") + f": {format_metrics(result['test_result'])}")
    return result


def format_metrics(result):
    return "    ".join(f"{k} : {v:.4f}" for k, v in result.items())


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
