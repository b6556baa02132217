"""Trajectory recording: lists equal a brute-force top-M; snapshot rule; one shared split."""

import logging

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split, make_loaders
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.teachers import record_teacher, teacher_trajectory
from recbole_hetcomp.trainer import make_trainer
from recbole_hetcomp.trajectory import TrajectoryRecorder, select_snapshots

LOG = logging.getLogger("test")


def brute_force_top(model, uid_field, user, excluded, m):
    """(top-M item list, their scores, all scores) by sorting every allowed item in Python."""
    device = next(model.parameters()).device
    users = torch.tensor([user], device=device)
    scores = model.full_sort_predict(Interaction({uid_field: users}))
    scores = scores.view(-1).tolist()
    candidates = [i for i in range(1, len(scores)) if i not in excluded]
    candidates.sort(key=lambda i: -scores[i])
    top = candidates[:m]
    return top + [0] * (m - len(top)), [scores[i] for i in top], scores


@pytest.mark.parametrize("model_name", ["BPR", "CML", "MultiVAE", "EASE"])
def test_recorded_lists_equal_brute_force(tiny, model_name):
    _, base = tiny
    config = Config(model_name, "tiny", config_dict=dict(base, epochs=3, stopping_step=100))
    split = build_split(config)
    train, valid, _ = make_loaders(config, split)
    model = get_model(model_name)(config, split.train).to(config["device"])
    recorder = TrajectoryRecorder(model, split.train, top_m=15, batch_size=7,
                                  device=config["device"])
    trainer = make_trainer(config, model, recorder)
    trainer.fit(train, valid, saved=True)
    assert recorder.epochs == list(range(trainer.epochs))  # EASE: one closed-form epoch
    last = recorder.rankings[-1]  # recorded from the model as it is now (last epoch)
    model.eval()
    history, _, lengths = split.train.history_item_matrix()
    for user in range(1, split.n_users):
        observed = set(history[user, : lengths[user]].tolist())
        expected, expected_scores, scores = brute_force_top(
            model, split.dataset.uid_field, user, observed, 15)
        got = last[user].tolist()
        assert not observed & set(got) and len(set(got)) == len(got)
        # equal scores may come in either order (EASE scores many items exactly 0)
        assert [scores[i] for i in got if i] == pytest.approx(expected_scores, abs=1e-6)
        boundary = sorted((scores[i] for i in range(1, len(scores)) if i not in observed),
                          reverse=True)[:16]
        if len(set(boundary)) == len(boundary):  # no ties, not even at the cut: ids are exact
            assert got == expected
    # the observed ranking holds training items only, ranked the same way
    observed_lists = recorder.rank_all(observed=True)
    if model_name != "EASE":  # (EASE ties many scores: the order among equals is free)
        trainer.restore_best()  # read off the best validation pass = a fresh pass on its weights
        np.testing.assert_array_equal(trainer.best_observed, recorder.rank_all(observed=True))
    for user in range(1, split.n_users):
        items = set(history[user, : lengths[user]].tolist())
        got = [i for i in observed_lists[user].tolist() if i]
        assert set(got) <= items and len(got) == min(15, len(items))


def test_recorded_lists_hold_no_training_item_when_pairs_repeat(tiny, caplog):
    """A pair logged twice can fall in training and validation at once; RecBole's full-sort
    mask then leaves that training item unmasked, but recorded lists hold unobserved items."""
    from conftest import write_tiny_dataset

    data_path, base = tiny
    write_tiny_dataset(data_path, repeats=4)
    config = Config("BPR", "tiny", config_dict=dict(base, epochs=2))
    with caplog.at_level(logging.WARNING):
        split = build_split(config)
    assert "160 interactions of 'tiny' repeat a (user, item) pair" in caplog.text
    assert "rm_dup_inter: first" in caplog.text
    train, valid, _ = make_loaders(config, split)
    history, _, lengths = split.train.history_item_matrix()
    valid_items, _, valid_lengths = split.valid.history_item_matrix()
    shared = sum(len(set(history[u, :lengths[u]].tolist())
                     & set(valid_items[u, :valid_lengths[u]].tolist()))
                 for u in range(1, split.n_users))
    assert shared > 0  # the case under test exists in this split
    model = get_model("BPR")(config, split.train).to(config["device"])
    recorder = TrajectoryRecorder(model, split.train, top_m=15, batch_size=7,
                                  device=config["device"])
    make_trainer(config, model, recorder).fit(train, valid, saved=True)
    for lists in recorder.rankings:
        for user in range(1, split.n_users):
            assert not set(history[user, :lengths[user]].tolist()) & set(lists[user].tolist())


def test_select_snapshots_rule():
    scores = [0.1, 0.3, 0.5, 0.55, 0.6, 0.58]
    assert select_snapshots(scores, 4, [0.5, 0.7, 0.85]) == [1, 2, 3, 4]
    assert select_snapshots(scores, 4, [0.5, 0.8, 0.81]) == [1, 2, 2, 4]
    assert select_snapshots([0.9, 1.0], 1, [0.5, 0.7, 0.85]) == [0, 0, 0, 1]
    assert select_snapshots([0.0, 0.0], 1, [0.5, 0.7]) == [1, 1, 1]


def test_same_split_whatever_the_seed(tiny):
    _, base = tiny
    a = build_split(Config("BPR", "tiny", config_dict=dict(base, seed=1)))
    b = build_split(Config("CML", "tiny", config_dict=dict(base, seed=12345)))
    assert a.fingerprint == b.fingerprint
    for part_a, part_b in ((a.train, b.train), (a.test, b.test)):
        pairs = lambda p: sorted(zip(p.inter_feat["user_id"].tolist(),
                                     p.inter_feat["item_id"].tolist()))
        assert pairs(part_a) == pairs(part_b)
    other = build_split(Config("BPR", "tiny", config_dict=dict(base, split_seed=7)))
    assert other.fingerprint != a.fingerprint


def test_teacher_store_reused_then_rebuilt_when_corrupt(tiny, caplog):
    _, base = tiny
    config = Config("BPR", "tiny", config_dict=base)
    split = build_split(config)
    first = record_teacher(config, split, LOG)
    assert first.rankings.shape == (4, split.n_users, 10)
    assert first.manifest["snapshot_epochs"][-1] == first.manifest["best_epoch"]
    caplog.set_level(logging.INFO)
    again = teacher_trajectory(config, split, LOG)
    assert "reusing recorded trajectory" in caplog.text
    np.testing.assert_array_equal(again.rankings, first.rankings)
    from recbole_hetcomp.teachers import store_path

    _, path = store_path(config, split)
    with open(f"{path}/rankings.npy", "r+b") as f:
        f.truncate(100)
    caplog.clear()
    rebuilt = teacher_trajectory(config, split, LOG)
    assert "refusing trajectory store" in caplog.text and "truncated" in caplog.text
    assert rebuilt.rankings.shape == first.rankings.shape
