"""Uniform against validation-weighted ensembles of the stored teachers, on validation and test.

What ``ensemble_weights`` is chosen from: for the teachers a pipeline run recorded (taken from
the trajectory store, never trained here), the validation and test metrics of each teacher, of
the uniform ensemble (the paper's) and of the validation-weighted one, with the weights and the
time the search took.

    python benchmarks/ensemble_weights.py --dataset ml-100k
    python benchmarks/ensemble_weights.py --dataset citeulike --data_path dataset/ \\
        --out results/ensemble_weights_citeulike.md

Extra ``--key=value`` arguments go to the run's Config as in ``run_hetcomp.py`` (they must
match the run that recorded the teachers, or the store holds nothing for them).
"""

import argparse
import logging
import time

from _common import emit, stored_trajectories

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split
from recbole_hetcomp.ensemble import choose_weights, evaluate_ensemble

METRICS = ("recall@50", "ndcg@50", "recall@10")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", help="write the table here (Markdown) as well")
    args, extra = parser.parse_known_args()
    logger = logging.getLogger("ensemble_weights")
    logging.basicConfig(level=logging.WARNING)
    config = Config("HetCompStudent", args.dataset, cmd_args=extra + ["--state=WARNING"])
    split = build_split(config)
    trajectories = stored_trajectories(config, split, logger)
    rows = [{"model": t.teacher, "valid": t.manifest["best_valid_result"],
             "test": t.manifest["test_result"]} for t in trajectories]
    start = time.perf_counter()
    weights, info = choose_weights(config, split, trajectories, logger)
    search_seconds = time.perf_counter() - start
    for label, w in (("Ensemble, uniform", None), ("Ensemble, validation-weighted", weights)):
        rows.append({"model": label, **evaluate_ensemble(config, split, trajectories, w,
                                                          parts=("valid", "test"))})
    lines = [f"# Ensemble weights on {args.dataset}", "",
             f"Teachers from the store; weights fitted on validation {config['valid_metric']} "
             f"in {search_seconds:.1f} s: " + ", ".join(f"{n} {v:.2f}"
                                                        for n, v in info["weights"].items()),
             "", "| model | " + " | ".join(f"valid {m} | test {m}" for m in METRICS) + " |",
             "|---|" + "---|---|" * len(METRICS)]
    for row in rows:
        cells = [f"{row['valid'].get(m, float('nan')):.4f} | {row['test'][m]:.4f}" for m in METRICS]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
