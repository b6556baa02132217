"""Teachers and seeds as Ray tasks (``teacher_workers`` / ``seed_workers``), and the run state
that lets an interrupted multi-seed run train only the seeds it had not finished.

The tests that start Ray skip where it is not installed (``pip install -e ".[test]"`` brings
it); the others run everywhere. Every run uses ``torch_threads=1``: a parallel run equals a
sequential one only at the same thread count per model.
"""

import glob
import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import recbole_hetcomp.pipeline as pipeline
from recbole_hetcomp.cli import main
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.quick_start import run_hetcomp
from recbole_hetcomp.serving.package import plain_state, read_weights

import sim_accelerator


def parallel_config(base, **extra):
    settings = dict(teachers=["BPR", "CML"], epochs=4, kc_period=1, eval_step=1, hetcomp_k=10,
                    hetcomp_l=3, discrepancy_n=5, embedding_size=4, torch_threads=1,
                    baseline_learning_rates=[0.01], seeds=[1, 2],
                    teacher_config={"default": {"epochs": 3, "eval_step": 1}})
    return {**base, **settings, **extra}


def _arrays(trajectory_dir, teacher):
    (path,) = glob.glob(os.path.join(trajectory_dir, "tiny", "*", f"{teacher}-*"))
    return [np.load(os.path.join(path, f"{name}.npy"), allow_pickle=False)
            for name in ("rankings", "observed")]


# --- without Ray -----------------------------------------------------------------------------
def test_workers_without_ray_name_the_extra(tiny, monkeypatch, capsys):
    _, base = tiny
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as when absent
    for key in ("teacher_workers", "seed_workers"):
        with pytest.raises(HetCompError, match=rf'{key}: 2 runs on Ray, which is not installed: '
                                               r'pip install "recbole-hetcomp\[ray\]"'):
            run_hetcomp("HetCompStudent", "tiny", config_dict=parallel_config(base, **{key: 2}))
    assert not os.path.exists(base["trajectory_dir"])  # refused before anything trained
    capsys.readouterr()
    status = main(["--model=HetCompStudent", "--dataset=tiny", f"--data_path={base['data_path']}",
                   "--teacher_workers=2", "--state=ERROR"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "recbole-hetcomp[ray]" in err


def test_interrupted_multi_seed_run_trains_only_the_missing_seed(tiny, monkeypatch):
    """Sequential path: finished seeds survive a stop; no Ray is imported on the way."""
    _, base = tiny
    monkeypatch.setitem(sys.modules, "ray", None)  # workers = 1 must never import ray
    config = parallel_config(base, ablations=["no_adaptive_transfer"])
    real_student, real_baseline = pipeline.train_student, pipeline.train_baseline
    trained, states, scores = [], {}, {}

    def student(config, split, trajectories, history, seed, logger, weights=None):
        if seed == 2 and stop[0]:
            raise KeyboardInterrupt  # the run is stopped during seed 2
        out = real_student(config, split, trajectories, history, seed, logger, weights)
        if config["knowledge_transfer"] == "adaptive":  # HetCompStudent, not the ablation
            trained.append(("student", seed))
            states[seed], scores[seed] = plain_state(out[2]), out[0]["best_valid_score"]
        return out

    def baseline(config, split, seed, logger):
        trained.append(("baseline", seed))
        return real_baseline(config, split, seed, logger)

    monkeypatch.setattr(pipeline, "train_student", student)
    monkeypatch.setattr(pipeline, "train_baseline", baseline)
    stop = [True]
    first = {}  # seed -> its outcome, as the stopped run kept it
    real_save = pipeline.SeedStore.save

    def save(self, outcome):
        first.setdefault(outcome["seed"], outcome)
        return real_save(self, outcome)

    monkeypatch.setattr(pipeline.SeedStore, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    assert trained == [("student", 1), ("baseline", 1)] and list(first) == [1]
    state_dir = os.path.join(base["checkpoint_dir"], "run-state")
    assert len(glob.glob(os.path.join(state_dir, "tiny-*", "seed-1.json"))) == 1

    stop[0] = False
    trained.clear()
    report = run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    assert trained == [("student", 2), ("baseline", 2)]  # seed 1 was not trained again
    rows = {row["model"]: row for row in report["rows"]}
    for name, kept in (("HetCompStudent", first[1]["student"]),
                       ("BPR (same size)", first[1]["baseline"]),
                       ("HetComp w/o adaptive transfer", first[1]["variants"][0]["result"])):
        assert rows[name]["seeds"] == 2
        assert rows[name]["per_seed"][0] == kept["test_result"]  # seed 1: the stopped run's
    assert report["runs"][0] == first[1]["run"]
    assert [run["seed"] for run in report["runs"]] == [1, 2]
    # the package holds the best seed's best-state weights, whichever run trained it
    best = 1 if scores[1] >= scores[2] else 2  # the first seed on ties
    package = read_weights(report["packages"]["student"])
    assert set(package) == set(states[best])
    assert all(torch.equal(package[k], states[best][k]) for k in package)
    assert not os.path.exists(state_dir)  # the completed run leaves no state behind


def test_saved_seed_that_does_not_verify_is_trained_again(tiny, caplog):
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.run_state import SeedStore

    _, base = tiny
    config = Config("HetCompStudent", "tiny", config_dict=base)
    split = types.SimpleNamespace(fingerprint="f" * 64)
    teacher = types.SimpleNamespace(teacher="BPR", manifest={
        "settings_hash": "s" * 64, "files": {"rankings.npy": {"sha256": "r" * 64}}})
    store = SeedStore(config, split, [teacher], None, logging.getLogger())
    outcome = {"seed": 7, "student": {"test_result": {"recall@10": 0.5}}, "run": {"seed": 7},
               "baseline": None, "variants": [],
               "states": {"student": {"w": torch.arange(6.0).reshape(2, 3)}}}
    store.save(outcome)
    loaded = store.load(7)
    assert loaded["student"] == outcome["student"] and loaded["baseline"] is None
    assert torch.equal(loaded["states"]["student"]["w"], outcome["states"]["student"]["w"])
    # another configuration (here: other teacher weights) never sees it
    assert SeedStore(config, split, [teacher], torch.tensor([1, 2]),
                     logging.getLogger()).load(7) is None
    weights = os.path.join(store.folder, "seed-7-student.pth")
    with open(weights, "r+b") as f:  # one byte flipped in the middle
        f.seek(os.path.getsize(weights) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    caplog.set_level(logging.WARNING)
    assert store.load(7) is None
    assert "ignoring the saved results of seed 7" in caplog.text and "checksum" in caplog.text
    with open(os.path.join(store.folder, "seed-7.json"), "w") as f:
        f.write("{not json")
    assert store.load(7) is None
    store.clear()
    assert not os.path.exists(os.path.dirname(store.folder))


def test_worker_refuses_a_split_other_than_the_drivers(tiny):
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.parallel import _worker_split

    _, base = tiny
    config = Config("HetCompStudent", "tiny", config_dict=base)
    with pytest.raises(HetCompError, match="gives this worker another split than the driver's"):
        _worker_split(config, "0" * 64)


@pytest.mark.parametrize("extra, message", [
    ({"teacher_workers": 0}, "teacher_workers must be a positive integer"),
    ({"seed_gpus": -1}, "seed_gpus must be a number >= 0"),
    ({"teacher_gpus": 1.5}, "teacher_gpus must be a fraction of one GPU or a whole number"),
    ({"teacher_gpus": 1, "use_gpu": False, "teacher_workers": 2}, "but use_gpu is False"),
])
def test_worker_settings_refused_before_training(tiny, extra, message):
    _, base = tiny
    with pytest.raises(HetCompError, match=message):
        run_hetcomp("HetCompStudent", "tiny", config_dict=parallel_config(base, **extra))


# --- with Ray --------------------------------------------------------------------------------
@pytest.mark.slow  # ~60 s on a busy 2-core machine: two runs, four Ray worker processes
@pytest.mark.skipif(sim_accelerator._ROUNDING,
                    reason="Ray workers run outside the simulated accelerator's rounding")
def test_two_workers_give_the_sequential_runs_trajectories_and_metrics(tiny, caplog):
    pytest.importorskip("ray")
    _, base = tiny
    extra = dict(ablations=["no_adaptive_transfer"], export_teachers=True)
    runs = {}
    caplog.set_level(logging.INFO)
    for name, workers in (("sequential", 1), ("parallel", 2)):
        config = parallel_config(base, state="INFO", teacher_workers=workers,
                                 seed_workers=workers, **extra,
                                 trajectory_dir=os.path.join(base["trajectory_dir"], name),
                                 checkpoint_dir=os.path.join(base["checkpoint_dir"], name))
        caplog.clear()
        runs[name] = (run_hetcomp("HetCompStudent", "tiny", config_dict=config), config,
                      caplog.text)
    (sequential, sconfig, _), (parallel, pconfig, log) = runs["sequential"], runs["parallel"]
    for teacher in ("BPR", "CML"):
        for seq, par in zip(_arrays(sconfig["trajectory_dir"], teacher),
                            _arrays(pconfig["trajectory_dir"], teacher)):
            assert np.array_equal(seq, par)
        assert f"teacher {teacher}: started as a Ray task" in log
        assert f"teacher {teacher}: finished on Ray worker pid" in log
    for seed in (1, 2):
        assert f"seed {seed}: finished on Ray worker pid" in log
    assert [r["model"] for r in parallel["rows"]] == [r["model"] for r in sequential["rows"]]
    for seq, par in zip(sequential["rows"], parallel["rows"]):
        assert par["test_result"] == seq["test_result"], seq["model"]
        assert par.get("per_seed") == seq.get("per_seed")
    for seq, par in zip(sequential["runs"], parallel["runs"]):
        assert par["valid_history"] == seq["valid_history"]
        assert par["baseline_valid_history"] == seq["baseline_valid_history"]
    for name in ("student", "baseline", "BPR", "CML"):  # packages made from workers' weights
        seq, par = (read_weights(r["packages"][name]) for r in (sequential, parallel))
        assert set(seq) == set(par) and all(torch.equal(seq[k], par[k]) for k in seq)


def test_a_failed_worker_stops_the_run_with_one_line(tiny, tmp_path):
    pytest.importorskip("ray")
    _, base = tiny
    # BPR diverges at once (RecBole stops on a NaN loss) while CML trains beside it
    args = ["--model=HetCompStudent", "--dataset=tiny", f"--data_path={base['data_path']}",
            f"--trajectory_dir={base['trajectory_dir']}",
            f"--checkpoint_dir={base['checkpoint_dir']}", "--teachers=[BPR,CML]",
            "--teacher_workers=2", "--torch_threads=1", "--use_gpu=False", "--epochs=2",
            "--trajectory_topk=10", "--valid_metric=Recall@10", "--train_batch_size=256",
            "--hetcomp_k=10", "--hetcomp_l=3", "--discrepancy_n=5", "--show_progress=False",
            "--teacher_config={BPR: {learning_rate: 1.0e+30}, default: {epochs: 3}}"]
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "run_hetcomp.py")
    done = subprocess.run([sys.executable, script, *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("error: teacher BPR failed on Ray worker pid ")
    assert lines[0].endswith("ValueError: Training loss is nan")
    # a teacher that had finished before the failure stays stored for the next run
    if "teacher CML: finished on Ray worker" in done.stdout + done.stderr:
        assert _arrays(base["trajectory_dir"], "CML")[0].size
