"""The vectorised negative sampler draws from RecBole's distribution (issue 12, item 5).

The expected distributions are written here from the rule RecBole documents, not from either
sampler: a negative of user u is drawn from the items 1..item_num-1 that u has not interacted
with in training, uniformly, or (popularity) in proportion to (count / total) ** alpha with the
counts taken over every interaction the sampler was built from. Both RecBole's sampler and ours
are compared with it, so a wrong reading of RecBole would show as RecBole's own miss.
"""

import os

import numpy as np
import pytest
import torch

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.sampling import VectorisedSampler, VectorisedTrainDataLoader
from recbole_hetcomp.data.split import build_split, make_loaders
from recbole_hetcomp.registry import get_model
from recbole_hetcomp.trainer import make_trainer

from conftest import TEST_USE_GPU

DRAWS = 60_000          # draws per sampler and user
TOLERANCE = 0.03        # total variation allowed: sampling noise here is about 0.01


def write_skewed_dataset(root, name="skewed", n_users=30, n_items=40, seed=1):
    """Zipf-popular items, so popularity sampling differs clearly from uniform sampling."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.1
    popularity /= popularity.sum()
    os.makedirs(os.path.join(root, name), exist_ok=True)
    lines = ["user_id:token\titem_id:token"]
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(6, 15)), replace=False, p=popularity)
        lines += [f"u{u}\ti{i}" for i in items]
    with open(os.path.join(root, name, f"{name}.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture
def skewed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_skewed_dataset(str(tmp_path / "data"))

    def make(**extra):
        config = Config("BPR", "skewed", config_dict={
            "data_path": str(tmp_path / "data"), "use_gpu": TEST_USE_GPU, "state": "ERROR",
            "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"),
            "load_col": {"inter": ["user_id", "item_id"]}, **extra})
        split = build_split(config)
        return config, split, make_loaders(config, split)[0]
    return make


def expected_distribution(split, user, distribution, alpha=1.0):
    """P(item) for a negative of ``user``, from the rule (see the module docstring)."""
    n_items = split.n_items
    iid, uid = split.dataset.iid_field, split.dataset.uid_field
    train = split.train.inter_feat
    used = set(train[iid][train[uid] == user].tolist())
    if distribution == "uniform":
        weights = np.ones(n_items)
    else:
        counts = np.zeros(n_items)
        for part in (split.train, split.valid, split.test):
            for item in part.inter_feat[iid].tolist():
                counts[item] += 1
        weights = np.where(counts > 0, (counts / counts.sum()) ** alpha, 0.0)
    weights[0] = 0.0  # the padding item
    for item in used:
        weights[item] = 0.0
    return weights / weights.sum(), used


def empirical(sampler, user, n_items, seed):
    np.random.seed(seed)
    draws = sampler.sample_by_user_ids(np.full(DRAWS, user), None, 1).numpy()
    return np.bincount(draws, minlength=n_items) / DRAWS


def total_variation(p, q):
    return 0.5 * np.abs(p - q).sum()


@pytest.mark.parametrize("distribution,alpha", [("uniform", 1.0), ("popularity", 1.0),
                                                ("popularity", 0.5)])
def test_same_distribution_as_recbole(skewed, distribution, alpha):
    _, split, loader = skewed(train_neg_sample_args={
        "distribution": distribution, "sample_num": 1, "alpha": alpha, "dynamic": False,
        "candidate_num": 0})
    recbole_sampler = loader._sampler
    ours = VectorisedSampler(recbole_sampler)
    uniform, _ = expected_distribution(split, 1, "uniform")
    for user in (1, 5, 17):
        expected, used = expected_distribution(split, user, distribution, alpha)
        theirs = empirical(recbole_sampler, user, split.n_items, seed=user)
        mine = empirical(ours, user, split.n_items, seed=user + 100)
        assert total_variation(theirs, expected) < TOLERANCE   # our reading of RecBole
        assert total_variation(mine, expected) < TOLERANCE
        assert mine[list(used)].sum() == 0 and mine[0] == 0    # never a used item or padding
    if distribution == "popularity":
        # The test can tell the two distributions apart (else it would prove nothing).
        assert total_variation(expected_distribution(split, 1, "popularity", alpha)[0],
                               uniform) > 4 * TOLERANCE


def test_layout_and_batches_of_many_users(skewed):
    _, split, loader = skewed(train_neg_sample_args={
        "distribution": "uniform", "sample_num": 3, "alpha": 1.0, "dynamic": False,
        "candidate_num": 0})
    ours = VectorisedSampler(loader._sampler)
    users = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    np.random.seed(0)
    values = ours.sample_by_user_ids(users, None, 3).numpy()
    assert values.shape == (24,)
    for j in range(3):                       # RecBole's layout: draw j of user i at j * n + i
        for i, user in enumerate(users):
            _, used = expected_distribution(split, user, "uniform")
            assert values[j * len(users) + i] not in used
            assert 1 <= values[j * len(users) + i] < split.n_items
    with pytest.raises(ValueError, match="not exist"):
        ours.sample_by_user_ids(np.array([split.n_users + 5]), None, 1)


def test_bitset_and_sorted_keys_agree(skewed, monkeypatch):
    _, split, loader = skewed()
    bits = VectorisedSampler(loader._sampler)
    monkeypatch.setattr("recbole_hetcomp.data.sampling.BITSET_BYTES", 0)
    keys = VectorisedSampler(loader._sampler)
    assert bits._bits is not None and keys._bits is None
    users = np.repeat(np.arange(1, split.n_users), split.n_items)
    items = np.tile(np.arange(split.n_items), split.n_users - 1)
    truth = np.array([v in loader._sampler.used_ids[u] for u, v in zip(users, items)])
    assert truth.sum() == len(split.train)
    assert (bits._is_used(users, items) == truth).all()
    assert (keys._is_used(users, items) == truth).all()


def pairs_of_epoch(loader, uid, iid):
    batches = list(loader)
    pairs = [(u, i) for b in batches for u, i in zip(b[uid].tolist(), b[iid].tolist())]
    return [len(b) for b in batches], pairs


def test_key_switches_the_training_loader_and_trains(skewed):
    config, split, recbole_loader = skewed(train_batch_size=64)
    assert not config["vectorised_loader"]            # RecBole's loader by default
    assert type(recbole_loader) is not VectorisedTrainDataLoader
    assert not isinstance(recbole_loader._sampler, VectorisedSampler)
    config, split, loader = skewed(vectorised_loader=True, train_batch_size=64)
    assert type(loader) is VectorisedTrainDataLoader
    assert isinstance(loader._sampler, VectorisedSampler)
    # Batches as RecBole's: same sizes, every training interaction once per epoch, reshuffled.
    uid, iid = split.dataset.uid_field, split.dataset.iid_field
    sizes, first = pairs_of_epoch(loader, uid, iid)
    recbole_sizes, recbole_pairs = pairs_of_epoch(recbole_loader, uid, iid)
    assert sizes == recbole_sizes and len(loader) == len(recbole_loader) == len(sizes)
    assert sorted(first) == sorted(recbole_pairs)
    assert sorted(first) == sorted(zip(split.train.inter_feat[uid].tolist(),
                                       split.train.inter_feat[iid].tolist()))
    assert pairs_of_epoch(loader, uid, iid)[1] != first
    model = get_model("BPR")(config, split.train).to(config["device"])
    trainer = make_trainer(config, model)
    loss = trainer._train_epoch(loader, 0)
    assert np.isfinite(float(loss if not isinstance(loss, tuple) else sum(loss)))
    batch = next(iter(loader))
    users, negatives = batch[split.dataset.uid_field], batch["neg_" + split.dataset.iid_field]
    for user, item in zip(users.tolist(), negatives.tolist()):
        assert item not in expected_distribution(split, user, "uniform")[1]
    assert isinstance(negatives, torch.Tensor) and negatives.dtype == torch.long
