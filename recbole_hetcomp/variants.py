"""The report's comparison rows beside HetComp: its ablations and distillation baselines.

A user choosing this tool asks the question the paper's tables answer: is the easy-to-hard
machinery worth it over plain ranking distillation from the same ensemble? So the pipeline can
train, per seed and at the student's size, budget and learning rate:

- ``ablations`` (HetComp with one part switched off, each a config switch of
  ``HetCompTrainer`` or a different teacher set; everything else as the student):
  ``no_dynamic_construction``  targets of the converged teachers from epoch 0 (same losses and
                               switch rule: the rule fires at the first check, epoch p);
  ``no_adaptive_transfer``     one loss throughout (``ablation_transfer_loss``), knowledge
                               construction as usual;
  ``best_teacher_only``        the whole method fed by the trajectory of the teacher with the
                               best validation score alone.
- ``distillation_baselines``: other ranking-distillation methods given the same ensemble's
  converged ranking as their teacher (``model/kd_students.py``).
"""

import copy
from dataclasses import dataclass, field

from recbole_hetcomp.errors import HetCompError

#: name -> (row label, description)
ABLATIONS = {
    "no_dynamic_construction": (
        "HetComp w/o dynamic construction",
        "targets from the converged teachers from epoch 0 (no easy-to-hard sequence); same "
        "losses and switch rule"),
    "no_adaptive_transfer": (
        "HetComp w/o adaptive transfer",
        "one loss throughout (ablation_transfer_loss), easy-to-hard targets as usual"),
    "best_teacher_only": (
        "HetComp from {teacher} only",
        "the method fed by the trajectory of the teacher with the best validation score"),
}


@dataclass
class Variant:
    """One comparison row: how to train it for a seed."""

    key: str
    row_name: str
    kind: str  # "ablation" or "distillation"
    description: str
    overrides: dict = field(default_factory=dict)
    trajectories: list = None  # the ablation's teachers (None: the run's)

    def train(self, config, split, history, seed, logger, weights):
        """Train the variant with ``seed``; returns (result, run entry for the report)."""
        from recbole_hetcomp.pipeline import train_student

        vconfig = copy.deepcopy(config)
        for key, value in self.overrides.items():
            vconfig[key] = value
        if self.kind == "distillation":
            from recbole_hetcomp.kd import train_distillation_baseline

            return train_distillation_baseline(vconfig, self.key, split, self.trajectories,
                                               history, seed, logger, weights)
        trajectories = self.trajectories
        if len(trajectories) == 1:
            weights = None  # one teacher: nothing to weigh
        result, run, _, _ = train_student(vconfig, split, trajectories, history, seed, logger,
                                          weights)
        return result, run


def check_variants(config):
    """Refuse unknown ablation or distillation-baseline names (one line, before training)."""
    from recbole_hetcomp.kd import DISTILLATION_BASELINES

    for key, known in (("ablations", ABLATIONS), ("distillation_baselines",
                                                  DISTILLATION_BASELINES)):
        names = config[key] or []
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise HetCompError(f"{key} must be a list of names from {list(known)}; got {names!r}")
        unknown = [n for n in names if n not in known]
        if unknown or len(set(names)) != len(names):
            raise HetCompError(f"{key}: {', '.join(unknown) or 'a name listed twice'} is not "
                               f"one of {list(known)} (each at most once)")
    if config["ablation_transfer_loss"] not in ("overall", "rank"):
        raise HetCompError(f"ablation_transfer_loss must be overall or rank, got "
                           f"{config['ablation_transfer_loss']!r}")


def best_teacher(trajectories, valid_metric):
    """The trajectory whose teacher scored best on validation (its best epoch)."""
    key = valid_metric.lower()
    return max(trajectories, key=lambda t: t.manifest["best_valid_result"].get(
        key, t.manifest["snapshot_valid_scores"][-1]))


def plan_variants(config, trajectories):
    """The variants the config lists, in the report's order."""
    out = []
    for key in config["ablations"] or []:
        label, description = ABLATIONS[key]
        chosen, overrides = trajectories, {}
        if key == "no_dynamic_construction":
            overrides = {"dynamic_construction": False}
        elif key == "no_adaptive_transfer":
            overrides = {"knowledge_transfer": config["ablation_transfer_loss"]}
            description = description.replace("ablation_transfer_loss",
                                              f"the {config['ablation_transfer_loss']} loss")
        else:
            best = best_teacher(trajectories, config["valid_metric"])
            chosen, label = [best], label.format(teacher=best.teacher)
        out.append(Variant(key, label, "ablation", description, overrides, chosen))
    from recbole_hetcomp.kd import DISTILLATION_BASELINES

    for name in config["distillation_baselines"] or []:
        out.append(Variant(name, f"{name} (same ensemble)", "distillation",
                           DISTILLATION_BASELINES[name], {}, trajectories))
    return out
