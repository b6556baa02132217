"""Validation-weighted ensemble: weighted importances, list metrics and the weight search,
checked against slow loops written from the definitions (and RecBole's own metric code)."""

import math

import numpy as np
import pytest
import torch

from recbole_hetcomp.knowledge import (ensemble_targets, ensemble_top, integer_weights,
                                       list_metric, observed_lists, select_weights)


def reference_weighted_top(lists, weights, k, temperature):
    """score(i) = sum_x weights[x] * exp(-rank_x(i) / T); ties by the smaller id; 0 = padding."""
    terms = {}
    for ranking, w in zip(lists, weights):
        for r, item in enumerate(ranking):
            if item != 0 and w > 0:
                terms.setdefault(item, []).append(w * math.exp(-r / temperature))
    order = sorted(terms, key=lambda i: (-math.fsum(terms[i]), i))[:k]
    return order + [0] * (k - len(order))


def distinct_lists(gen, b, x, m, n_items):
    out = torch.zeros(b, x, m, dtype=torch.long)
    for i in range(b):
        for j in range(x):
            out[i, j] = torch.randperm(n_items - 1, generator=gen)[:m] + 1
    return out


@pytest.mark.parametrize("weights", [[2, 1, 0], [1, 3, 5], [0, 0, 4], [7, 7, 7]])
def test_weighted_ensemble_matches_reference(weights):
    gen = torch.Generator().manual_seed(sum(weights))
    lists = distinct_lists(gen, 10, 3, 8, 30)
    items, mask = ensemble_top(lists, 12, 10.0, weights=torch.tensor(weights))
    for i in range(10):
        expected = reference_weighted_top(lists[i].tolist(), weights, 12, 10.0)
        assert items[i].tolist() == expected
        assert mask[i].tolist() == [e != 0 for e in expected]


def test_uniform_weights_equal_no_weights():
    gen = torch.Generator().manual_seed(3)
    lists = distinct_lists(gen, 16, 4, 10, 25)
    plain = ensemble_top(lists, 20)
    ones = ensemble_top(lists, 20, weights=torch.ones(4, dtype=torch.long))
    threes = ensemble_top(lists, 20, weights=torch.full((4,), 3, dtype=torch.long))
    for got in (ones, threes):
        assert torch.equal(got[0], plain[0]) and torch.equal(got[1], plain[1])


def test_one_hot_weights_reproduce_the_single_teacher_targets():
    gen = torch.Generator().manual_seed(5)
    x, c, u, m = 3, 4, 20, 12
    rankings = torch.stack([torch.stack([distinct_lists(gen, u, 1, m, 60)[:, 0]
                                         for _ in range(c)]) for _ in range(x)])  # (X, C, U, M)
    choice = torch.randint(0, c, (u, x), generator=gen)
    for teacher in range(x):
        onehot = torch.zeros(x, dtype=torch.long)
        onehot[teacher] = 1
        weighted = ensemble_targets(rankings, choice, k=m, weights=onehot)
        alone = ensemble_targets(rankings[teacher:teacher + 1], choice[:, teacher:teacher + 1], k=m)
        assert torch.equal(weighted[0], alone[0]) and torch.equal(weighted[1], alone[1])
        # ...which is that teacher's own chosen snapshot list
        assert torch.equal(alone[0], rankings[teacher, choice[:, teacher], torch.arange(u)].long())
    observed = rankings[:, -1]  # (X, U, M) stands in for the observed rankings
    assert torch.equal(observed_lists(observed, 5, weights=torch.tensor([0, 1, 0]))[0],
                       observed[1, :, :5].long())


def recbole_metric(name, top, positives, k):
    """Mean metric@k by RecBole's own metric classes (pos_index / pos_len, as its evaluator)."""
    from recbole.evaluator import metrics

    pos_index = np.array([[item in set(p) - {0} and item != 0 for item in row]
                          for row, p in zip(top.tolist(), positives.tolist())])
    pos_len = np.array([len(set(p) - {0}) for p in positives.tolist()])
    keep = pos_len > 0
    metric = getattr(metrics, name)({"topk": [k], "metric_decimal_place": 12})
    if name in ("Recall", "NDCG"):
        values = metric.metric_info(pos_index[keep], pos_len[keep])
    else:
        values = metric.metric_info(pos_index[keep])
    return float(values[:, k - 1].mean())


@pytest.mark.parametrize("name", ["Recall", "NDCG", "Hit", "Precision", "MRR"])
def test_list_metric_equals_recboles(name):
    gen = torch.Generator().manual_seed(11)
    u, k, n_items = 40, 10, 30
    top = distinct_lists(gen, u, 1, k, n_items)[:, 0]
    top[3, 6:] = 0  # a short list
    positives = torch.zeros(u, 15, dtype=torch.long)
    for i in range(u):
        n = int(torch.randint(0, 15, (1,), generator=gen))  # some users have none
        positives[i, :n] = torch.randperm(n_items - 1, generator=gen)[:n] + 1
    values, valid = list_metric(top, positives, name, k)
    got = float(values[valid].mean())
    assert got == pytest.approx(recbole_metric(name, top, positives, k), abs=1e-12)
    assert not bool(valid[positives.sum(1) == 0].any())


def test_search_finds_the_planted_teacher():
    # Teacher 1's top-5 are exactly each user's validation items; the others are noise.
    gen = torch.Generator().manual_seed(0)
    u, x, m = 50, 3, 20
    lists = distinct_lists(gen, u, x, m, 200)
    positives = lists[:, 1, :5].clone()
    weights, info = select_weights(lists, positives, "recall", 5, steps=6)
    assert weights.tolist() == [0, 1, 0]
    assert info["chosen"] == pytest.approx(1.0) and info["single"][1] == pytest.approx(1.0)
    assert info["uniform"] < 1.0 and info["source"] == "selection"


def test_search_blends_and_never_loses_to_uniform_or_best_single():
    # Validation items come half from teacher 0's and half from teacher 2's lists.
    gen = torch.Generator().manual_seed(1)
    u, x, m = 60, 3, 20
    lists = distinct_lists(gen, u, x, m, 300)
    positives = torch.cat([lists[:, 0, :4], lists[:, 2, :4]], dim=1)
    weights, info = select_weights(lists, positives, "recall", 8, steps=8)
    assert weights[1] == 0 and weights[0] > 0 and weights[2] > 0
    assert info["chosen"] >= max(info["single"]) and info["chosen"] >= info["uniform"]
    assert info["chosen"] > max(info["single"])  # the blend beats either teacher alone


def test_search_keeps_uniform_when_it_is_best():
    gen = torch.Generator().manual_seed(2)
    lists = distinct_lists(gen, 30, 2, 10, 40)
    lists[:, 1] = lists[:, 0]  # identical teachers: every weighting gives the same lists
    weights, info = select_weights(lists, lists[:, 0, :3], "ndcg", 5, steps=4)
    assert weights.tolist() == [1, 1] and info["source"] == "uniform"


def test_search_ties_go_to_the_lower_teacher_index():
    # Teachers 0 and 1 are the same perfect teacher, teacher 2 noise: every step ties 0 with 1,
    # and the tie goes to the lower index, so the chosen weights are teacher 0's alone.
    gen = torch.Generator().manual_seed(0)
    lists = distinct_lists(gen, 50, 3, 20, 200)
    lists[:, 1] = lists[:, 0]
    weights, info = select_weights(lists, lists[:, 0, :5].clone(), "recall", 5, steps=4)
    assert info["single"][0] == info["single"][1] == pytest.approx(1.0)
    assert info["uniform"] < 1.0 and info["source"] == "selection"
    assert weights.tolist() == [1, 0, 0]


def test_weights_are_fitted_on_the_converged_lists():
    """ensemble.converged_lists: each teacher's last snapshot (C-1), teachers on axis 1."""
    import types

    from recbole_hetcomp.ensemble import converged_lists

    first = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]], dtype=np.uint16)     # (C=2, U=2, M=2)
    second = np.array([[[9, 9], [9, 9]], [[2, 1], [4, 3]]], dtype=np.uint16)
    got = converged_lists([types.SimpleNamespace(rankings=first),
                           types.SimpleNamespace(rankings=second)])
    assert got.dtype == torch.int64
    assert got.tolist() == [[[5, 6], [2, 1]], [[7, 8], [4, 3]]]  # (U, X, M)


def test_integer_weights():
    assert integer_weights([0.5, 0.25, 0.25]).tolist() == [2, 1, 1]
    assert integer_weights([3, 0, 6]).tolist() == [1, 0, 2]
    assert integer_weights([1.0, 0, 0]).tolist() == [1, 0, 0]
    for bad in ([0, 0], [-1, 2], [float("nan"), 1]):
        with pytest.raises(ValueError):
            integer_weights(bad)
