"""Time HetComp's student training on CiteULike (paper protocol) with synthetic trajectories.

Real CiteULike interactions (the converter + properties/dataset/citeulike.yaml: 5,219 users,
25,181 items, random per-user 60/20/20 split) with synthetic teacher rankings of the right shape
(6 teachers x 4 snapshots x top-100 of each user's non-training items): teachers are not trained
here, only the distillation machinery is timed. Measured, median over repeats:

- a training epoch with the overall loss and with the rank loss (RecBole's data loader included)
  at equal work with the released code: batches of 1,024 training interactions (78 batches, as
  the released code's epoch), the same thread count; then at the shipped 8,192 (10 batches), a
  different amount of work per epoch (fewer, larger optimiser steps), reported separately as
  what that setting buys;
- a knowledge-construction step (student top-50 of every user + discrepancies + advance rule)
  and a target rebuild; the step is also timed when the student's lists come from the
  validation pass that precedes it (what HetCompTrainer does);
- a full-sort validation (RecBole's evaluator);
- the knowledge's memory and the process's peak resident memory.

The released code, 78 batches of 1,024 interactions per epoch, on this kind of 2-core machine:
two threads, the other core idle: 29 s / epoch (overall loss), 43 s / epoch (rank loss),
2.6-5 s per knowledge-construction step, 7.7 s per target rebuild, 10 s per evaluation, 14 GB
peak (half-precision trajectories); with glibc's allocator tuned (MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=100000000000): 11 s and 16 s per epoch. One thread, the other core busy
with one job: 59-62 s and 85-89 s, tuned 22.6 s and 33.9 s.

    python benchmarks/bench_student.py --threads 2 --out results/bench_student_cpu.md
    python benchmarks/bench_student.py --threads 1 --busy --quick   # the shared-core case
"""

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import emit, synthetic_rankings, timed  # noqa: E402

from recbole_hetcomp.config import Config  # noqa: E402
from recbole_hetcomp.data.citeulike import convert_citeulike  # noqa: E402
from recbole_hetcomp.data.split import build_split, make_loaders  # noqa: E402
from recbole_hetcomp.model import HetCompStudent  # noqa: E402
from recbole_hetcomp.trainer import HetCompTrainer  # noqa: E402
from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet  # noqa: E402
from recbole_hetcomp.trajectory import Trajectory  # noqa: E402

# Released code, 78 batches of 1,024 interactions per epoch: (untuned, tuned glibc) seconds for
# (two threads, quiet machine) and (one thread, the other core busy); where a figure is a
# range, the stricter (faster) end.
RELEASED = {("epoch, overall loss", False): (29.0, 11.0), ("epoch, rank loss", False): (43.0, 16.0),
            ("epoch, overall loss", True): (59.0, 22.6), ("epoch, rank loss", True): (85.0, 33.9)}
RELEASED_OTHER = {"knowledge-construction step": 2.6, "target rebuild": 7.7, "evaluation": 10.0}
EQUAL_BATCH = 1024


def synthetic_trajectories(history, n_items, x=6, c=4, m=100, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # 128-user chunks: CiteULike's widest history (1,197 items) makes bigger ones set the peak
    rankings, observed = synthetic_rankings(history.long(), n_items, x, c, m, gen, chunk=128)
    rankings, observed = rankings.numpy().astype(np.uint16), observed.numpy().astype(np.uint16)
    return [Trajectory(rankings[i], observed[i, :, :m], {"teacher": f"T{i}"}) for i in range(x)]


def epoch_seconds(trainer, train_data, rank, repeats):
    """Median steady-state epoch: one untimed epoch first (first-touch allocations)."""
    trainer.switched = rank
    trainer._train_epoch(train_data, 1)
    (wall, cpu), _ = timed(lambda: trainer._train_epoch(train_data, 1), repeats)
    trainer.switched = False
    return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users-dat", default="../shared/datasets/citeulike-t/users.dat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="only the training epochs")
    parser.add_argument("--other-core", choices=("idle", "spin", "busy"), default="idle",
                        help="the rest of the machine: idle; spin (this script keeps one core "
                             "busy with a spinning process); busy (another job already runs: "
                             "say which with --load-note)")
    parser.add_argument("--load-note", default="", help="what else ran, for the report")
    args = parser.parse_args(argv)
    args.busy = args.other_core != "idle"
    if args.threads:
        torch.set_num_threads(args.threads)
    busy = None
    if args.other_core == "spin":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        run(args)
    finally:
        if busy is not None:
            busy.kill()


def run(args):
    work = tempfile.mkdtemp(prefix="bench-student-")
    convert_citeulike(args.users_dat, os.path.join(work, "data"), name="citeulike")
    base = {"data_path": os.path.join(work, "data"), "use_gpu": args.device != "cpu",
            "state": "ERROR", "show_progress": False, "checkpoint_dir": os.path.join(work, "saved")}
    config = Config("HetCompStudent", "citeulike", config_dict=base)
    split = build_split(config)
    train_data, valid_data, _ = make_loaders(config, split)
    history = split.train.history_item_matrix()[0]
    trajectories = synthetic_trajectories(history, split.n_items)
    rows = []
    device = config["device"]

    start = time.perf_counter()
    knowledge = KnowledgeSet(trajectories, history, split.n_items, device=device)
    build_s = time.perf_counter() - start
    mem_mb = sum(t.numel() * t.element_size() for t in (
        knowledge.rankings, knowledge.observed, knowledge.observed_mask, knowledge.targets,
        knowledge.target_mask, knowledge.history, knowledge.state.choice,
        knowledge.state.d)) / 2 ** 20
    model = HetCompStudent(config, split.train).to(device)
    trainer = HetCompTrainer(config, model)
    trainer.set_knowledge(knowledge)
    trainer.eval_collector.data_collect(train_data)

    # Equal work with the released code: 1,024-interaction batches, then the shipped batches.
    equal_config = Config("HetCompStudent", "citeulike",
                          config_dict={**base, "train_batch_size": EQUAL_BATCH})
    equal_data = make_loaders(equal_config, split)[0]
    epochs = {}
    for batches, data in (("equal", equal_data), ("shipped", train_data)):
        for rank in (False, True):
            epochs[batches, rank] = epoch_seconds(trainer, data, rank, args.repeats)
    shipped_batch = config["train_batch_size"]
    ctx = {"equal": (EQUAL_BATCH, len(equal_data)), "shipped": (shipped_batch, len(train_data))}
    if not args.quick:
        knowledge_rows(rows, trainer, knowledge, model, valid_data, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(args, config, split, ctx, epochs, rows, mem_mb, build_s, peak_mb, device)


def knowledge_rows(rows, trainer, knowledge, model, valid_data, repeats):
    """Time evaluation, the student's top lists, a knowledge step and a target rebuild."""
    rows.append(("evaluation (validation, full sort)",
                 timed(lambda: trainer._valid_epoch(valid_data), repeats)[0]))
    model.eval()
    from recbole_hetcomp.knowledge import knowledge_step

    def step(top, epoch):
        knowledge_step(knowledge.state, top, knowledge.rankings, epoch, 10, 1.05, 0.995,
                       knowledge.batch_size)

    rows.append(("student top-50 of every user (full scoring pass)", timed(
        lambda: knowledge.student_top(model.user_scores, 50), repeats)[0]))
    trainer._valid_epoch(valid_data)
    known = trainer._valid_top
    rows.append(("student top-50, lists read off the validation pass", timed(
        lambda: knowledge.student_top(model.user_scores, 50, known), repeats)[0]))
    top = knowledge.student_top(model.user_scores, 50, known)
    step(top, 10)  # first call: remember d
    rows.append(("knowledge-construction step (advance rule, all users x teachers)", timed(
        lambda: step(top, 20), repeats)[0]))
    rows.append(("target rebuild", timed(knowledge.rebuild_targets, repeats)[0]))


def write_report(args, config, split, ctx, epochs, rows, mem_mb, build_s, peak_mb, device):
    """The Markdown report: equal-work epochs against the released code, then the rest."""
    shipped_batch = ctx["shipped"][0]
    threads = torch.get_num_threads()
    malloc = ("tuned (MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ set)"
              if os.environ.get("MALLOC_MMAP_MAX_") else "untuned")
    load = {"idle": "no other job", "spin": "one other core kept busy by a spinning process",
            "busy": f"another job on the machine: {args.load_note or 'unnamed'}"}[args.other_core]
    lines = ["# HetComp student on CiteULike-sized inputs (benchmarks/bench_student.py)", "",
             f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cpus, "
             f"torch {torch.__version__}, {threads} torch threads, device {device}; glibc "
             f"malloc {malloc}; load: {load}",
             f"data: CiteULike ({split.n_users - 1} users, {split.n_items - 1} items, "
             f"{len(split.train)} training interactions), synthetic trajectories 6 x 4 x top-100; "
             f"median of {args.repeats}", "",
             f"## Training epoch at equal work: {EQUAL_BATCH}-interaction batches "
             f"({ctx['equal'][1]} batches, as the released code), {threads} threads", "",
             "| loss | ours, wall s | ours, CPU s | released, untuned s | x faster | "
             "released, glibc tuned s | x faster |", "|---|---:|---:|---:|---:|---:|---:|"]
    for rank, name in ((False, "epoch, overall loss"), (True, "epoch, rank loss")):
        wall, cpu = epochs["equal", rank]
        released = RELEASED.get((name, args.busy)) if threads == (1 if args.busy else 2) else None
        untuned, tuned = released or (None, None)
        cells = [f"{untuned:g}" if untuned else "n/a", f"{untuned / wall:.1f}" if untuned else "",
                 f"{tuned:g}" if tuned else "n/a", f"{tuned / wall:.1f}" if tuned else ""]
        lines.append(f"| {name.split(', ')[1]} | {wall:.3f} | {cpu:.3f} | "
                     + " | ".join(cells) + " |")
    released_for = "one thread, the other core busy" if args.busy else "two threads, quiet"
    lines += ["", f"Released figures: {released_for}, 78 batches of 1,024 interactions "
              "(n/a: not measured for this thread count and load).", "",
              f"## What the shipped {shipped_batch}-interaction batches buy "
              f"({ctx['shipped'][1]} batches per epoch: fewer, larger optimiser steps; a "
              "different amount of work, not a like-for-like comparison)", "",
              "| loss | shipped batches, wall s | equal-work batches, wall s | epoch x faster |",
              "|---|---:|---:|---:|"]
    for rank, name in ((False, "overall"), (True, "rank")):
        shipped, equal = epochs["shipped", rank][0], epochs["equal", rank][0]
        lines.append(f"| {name} | {shipped:.3f} | {equal:.3f} | {equal / shipped:.1f} |")
    if rows:
        lines += ["", "## Knowledge and evaluation", "",
                  "| operation | ours, wall s | ours, CPU s | released s | x faster |",
                  "|---|---:|---:|---:|---:|"]
    for name, (wall, cpu) in rows:
        ref = RELEASED_OTHER.get(name.split(" (")[0])
        cells = [f"{ref:g}" if ref else "", f"{ref / wall:.1f}" if ref else ""]
        lines.append(f"| {name} | {wall:.3f} | {cpu:.3f} | " + " | ".join(cells) + " |")
    lines += ["", f"knowledge in memory: {mem_mb:.1f} MB (built in {build_s:.2f} s); peak "
              f"resident memory of the whole process (RecBole dataset included): {peak_mb:.0f} MB "
              "(released: 14 GB with half-precision trajectories)"]
    if rows:
        lines.append("knowledge-construction step as HetCompTrainer runs it: the student's lists "
                     "come from the validation pass that precedes every step (same weights), then "
                     "the advance rule, then a target rebuild")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
