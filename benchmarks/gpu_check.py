"""The GPU-only checks of benchmarks/gpu_check.sh: an ml-1m student epoch (time, host syncs,
peak memory) and CPU-vs-CUDA agreement of the knowledge (targets and snapshot choices).

ml-1m interactions (RecBole's default split) with synthetic teacher rankings of the real shape
(6 teachers x 4 snapshots x top-100), as bench_student.py does for CiteULike.

- Epoch: one untimed epoch, then one timed epoch of each loss at the shipped batch size, with
  ``torch.cuda.set_sync_debug_mode`` counting every host synchronisation (the design allows
  one per batch, the NaN check, and one to read the epoch's loss). Run on the simulated
  accelerator (``python tests/sim_accelerator.py benchmarks/gpu_check.py --quick``, what the
  dry run does), the count is the simulation's: the number the GPU run should reproduce.
- Agreement: the same trajectories and the same student weights on the CPU and on the device:
  T_u must be identical; the student's top-50 lists are compared, and wherever a user's lists
  agree, the knowledge step must choose the same snapshots and rebuild the same targets.

    python benchmarks/gpu_check.py --device cuda --data-path dataset --out part.md
    python tests/sim_accelerator.py benchmarks/gpu_check.py --quick   # dry run (ml-100k)
"""

import argparse
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_student import synthetic_trajectories  # noqa: E402

from recbole_hetcomp.config import Config  # noqa: E402
from recbole_hetcomp.data.split import build_split, make_loaders  # noqa: E402
from recbole_hetcomp.device import describe, synchronize  # noqa: E402
from recbole_hetcomp.model import HetCompStudent  # noqa: E402
from recbole_hetcomp.trainer import HetCompTrainer  # noqa: E402
from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet  # noqa: E402


def count_syncs(fn, device):
    """(result, number of host synchronisations fn made on ``device``); None on the CPU
    (nothing to count). On the simulated accelerator, the syncs it counts."""
    sim = sys.modules.get("sim_accelerator")
    if sim is not None and device == sim.SIM_DEVICE:
        with sim.count_host_syncs() as syncs:
            result = fn()
        return result, sum(syncs.values())
    if device.type != "cuda":
        return fn(), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchroniz" in str(w.message) for w in caught)


def student_epoch(config, split, trajectories, device, rank, lines):
    train_data, _, _ = make_loaders(config, split)
    history = split.train.history_item_matrix()[0]
    knowledge = KnowledgeSet(trajectories, history, split.n_items, device=device)
    model = HetCompStudent(config, split.train).to(device)
    trainer = HetCompTrainer(config, model)
    trainer.set_knowledge(knowledge)
    trainer.switched = rank
    trainer._train_epoch(train_data, 1)  # warm-up: allocations, kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    _, syncs = count_syncs(lambda: trainer._train_epoch(train_data, 1), device)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda"
            else float("nan"))
    loss = "rank" if rank else "overall"
    lines.append(f"| {config['dataset']} student epoch, {loss} loss | {len(train_data)} "
                 f"batches of {config['train_batch_size']} | {seconds:.2f} s | "
                 f"{'-' if syncs is None else syncs} | {peak:.2f} GiB | "
                 f"chunk {trainer.chunk_users} users |")


def agreement(config, split, trajectories, device, lines):
    history = split.train.history_item_matrix()[0]
    cpu = torch.device("cpu")
    sets = {d: KnowledgeSet(trajectories, history, split.n_items, device=d) for d in (cpu, device)}
    same_targets = torch.equal(sets[cpu].targets, sets[device].targets.cpu())
    torch.manual_seed(0)
    model = HetCompStudent(config, split.train)
    models = {cpu: model, device: HetCompStudent(config, split.train).to(device)}
    models[device].load_state_dict(model.state_dict())
    tops = {}
    for d, knowledge in sets.items():
        with torch.no_grad():
            tops[d] = knowledge.student_top(models[d].user_scores, config["discrepancy_n"]).cpu()
        knowledge.construct(models[d].user_scores, epoch=config["kc_period"],
                            p=config["kc_period"], alpha=config["alpha"], decay=config["decay"],
                            n=config["discrepancy_n"])
    agree = (tops[cpu] == tops[device]).all(1)
    choice_cpu, choice_dev = sets[cpu].state.choice, sets[device].state.choice.cpu()
    choices_ok = torch.equal(choice_cpu[agree], choice_dev[agree])
    rows = agree & (choice_cpu == choice_dev).all(1)
    targets_ok = torch.equal(sets[cpu].targets[rows], sets[device].targets.cpu()[rows])
    lines.append(f"- targets T_u before any step identical on cpu and {device}: "
                 f"{same_targets}")
    lines.append(f"- student top-{config['discrepancy_n']} lists identical for "
                 f"{int(agree.sum())} of {len(agree)} users; on those, snapshot choices "
                 f"identical: {choices_ok}; targets identical where choices agree: {targets_ok}")
    return same_targets and choices_ok and targets_ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-path", default="dataset")
    parser.add_argument("--quick", action="store_true", help="ml-100k instead of ml-1m")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    dataset = "ml-100k" if args.quick else "ml-1m"
    base = {"use_gpu": args.device != "cpu", "state": "ERROR", "show_progress": False}
    if not args.quick:
        base["data_path"] = args.data_path
    config = Config("HetCompStudent", dataset, config_dict=base)
    device = config["device"]
    split = build_split(config)
    trajectories = synthetic_trajectories(split.train.history_item_matrix()[0], split.n_items)
    lines = [f"### {dataset} on {describe(device)}", "",
             "| what | work | time | host syncs | peak GPU memory | note |",
             "|---|---|---|---|---|---|"]
    for rank in (False, True):
        student_epoch(config, split, trajectories, device, rank, lines)
    lines.append("")
    ok = agreement(config, split, trajectories, device, lines)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
