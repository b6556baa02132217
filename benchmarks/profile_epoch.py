"""Where a training epoch's time goes: RecBole's data path against the model's own work.

For each teacher (and, with ``--student``, the HetComp student over the stored trajectories),
train a few epochs with the model's shipped settings on the run's split and time, inside the same
epochs, the seconds spent getting the next batch from RecBole's training loader (index
shuffling, negative sampling, collation: the Python-side data path) against the whole epoch
(forward, backward, optimiser step and, for the student, its knowledge work). The data share is
what a vectorised sampler could save at most.

    python benchmarks/profile_epoch.py --dataset ml-1m --data_path=../shared/datasets/ \\
        --out results/profile_epoch_ml-1m.md
    python benchmarks/profile_epoch.py --dataset ml-1m --data_path=../shared/datasets/ \\
        --models HetCompStudent --student --trajectory_dir=trajectories

Extra ``--key=value`` arguments go to the run's Config as in ``run_hetcomp.py`` (for the
student they must match the run that recorded the teachers). Epochs are timed one by one;
the table gives the median over ``--epochs`` epochs after one untimed warm-up epoch.
"""

import argparse
import logging
import os
import statistics
import sys
import time

import torch
from _common import emit, stored_trajectories

from recbole.utils import init_seed

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split, make_loaders
from recbole_hetcomp.device import synchronize
from recbole_hetcomp.pipeline import student_config, student_knowledge
from recbole_hetcomp.quick_start import set_torch_threads
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.teachers import teacher_config
from recbole_hetcomp.trainer.recording import make_trainer


class TimedLoader:
    """RecBole's training loader, counting the seconds spent producing each batch.

    Everything but iteration is delegated, so a trainer uses it as the loader itself."""

    def __init__(self, loader, device):
        self._loader, self._device = loader, device
        self.seconds, self.batches = 0.0, 0

    def __iter__(self):
        iterator = iter(self._loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            self.batches += 1
            yield batch

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def profile(config, split, epochs, knowledge=None):
    """(median epoch s, median data-path s, batches per epoch, sampler) over ``epochs``."""
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = make_loaders(config, split)
    model = get_model(config["model"])(config, split.train).to(config["device"])
    trainer = make_trainer(config, model)
    if knowledge is not None:
        trainer.set_knowledge(knowledge)
    walls, datas, batches = [], [], 0
    for epoch in range(epochs + 1):  # epoch 0 warms up (allocations, first-touch)
        timed = TimedLoader(train_data, config["device"])
        synchronize(config["device"])
        start = time.perf_counter()
        trainer._train_epoch(timed, epoch, show_progress=False)
        synchronize(config["device"])
        if epoch:
            walls.append(time.perf_counter() - start)
            datas.append(timed.seconds)
        batches = timed.batches
    # Only the interaction loader samples negatives (autoencoders get batches of users).
    sampler = getattr(train_data, "neg_sample_args", None) or {}
    negatives = (f", {sampler['distribution']} negatives x{sampler['sample_num']}"
                 if sampler.get("distribution") not in (None, "none") else "")
    kind = type(train_data).__name__ + negatives
    return statistics.median(walls), statistics.median(datas), batches, kind


def student_setup(run_config, split, logger):
    """The student's Config and knowledge (uniform teacher weights: the weights change the
    targets' content, not the epoch's work)."""
    config = student_config(run_config, run_config["seed"])
    history = split.train.history_item_matrix()[0]
    return config, student_knowledge(config, split, stored_trajectories(run_config, split, logger),
                                     history)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", nargs="*", help="default: the run's teachers")
    parser.add_argument("--student", action="store_true",
                        help="also profile HetCompStudent (needs the stored trajectories)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per model")
    parser.add_argument("--compare-loaders", action="store_true",
                        help="time each model with RecBole's loader and with vectorised_loader")
    parser.add_argument("--out", help="write the table here (Markdown) as well")
    args, extra = parser.parse_known_args()
    logger = logging.getLogger("profile_epoch")
    logging.basicConfig(level=logging.WARNING)
    run_config = Config("HetCompStudent", args.dataset, cmd_args=extra + ["--state=WARNING"])
    set_torch_threads(run_config["torch_threads"])  # as a run does
    split = build_split(run_config)
    names = list(args.models or run_config["teachers"])
    if args.student and "HetCompStudent" not in names:
        names.append("HetCompStudent")
    settings = [False, True] if args.compare_loaders else [run_config["vectorised_loader"]]
    rows = []
    for name in names:
        for vectorised in settings:
            if name == "HetCompStudent":
                config, knowledge = student_setup(run_config, split, logger)
            else:
                config, knowledge = teacher_config(run_config, name), None
            config["vectorised_loader"] = vectorised
            wall, data, batches, kind = profile(config, split, args.epochs, knowledge)
            rows.append((name, config["train_batch_size"], batches, kind, wall, data))
            print(f"{name} ({kind}): {wall:.2f} s/epoch, data path {data:.2f} s", flush=True)
            if not kind.startswith("TrainDataLoader"):
                break  # the key changes only RecBole's interaction loader (not users' batches)
    lines = [f"# One training epoch on {args.dataset}: RecBole's data path against the rest", "",
             "Command: `python benchmarks/profile_epoch.py " + " ".join(sys.argv[1:]) + "`", "",
             f"{split.n_users - 1:,} users, {split.n_items - 1:,} items, "
             f"{len(split.train):,} training interactions; {torch.get_num_threads()} torch "
             f"thread(s), device {run_config['device']}; median of {args.epochs} epoch(s) "
             "after one warm-up epoch. Data path = seconds inside the training loader's "
             "next() (shuffle, negative sampling, collation).", "",
             "| model | batch | batches | loader | epoch s | data path s | data share |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for name, size, batches, kind, wall, data in rows:
        lines.append(f"| {name} | {size:,} | {batches} | {kind} | {wall:.2f} | {data:.2f} | "
                     f"{data / wall:.0%} |")
    lines.append("")
    lines.append(f"machine: {os.cpu_count()} CPU cores")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
