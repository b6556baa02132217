"""Ranking-distillation baselines fed by the run's ensemble (placeholder until wired)."""

DISTILLATION_BASELINES = {
    "RRD": "relaxed ranking distillation (Kang et al., CIKM 2020)",
    "DCD": "dual correction distillation (Lee and Kim, CIKM 2021)",
}


def train_distillation_baseline(config, split, trajectories, history, seed, logger, weights):
    raise NotImplementedError
