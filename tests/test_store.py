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
    # the directory is named by the first 16 characters; the whole fingerprint must match
    with pytest.raises(StoreError, match="another split"):
        store.load(path, "f" * 63 + "0", SETTINGS)
    with pytest.raises(StoreError, match="other teacher settings"):
        store.load(path, "f" * 64, dict(SETTINGS, embedding_size=32))


def test_corrupt_and_truncated_files_refused(stored):
    # (the messages are matched in full: the test's own folder name holds "corrupt")
    store, path = stored
    file = os.path.join(path, "rankings.npy")
    data = bytearray(open(file, "rb").read())
    # the last id (uint16, little-endian) changed to another valid id, 1 (or 2 if it was 1):
    # same size, ids in the catalogue, so only the checksum can tell
    original = bytes(data)
    data[-2:] = b"\x01\x00" if data[-2:] != b"\x01\x00" else b"\x02\x00"
    open(file, "wb").write(bytes(data))
    changed = np.load(file)
    assert changed.max() < 500 and (changed != make().rankings).sum() == 1
    with pytest.raises(StoreError, match=r"rankings.npy is truncated or corrupt \(size or "
                                         "checksum differs from the manifest"):
        store.load(path)
    open(file, "wb").write(original[: len(original) // 2])
    with pytest.raises(StoreError, match=r"rankings.npy is truncated or corrupt \(size"):
        store.load(path)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write('{"format": 1, "files": ')
    with pytest.raises(StoreError, match="corrupt manifest .*manifest.json"):
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


def test_an_interrupted_replacement_keeps_the_old_store(stored, monkeypatch):
    """Replacing a store is atomic too: killed half-way through the new arrays, the old store
    is still the one at the path, whole, and nothing was set aside."""
    store, path = stored
    newer = make()
    newer.rankings[:] = 7
    calls = []
    real_save = np.save

    def dying_save(file, array, **kwargs):
        calls.append(file)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        store.save(path, newer)
    monkeypatch.undo()
    loaded = store.load(path, "f" * 64, SETTINGS)
    np.testing.assert_array_equal(loaded.rankings, make().rankings)
    assert store.set_aside_copies(path) == []
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)]


def test_set_aside_keeps_the_newest_copies(tmp_path):
    """keep_aside=2: after five saves (four replacements) the two copies kept are the two most
    recently set aside, i.e. the stores of saves 3 and 4 (generations 2 and 3)."""
    store = TrajectoryStore(str(tmp_path / "traj"), keep_aside=2)
    path = store.path_for("tiny", "f" * 64, "BPR", SETTINGS)
    for generation in range(5):
        trajectory = make()
        trajectory.manifest["generation"] = generation
        store.save(path, trajectory)
    kept = sorted(json.load(open(os.path.join(p, "manifest.json")))["generation"]
                  for p in store.set_aside_copies(path))
    assert kept == [2, 3]
    assert store.load(path).manifest["generation"] == 4


def test_teacher_settings_name_every_key_that_shapes_a_stored_trajectory(tiny):
    """README: a store is one (split fingerprint, teacher and settings); the settings are the
    teacher's model keys and training keys, seed, valid_metric (picks the snapshots) and
    metrics/topk (its stored results feed the report). Logging keys are not among them."""
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.teachers import teacher_settings

    _, base = tiny
    plain = teacher_settings(Config("BPR", "tiny", config_dict=base))
    assert plain["model"] == "BPR"
    for key in ("embedding_size", "learning_rate", "epochs", "train_batch_size", "seed",
                "valid_metric", "metrics", "topk", "trajectory_topk", "trajectory_fractions"):
        assert key in plain, key
    for change in ({"embedding_size": 8}, {"learning_rate": 0.5}, {"seed": 7},
                   {"valid_metric": "NDCG@10"}, {"metrics": ["Recall"]}, {"topk": [5]},
                   {"trajectory_topk": 5}):
        other = teacher_settings(Config("BPR", "tiny", config_dict=dict(base, **change)))
        assert settings_hash(other) != settings_hash(plain), change
    quiet = teacher_settings(Config("BPR", "tiny", config_dict=dict(base, state="INFO")))
    assert settings_hash(quiet) == settings_hash(plain)


class _Part:
    def __init__(self, pairs):
        import torch

        self.inter_feat = {"user_id": torch.tensor([u for u, _ in pairs], dtype=torch.long),
                           "item_id": torch.tensor([i for _, i in pairs], dtype=torch.long)}


def test_split_fingerprint_is_every_parts_interactions_in_any_order():
    """The split fingerprint (the store's and the package's split key) hashes which
    interactions each part holds, whatever their order within a part (split.py)."""
    import types

    from recbole_hetcomp.data.split import split_fingerprint

    dataset = types.SimpleNamespace(uid_field="user_id", iid_field="item_id", field2id_token={
        "user_id": ["[PAD]", "a", "b"], "item_id": ["[PAD]", "x", "y", "z", "w"]})
    settings = {"dataset": "tiny", "split_seed": 2020}
    train, valid, test = [(1, 1), (1, 2), (2, 3), (2, 1)], [(1, 3), (2, 2)], [(1, 4), (2, 4)]

    def fingerprint(*parts, settings=settings):
        return split_fingerprint(dataset, [_Part(p) for p in parts], settings)

    reference = fingerprint(train, valid, test)
    assert len(reference) == 64
    # the same interactions in another order within each part: the same split
    assert fingerprint(train[::-1], valid[::-1], [(2, 4), (1, 4)]) == reference
    # one interaction moved from validation to test, or another validation item: another split
    assert fingerprint(train, valid[:1], test + valid[1:]) != reference
    assert fingerprint(train, [(1, 3), (2, 4)], [(1, 4), (2, 2)]) != reference
    assert fingerprint(train, valid, [(1, 4), (2, 3)]) != reference
    assert fingerprint(train, valid, test, settings=dict(settings, dataset="other")) != reference
