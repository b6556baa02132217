"""Ensemble targets and observed lists against a slow, obvious per-user loop."""

import math

import pytest
import torch

from recbole_hetcomp.knowledge import (
    ensemble_targets,
    ensemble_top,
    fixed_point_importance,
    observed_lists,
    rank_importance,
)


def reference_top(lists, k, temperature):
    """lists: python list of X rankings (lists of ids, 0 = padding). Returns (items, mask)."""
    weights = {}
    for ranking in lists:
        for r, item in enumerate(ranking):
            if item != 0:
                weights.setdefault(item, []).append(math.exp(-r / temperature))
    # fsum is exactly rounded, so equal multisets of ranks give equal scores: exact ties.
    order = sorted(weights, key=lambda i: (-math.fsum(weights[i]), i))[:k]
    return order + [0] * (k - len(order)), [True] * len(order) + [False] * (k - len(order))


def random_lists(gen, b, x, m, n_items):
    """(B, X, M) rankings of distinct items from a small catalogue, 0-padded at random lengths."""
    out = torch.zeros(b, x, m, dtype=torch.long)
    for i in range(b):
        for j in range(x):
            length = int(torch.randint(0, min(m, n_items - 1) + 1, (1,), generator=gen))
            out[i, j, :length] = torch.randperm(n_items - 1, generator=gen)[:length] + 1
    return out


def test_rank_importance():
    w = rank_importance(5, temperature=10.0)
    assert w.dtype == torch.float64
    expected = torch.tensor([math.exp(-r / 10) for r in range(5)], dtype=torch.float64)
    assert torch.allclose(w, expected)
    fixed = fixed_point_importance(400, temperature=10.0)
    assert fixed.dtype == torch.long and bool((fixed >= 1).all())
    assert bool((fixed[:-1] >= fixed[1:]).all())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [10.0, 2.0])
def test_ensemble_top_matches_reference(seed, temperature):
    gen = torch.Generator().manual_seed(seed)
    b, x, m, n_items = 12, 1 + seed % 4, 7, 10
    lists = random_lists(gen, b, x, m, n_items)
    k = 12  # larger than most rows' candidates: exercises the padded tail
    items, mask = ensemble_top(lists, k, temperature)
    assert items.shape == (b, k) and mask.shape == (b, k)
    for i in range(b):
        ref_items, ref_mask = reference_top(lists[i].tolist(), k, temperature)
        assert items[i].tolist() == ref_items
        assert mask[i].tolist() == ref_mask


def test_ensemble_top_long_lists_use_stable_sort_path():
    # 8 lists of 300 with a flat importance: the score and position bits no longer fit one int64
    # key, so the stable-sort path runs; it must give the same answer as the reference.
    gen = torch.Generator().manual_seed(7)
    lists = random_lists(gen, 2, 8, 300, 400)
    items, mask = ensemble_top(lists, 350, temperature=1e6)
    for i in range(2):
        ref_items, ref_mask = reference_top(lists[i].tolist(), 350, 1e6)
        assert items[i].tolist() == ref_items and mask[i].tolist() == ref_mask


def test_ensemble_top_ties_broken_by_smaller_id():
    # Item 9 and item 3 are each ranked first by one ranker: equal scores, 3 goes first.
    lists = torch.tensor([[[9, 5, 0], [3, 5, 0]]])
    items, mask = ensemble_top(lists, 4)
    assert items.tolist() == [[5, 3, 9, 0]]
    assert mask.tolist() == [[True, True, True, False]]


def test_ensemble_top_padding_only_and_int16():
    lists = torch.zeros(3, 2, 4, dtype=torch.int16)
    lists[1, 0, 0] = 7
    items, mask = ensemble_top(lists, 3)
    assert items.tolist() == [[0, 0, 0], [7, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[False] * 3, [True, False, False], [False] * 3]


def test_ensemble_top_small_k_and_empty():
    lists = torch.tensor([[[4, 2, 1]]])
    assert ensemble_top(lists, 2)[0].tolist() == [[4, 2]]
    items, mask = ensemble_top(torch.zeros(2, 3, 0, dtype=torch.long), 2)
    assert items.tolist() == [[0, 0]] * 2 and not mask.any()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64])
def test_ensemble_targets_matches_reference(seed, dtype):
    gen = torch.Generator().manual_seed(100 + seed)
    x, c, u, m, n_items, k = 3, 4, 11, 6, 12, 9
    rankings = random_lists(gen, x * c, u, m, n_items).reshape(x, c, u, m).to(dtype)
    choice = torch.randint(0, c, (u, x), generator=gen)
    targets, mask = ensemble_targets(rankings, choice, k=k, temperature=10.0, batch_size=4)
    assert targets.dtype == torch.long and mask.dtype == torch.bool
    for user in range(u):
        chosen = [rankings[t, choice[user, t], user].tolist() for t in range(x)]
        ref_items, ref_mask = reference_top(chosen, k, 10.0)
        assert targets[user].tolist() == ref_items
        assert mask[user].tolist() == ref_mask
        # Never padding as a valid item, never an item outside the chosen lists.
        valid = targets[user][mask[user]].tolist()
        assert 0 not in valid
        assert set(valid) <= {i for lst in chosen for i in lst}
        assert len(set(valid)) == len(valid)


def test_ensemble_targets_rejects_bad_choice():
    rankings = torch.ones(2, 3, 4, 5, dtype=torch.int32)
    with pytest.raises(ValueError):
        ensemble_targets(rankings, torch.full((4, 2), 3), k=3)
    with pytest.raises(ValueError):
        ensemble_targets(rankings, torch.zeros(4, 3, dtype=torch.long), k=3)


@pytest.mark.parametrize("seed", range(4))
def test_observed_lists_matches_reference(seed):
    gen = torch.Generator().manual_seed(200 + seed)
    x, u, m, n_items, l = 4, 13, 8, 20, 5
    observed = torch.zeros(x, u, m, dtype=torch.int32)
    n_train = []
    for user in range(u):
        count = user % (m + 2)  # 0..M+1 training items: shorter and longer than L and M
        n_train.append(count)
        train = torch.randperm(n_items - 1, generator=gen)[:count] + 1
        for t in range(x):
            ranked = train[torch.randperm(count, generator=gen)][:m]
            observed[t, user, :len(ranked)] = ranked.to(torch.int32)
    items, mask = observed_lists(observed, l=l, temperature=10.0, batch_size=5)
    for user in range(u):
        lists = observed[:, user].tolist()
        ref_items, ref_mask = reference_top(lists, l, 10.0)
        assert items[user].tolist() == ref_items
        assert mask[user].tolist() == ref_mask
        # Short users get short lists: no repeated, fake or padding items.
        valid = items[user][mask[user]].tolist()
        assert len(valid) == min(l, n_train[user]) == len(set(valid))
        assert 0 not in valid
