"""Shared fixtures: a tiny synthetic atomic dataset and configs that run in seconds."""

import os

import numpy as np
import pytest

#: HETCOMP_TEST_DEVICE=cuda runs the suite's models on the GPU (benchmarks/gpu_check.sh);
#: HETCOMP_TEST_DEVICE=sim on the simulated accelerator (tests/sim_accelerator.py): no GPU
#: needed, and a tensor left on the CPU fails as it would on CUDA.
TEST_DEVICE = os.environ.get("HETCOMP_TEST_DEVICE", "cpu")
if TEST_DEVICE not in ("cpu", "cuda", "sim"):
    raise SystemExit(f"HETCOMP_TEST_DEVICE={TEST_DEVICE!r}: use cpu, cuda or sim")
TEST_USE_GPU = TEST_DEVICE in ("cuda", "sim")


@pytest.fixture(autouse=True, scope="session")
def _simulated_accelerator():
    """Under HETCOMP_TEST_DEVICE=sim: what would run on CUDA runs on the simulated device, and
    every test under its placement rules."""
    if TEST_DEVICE != "sim":
        yield
        return
    from sim_accelerator import gpu_runs_on_sim, simulated_accelerator

    with simulated_accelerator(), gpu_runs_on_sim():
        yield


def write_tiny_dataset(root, name="tiny", n_users=40, n_items=60, seed=0, repeats=0):
    """Users in two taste groups (even / odd items), 8-20 items each: learnable in a few epochs.

    ``repeats`` > 0 logs each user's first ``repeats`` items a second time, later (a user who
    came back to an item): the split then puts some (user, item) pairs in two parts at once.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, name), exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(n_users):
        group = np.arange(u % 2, n_items, 2)
        k = int(rng.integers(8, 21))
        items = rng.choice(group, size=min(k, len(group)), replace=False)
        items = np.concatenate([items, items[:repeats]])
        lines += [f"u{u}\ti{i}\t1\t{t}" for t, i in enumerate(items)]
    with open(os.path.join(root, name, f"{name}.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """(data_path, base config dict) for the tiny dataset; cwd is a temporary directory."""
    monkeypatch.chdir(tmp_path)
    write_tiny_dataset(str(tmp_path / "data"))
    config = {
        "data_path": str(tmp_path / "data"),
        "use_gpu": TEST_USE_GPU,
        "show_progress": False,
        "state": "ERROR",
        "checkpoint_dir": str(tmp_path / "saved"),
        "trajectory_dir": str(tmp_path / "traj"),
        "train_batch_size": 256,
        "epochs": 2,
        "eval_step": 1,
        "trajectory_topk": 10,
        # the validation-weighted ensemble scores the recorded top-10 lists at this cut-off
        "valid_metric": "Recall@10",
    }
    return str(tmp_path / "data"), config
