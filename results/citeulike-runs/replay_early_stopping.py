"""Replay RecBole's early-stopping rule on logged validation curves at two patiences.

RecBole 1.2.1 (utils.early_stopping): a score >= the best resets the count, else the count
grows and the run stops once it exceeds ``stopping_step``. The student's trainer also resets
the count at each knowledge construction (a logged line). For every training run in the logs
(a run starts at "epoch 0 training") and every teacher manifest given, this prints the best
epoch kept under ``stopping_step`` and under ``stopping_step - 1`` and where each would stop.

    python results/citeulike-runs/replay_early_stopping.py 'results/citeulike-runs/*.log' \
        'trajectories/citeulike/*/*/manifest.json'
"""

import glob
import json
import re
import sys

EVALUATION = re.compile(r"epoch (\d+) evaluating \[.*valid_score: ([0-9.]+)\]")
CONSTRUCTION = re.compile(r"epoch \d+ knowledge construction")
STUDENT_PATIENCE = 5  # stopping_step of every logged CiteULike run


def runs_in_log(path):
    run = None
    for line in open(path, errors="replace"):
        if "epoch 0 training" in line:
            if run:
                yield run
            run = []
        if run is None:
            continue
        match = EVALUATION.search(line)
        if match:
            run.append((int(match[1]), float(match[2])))
        elif CONSTRUCTION.search(line):
            run.append(None)  # patience restarts
    if run:
        yield run


def replay(run, stopping_step):
    """(best epoch kept, epoch of the stop or None) under RecBole's rule."""
    best, count, best_epoch = float("-inf"), 0, None
    for entry in run:
        if entry is None:
            count = 0
            continue
        epoch, score = entry
        if score >= best:
            best, count, best_epoch = score, 0, epoch
        else:
            count += 1
            if count > stopping_step:
                return best_epoch, epoch
    return best_epoch, None


def main(log_pattern, manifest_pattern=None):
    total = changed = 0
    for path in sorted(glob.glob(log_pattern)):
        for index, run in enumerate(runs_in_log(path)):
            if not any(run):
                continue
            total += 1
            now, fewer = replay(run, STUDENT_PATIENCE), replay(run, STUDENT_PATIENCE - 1)
            changed += now[0] != fewer[0]
            print(f"{path.split('/')[-1]} run {index}: best {now[0]} (stop {now[1]}); "
                  f"with {STUDENT_PATIENCE - 1}: best {fewer[0]} (stop {fewer[1]})"
                  + ("   <- differs" if now[0] != fewer[0] else ""))
    for path in sorted(glob.glob(manifest_pattern or "")):
        manifest = json.load(open(path))
        patience = manifest["settings"]["stopping_step"]
        run = [(e["epoch"], e["valid_score"]) for e in manifest["evaluations"]]
        now, fewer = replay(run, patience), replay(run, patience - 1)
        total += 1
        changed += now[0] != fewer[0]
        print(f"teacher {manifest['teacher']}: best {now[0]} (stop {now[1]}); with "
              f"{patience - 1}: best {fewer[0]} (stop {fewer[1]})"
              + ("   <- differs" if now[0] != fewer[0] else ""))
    print(f"{total} runs, {changed} keep another epoch with one evaluation less patience")


if __name__ == "__main__":
    main(*sys.argv[1:3])
