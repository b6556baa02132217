"""Trajectory store: round trip, corruption, mismatch and interrupted writes."""

import json
import os

import numpy as np
import pytest

from recbole_hetcomp.trajectory import StoreError, Trajectory, TrajectoryStore
from recbole_hetcomp.trajectory.store import settings_hash

SETTINGS = {"model": "BPR", "embedding_size": 64, "seed": 1}


def make(fingerprint="f" * 64):
    rng = np.random.default_rng(0)
    rankings = rng.integers(1, 500, size=(4, 30, 100)).astype(np.uint16)
    observed = rng.integers(0, 500, size=(30, 100)).astype(np.uint16)
    manifest = {"teacher": "BPR", "settings": SETTINGS, "settings_hash": settings_hash(SETTINGS),
                "split_fingerprint": fingerprint, "snapshot_epochs": [1, 2, 3, 4],
                "n_users": 30, "n_items": 500, "M": 100, "C": 4, "best_epoch": 4,
                "test_result": {}, "best_valid_result": {}, "train_seconds": 1.0,
                "record_seconds": 0.1, "n_params": 10, "inference_ms_per_1000_users": 1.0}
    return Trajectory(rankings, observed, manifest)


@pytest.fixture
def stored(tmp_path):
    store = TrajectoryStore(str(tmp_path / "traj"))
    path = store.path_for("tiny", "f" * 64, "BPR", SETTINGS)
    store.save(path, make())
    return store, path


def test_round_trip(stored):
    store, path = stored
    loaded = store.load(path, "f" * 64, SETTINGS)
    original = make()
    np.testing.assert_array_equal(loaded.rankings, original.rankings)
    np.testing.assert_array_equal(loaded.observed, original.observed)
    assert loaded.rankings.dtype == np.uint16
    assert loaded.manifest["snapshot_epochs"] == [1, 2, 3, 4]
    assert sorted(os.listdir(path)) == ["manifest.json", "observed.npy", "rankings.npy"]


def test_other_split_or_settings_refused(stored):
    store, path = stored
    with pytest.raises(StoreError, match="another split"):
        store.load(path, "0" * 64, SETTINGS)
    with pytest.raises(StoreError, match="other teacher settings"):
        store.load(path, "f" * 64, dict(SETTINGS, embedding_size=32))


def test_corrupt_and_truncated_files_refused(stored):
    store, path = stored
    file = os.path.join(path, "rankings.npy")
    data = bytearray(open(file, "rb").read())
    data[-1] ^= 0xFF
    open(file, "wb").write(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        store.load(path)
    open(file, "wb").write(bytes(data[: len(data) // 2]))
    with pytest.raises(StoreError, match="truncated"):
        store.load(path)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write('{"format": 1, "files": ')
    with pytest.raises(StoreError, match="corrupt manifest"):
        store.load(path)


def test_pickled_array_is_refused(stored):
    store, path = stored
    file = os.path.join(path, "observed.npy")
    np.save(file, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    import hashlib

    manifest["files"]["observed.npy"].update(
        bytes=os.path.getsize(file), sha256=hashlib.sha256(open(file, "rb").read()).hexdigest())
    json.dump(manifest, open(os.path.join(path, "manifest.json"), "w"))
    with pytest.raises(StoreError, match="cannot be read"):
        store.load(path)


def test_interrupted_write_leaves_nothing_valid(tmp_path, monkeypatch):
    store = TrajectoryStore(str(tmp_path / "traj"))
    path = store.path_for("tiny", "f" * 64, "BPR", SETTINGS)
    calls = []
    real_save = np.save

    def dying_save(file, array, **kwargs):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed half-way through the arrays
        return real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        store.save(path, make())
    monkeypatch.undo()
    assert not store.exists(path)
    assert not os.path.exists(path)
    assert os.listdir(os.path.dirname(path)) == []  # the temporary directory is gone too
    # A process killed outright leaves its temporary directory: it never looks like a store.
    os.makedirs(path + "x.tmp-1")
    real_save(os.path.join(path + "x.tmp-1", "rankings.npy"), make().rankings)
    assert not store.exists(path)


def test_replacing_keeps_the_old_store_aside(stored):
    store, path = stored
    store.save(path, make())
    siblings = os.listdir(os.path.dirname(path))
    assert len(siblings) == 2 and any(".replaced-" in s for s in siblings)
    assert store.load(path, "f" * 64, SETTINGS).teacher == "BPR"
