"""What trajectory recording costs a teacher, and how big the store is (ml-100k, six teachers).

For each teacher: train it with its shipped defaults (epochs capped by --epochs to keep the run
short) twice on the same split and seed, once with the recorder and once without, and compare
wall times; also report the time spent inside the recording hooks (the direct cost). Then record
all six teachers (C = 4 snapshots, M = 100) into a fresh store and measure it on disk.

    python benchmarks/bench_recording.py --out results/bench_recording_cpu.md
"""

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import emit  # noqa: E402

from recbole_hetcomp.config import Config  # noqa: E402
from recbole_hetcomp.data.split import build_split  # noqa: E402
from recbole_hetcomp.teachers import record_teacher  # noqa: E402
from recbole_hetcomp.training import train_model  # noqa: E402

TEACHERS = ["BPR", "CML", "NeuMF", "LightGCN", "MultiVAE", "ItemVAE"]


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=20, help="cap on each teacher's epochs")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-recording-")
    logger = logging.getLogger("bench")
    rows, store_dir = [], os.path.join(work, "traj")
    for name in TEACHERS:
        def config(**extra):
            return Config(name, args.dataset, config_dict={
                "state": "ERROR", "show_progress": False, "use_gpu": False,
                "checkpoint_dir": os.path.join(work, "saved"), "trajectory_dir": store_dir,
                **extra})
        base = config()
        capped = config(epochs=min(args.epochs, base["epochs"]))
        split = build_split(capped)
        plain, recorded, direct = [], [], []
        for _ in range(args.repeats):
            plain.append(train_model(capped, split, logger, record=False)[2]
                         ["train_seconds"])
            result = train_model(capped, split, logger, record=True)[2]
            recorded.append(result["train_seconds"])
            direct.append(result["record_seconds"])
        p, r, d = (statistics.median(v) for v in (plain, recorded, direct))
        rows.append((name, capped["epochs"], capped["eval_step"], p, r, d))
        record_teacher(base, split, logger)  # full default run into the store
    size = dir_bytes(store_dir)
    lines = ["# Trajectory recording cost and store size (benchmarks/bench_recording.py)", "",
             f"machine: {platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__}"
             f", {torch.get_num_threads()} torch threads; dataset {args.dataset}, RecBole "
             f"default split; median of {args.repeats}", "",
             "| teacher | epochs | eval_step | train s, no recording | train s, recording | "
             "wall overhead | time in recording hooks | hook share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, epochs, step, p, r, d in rows:
        lines.append(f"| {name} | {epochs} | {step} | {p:.2f} | {r:.2f} | {(r - p) / p:+.1%} | "
                     f"{d:.2f} | {d / (r - d):.1%} |")
    lines += ["", f"store for {len(TEACHERS)} teachers (shipped defaults, C = 4, M = 100): "
              f"{size / 2 ** 20:.2f} MB on disk ({store_dir})"]
    emit(lines, args.out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
