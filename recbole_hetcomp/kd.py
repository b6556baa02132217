"""The distillation baselines of a pipeline run: RRD and DCD fed by the run's ensemble.

Each trains the same-size student (``model/kd_students.py``) with the HetComp student's size,
budget, learning rate, weight decay, batch size and seed, so the report compares methods at
equal size and budget; the method's own keys come from ``properties/model/<Model>.yaml``.
"""

from recbole_hetcomp.config import Config, inherited_keys
from recbole_hetcomp.device import batch_users
from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet
from recbole_hetcomp.training import train_model

#: name -> what it is (the report's variant line)
DISTILLATION_BASELINES = {
    "RRD": "relaxed ranking distillation (Kang et al., CIKM 2020) from the same ensemble's "
           "converged ranking, at the student's size and budget",
    "DCD": "dual correction distillation (Lee and Kim, CIKM 2021; user side) from the same "
           "ensemble's converged ranking, at the student's size and budget",
}

#: The student's keys a distillation baseline inherits (equal size and training budget).
STUDENT_KEYS = ("embedding_size", "epochs", "eval_step", "stopping_step", "learning_rate",
                "weight_decay", "train_batch_size", "loss_chunk_users", "knowledge_batch_size",
                "clip_grad_norm")


def distillation_config(config, name, seed):
    """Config of baseline ``name``: the run's shared keys, the student's budget, its own yaml,
    and the keys of that yaml the user set for the run (``--kd_weight=0.1``)."""
    from recbole_hetcomp.teachers import model_keys

    inherited = inherited_keys(config)
    inherited.update({k: config[k] for k in STUDENT_KEYS if config[k] is not None}, seed=seed)
    own = set(model_keys(name)) - set(STUDENT_KEYS)
    inherited.update({k: v for k, v in config.external_config_dict.items() if k in own})
    return Config(model=name, dataset=config["dataset"], inherited=inherited)


def check_distillation_baselines(config, n_items, n_teachers, top_m):
    """List lengths of the listed baselines against the catalogue and the recorded lists."""
    from recbole_hetcomp.checks import check_numbers
    from recbole_hetcomp.errors import HetCompError

    for name in config["distillation_baselines"] or []:
        kconfig = distillation_config(config, name, config["seed"])
        check_numbers(kconfig, f"{name}: ")
        lengths = {"kd_teacher_n": min(n_items, n_teachers * top_m)}
        if name == "DCD":
            lengths["dcd_student_n"] = n_items
        for key, most in lengths.items():
            value = kconfig[key]
            if not (isinstance(value, int) and 1 <= value <= most):
                raise HetCompError(f"{name}: {key}={value!r} must be an integer in 1..{most} "
                                   f"(the catalogue has {n_items} items, the teachers' lists "
                                   f"{n_teachers} x {top_m}): set --{key}=<n>")


def train_distillation_baseline(config, name, split, trajectories, history, seed, logger,
                                weights):
    """Train baseline ``name`` of the run ``config`` with ``seed`` from the ensemble of
    ``trajectories`` (``weights``: the run's teacher weights); returns (result, run entry with
    its validation history)."""
    kconfig = distillation_config(config, name, seed)
    knowledge = KnowledgeSet(trajectories, history, split.n_items, kconfig["kd_teacher_n"], 1,
                             config["temperature"],
                             batch_users(kconfig, "knowledge_batch_size", "ranking",
                                         split.n_items), kconfig["device"], weights)
    _, trainer, result = train_model(kconfig, split, logger, knowledge=knowledge)
    result["seed"] = seed
    return result, {"seed": seed, "valid_history": trainer.valid_history}
