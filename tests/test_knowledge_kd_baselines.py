"""RRD and DCD (knowledge/kd_baselines.py) against slow per-user loops written from the papers'
formulas, and their samplers against the distributions they are meant to draw from."""

import math

import pytest
import torch

from recbole_hetcomp.knowledge.kd_baselines import (
    dcd_loss,
    dcd_probabilities,
    dcd_sample,
    ranks_from_lists,
    ranks_from_scores,
    rrd_loss,
    rrd_sample,
)


def _items(row):
    return [i for i in row.tolist() if i]


def reference_rrd(scores, interesting, uninteresting):
    """-log prod_k exp(s_pi_k) / (sum_{l >= k} exp(s_pi_l) + sum_{j in U} exp(s_j)), per user."""
    out = []
    for u in range(scores.shape[0]):
        s = scores[u]
        ranking, rest = _items(interesting[u]), _items(uninteresting[u])
        total = s.new_zeros(())
        for k in range(len(ranking)):
            below = sum(torch.exp(s[i]) for i in ranking[k:]) + sum(torch.exp(s[j]) for j in rest)
            total = total - torch.log(torch.exp(s[ranking[k]]) / below)
        out.append(total)
    return torch.stack(out)


def reference_ranks(scores, exclude):
    """1-based rank of each allowed item by (score descending, id ascending); I if excluded."""
    b, n = scores.shape
    ranks = torch.full((b, n), n, dtype=torch.long)
    for u in range(b):
        allowed = [i for i in range(n) if not exclude[u, i]]
        for r, i in enumerate(sorted(allowed, key=lambda i: (-float(scores[u, i]), i)), 1):
            ranks[u, i] = r
    return ranks


def reference_list_ranks(lists, mask, n_items):
    """Rank among the list's valid entries; N + 1 for every other item."""
    b, n = lists.shape
    ranks = torch.full((b, n_items), n + 1, dtype=torch.long)
    for u in range(b):
        valid = [i for i, m in zip(lists[u].tolist(), mask[u].tolist()) if m]
        for r, i in enumerate(valid, 1):
            ranks[u, i] = r
    return ranks


def reference_dcd_probabilities(t_ranks, s_ranks, t_top, s_top, eps_t, eps_s):
    """tanh(max(eps_t (r_s - r_t), 0)) on the teacher's list, tanh(max(eps_s (r_t - r_s), 0))
    on the student's list, 0 for padding."""
    teacher = torch.zeros(t_top.shape, dtype=torch.float64)
    student = torch.zeros(s_top.shape, dtype=torch.float64)
    for u in range(t_top.shape[0]):
        for m, i in enumerate(t_top[u].tolist()):
            if i:
                gap = int(s_ranks[u, i]) - int(t_ranks[u, i])
                teacher[u, m] = math.tanh(max(eps_t * gap, 0.0))
        for m, j in enumerate(s_top[u].tolist()):
            if j:
                gap = int(t_ranks[u, j]) - int(s_ranks[u, j])
                student[u, m] = math.tanh(max(eps_s * gap, 0.0))
    return teacher, student


def reference_dcd_loss(scores, teacher_side, student_side, t_ranks, unranked_rank=None):
    """Merged items sorted by teacher rank; the unranked ones only in every denominator."""
    out = []
    for u in range(scores.shape[0]):
        s = scores[u]
        merged = _items(teacher_side[u]) + _items(student_side[u])
        ranked = sorted((i for i in merged
                         if unranked_rank is None or t_ranks[u, i] < unranked_rank),
                        key=lambda i: int(t_ranks[u, i]))
        rest = [i for i in merged if i not in ranked]
        total = s.new_zeros(())
        for k in range(len(ranked)):
            below = sum(torch.exp(s[i]) for i in ranked[k:]) + sum(torch.exp(s[j]) for j in rest)
            total = total - torch.log(torch.exp(s[ranked[k]]) / below)
        out.append(total)
    return torch.stack(out)


def make_users(seed, b=8, n_items=40, n=10, e=5):
    """Users with 0..e training items and teacher lists of 0..n unobserved items (disjoint)."""
    gen = torch.Generator().manual_seed(seed)
    lists = torch.zeros(b, n, dtype=torch.long)
    excluded = torch.zeros(b, e, dtype=torch.long)
    for u in range(b):
        items = (torch.randperm(n_items - 1, generator=gen) + 1).tolist()
        n_train = u % (e + 1)
        n_listed = n if u % 3 else int(torch.randint(0, n + 1, (1,), generator=gen))
        excluded[u, :n_train] = torch.tensor(items[:n_train], dtype=torch.long)
        lists[u, :n_listed] = torch.tensor(items[n_train:n_train + n_listed], dtype=torch.long)
    return lists, lists > 0, excluded


def _padded_at_end(row):
    values = row.tolist()
    return values == [i for i in values if i] + [0] * values.count(0)


# --- RRD loss ----------------------------------------------------------------------------
def _loss_and_grad(fn, scores, *args, **kwargs):
    leaf = scores.clone().requires_grad_(True)
    loss = fn(leaf, *args, **kwargs)
    weights = torch.linspace(0.5, 1.5, loss.shape[0], dtype=loss.dtype)
    (loss * weights).sum().backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("seed", range(4))
def test_rrd_loss_and_grad_match_formula(seed):
    gen = torch.Generator().manual_seed(seed)
    b, n_items = 6, 30
    scores = torch.randn(b, n_items, generator=gen, dtype=torch.float64) * 2
    picks = torch.stack([torch.randperm(n_items - 1, generator=gen)[:12] + 1 for _ in range(b)])
    interesting, uninteresting = picks[:, :7].clone(), picks[:, 7:].clone()
    interesting[1, 4:] = 0                    # a short list
    interesting[2] = 0                        # no interesting items: loss 0
    interesting[3, 2] = 0                     # a hole inside the list
    uninteresting[4] = 0                      # no uninteresting items: plain Plackett-Luce
    loss, grad = _loss_and_grad(rrd_loss, scores, interesting, uninteresting)
    ref_loss, ref_grad = _loss_and_grad(reference_rrd, scores, interesting, uninteresting)
    assert loss.shape == (b,)
    assert torch.allclose(loss, ref_loss, atol=1e-10, rtol=0)
    assert torch.allclose(grad, ref_grad, atol=1e-10, rtol=0)
    assert loss[2] == 0 and (loss >= 0).all()


def test_rrd_loss_stays_finite_at_extreme_scores():
    gen = torch.Generator().manual_seed(9)
    scores = (torch.randint(0, 2, (4, 20), generator=gen) * 2 - 1).float() * 1e4
    picks = torch.stack([torch.randperm(19, generator=gen)[:9] + 1 for _ in range(4)])
    loss, grad = _loss_and_grad(rrd_loss, scores, picks[:, :5], picks[:, 5:])
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and (loss >= 0).all()


# --- RRD sampler -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("temperature", [10.0, 1.0, None])
def test_rrd_sample_draws_only_allowed_items(seed, temperature):
    n_items, k, l = 40, 4, 30                 # L near the catalogue: some rows run short
    lists, mask, excluded = make_users(seed, n_items=n_items)
    mask[0, 3] = False                        # a hole inside a list
    gen = torch.Generator().manual_seed(seed)
    interesting, uninteresting = rrd_sample(lists, mask, k, l, n_items, excluded, temperature, gen)
    assert interesting.shape == (lists.shape[0], k) and uninteresting.shape == (lists.shape[0], l)
    for u in range(lists.shape[0]):
        listed = [i for i, m in zip(lists[u].tolist(), mask[u].tolist()) if m]
        training = set(_items(excluded[u]))
        chosen, rest = _items(interesting[u]), _items(uninteresting[u])
        assert _padded_at_end(interesting[u]) and _padded_at_end(uninteresting[u])
        assert len(chosen) == min(k, len(listed)) and len(set(chosen)) == len(chosen)
        assert chosen == [i for i in listed if i in chosen]           # the teacher's order
        if temperature is None:
            assert chosen == listed[:k]
        allowed = set(range(1, n_items)) - set(listed) - training
        assert len(rest) == min(l, len(allowed)) and len(set(rest)) == len(rest)
        assert set(rest) <= allowed


def test_rrd_sample_is_deterministic_for_a_generator():
    lists, mask, excluded = make_users(4)
    draw = [rrd_sample(lists, mask, 5, 8, 40, excluded, 2.0, torch.Generator().manual_seed(s))
            for s in (7, 7, 8)]
    assert all(torch.equal(a, b) for a, b in zip(draw[0], draw[1]))
    assert not all(torch.equal(a, b) for a, b in zip(draw[0], draw[2]))


def _within(freq, prob, draws, sigmas=5.0):
    error = (prob * (1 - prob) / draws).sqrt()
    return bool(((freq - prob).abs() <= sigmas * error + 1e-12).all())


def test_rrd_interesting_draws_follow_rank_aware_probabilities():
    users, n, temperature = 20000, 6, 2.0
    lists = torch.arange(11, 11 + n).expand(users, n).contiguous()
    mask = torch.ones(users, n, dtype=torch.bool)
    excluded = torch.zeros(users, 1, dtype=torch.long)
    p = torch.tensor([math.exp(-r / temperature) for r in range(1, n + 1)], dtype=torch.float64)
    p = p / p.sum()
    gen = torch.Generator().manual_seed(0)
    # K = 1: each item with probability exp(-r / T) / sum
    one, _ = rrd_sample(lists, mask, 1, 0, 20, excluded, temperature, gen)
    freq = torch.stack([(one[:, 0] == 11 + r).double().mean() for r in range(n)])
    assert _within(freq, p, users)
    # K = 2 without replacement: P(i drawn) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    two, _ = rrd_sample(lists, mask, 2, 0, 20, excluded, temperature, gen)
    inclusion = torch.tensor([float(p[i] + sum(p[j] * p[i] / (1 - p[j])
                                               for j in range(n) if j != i))
                              for i in range(n)], dtype=torch.float64)
    freq = torch.stack([(two == 11 + r).any(dim=1).double().mean() for r in range(n)])
    assert _within(freq, inclusion, users)


@pytest.mark.parametrize("n_items", [12, 300])   # 300: rejection rarely succeeds, exact fallback
def test_rrd_uninteresting_draws_are_uniform(n_items):
    users, l = 8000, 2
    blocked = [i for i in range(1, n_items) if i not in (3, 5, 7, 8, 10)]
    lists = torch.tensor(blocked[:4]).expand(users, 4).contiguous()
    excluded = torch.tensor(blocked[4:]).expand(users, len(blocked) - 4).contiguous()
    gen = torch.Generator().manual_seed(1)
    _, rest = rrd_sample(lists, lists > 0, 1, l, n_items, excluded, 10.0, gen)
    assert ((rest != 0).sum(dim=1) == l).all() and (rest[:, 0] != rest[:, 1]).all()
    freq = torch.stack([(rest == i).any(dim=1).double().mean() for i in (3, 5, 7, 8, 10)])
    assert _within(freq, torch.full((5,), l / 5, dtype=torch.float64), users)
    # Asking for more than is left returns all of it, also when training items repeat list items.
    overlapping = torch.cat([excluded[:3], lists[:3]], dim=1)
    _, everything = rrd_sample(lists[:3], lists[:3] > 0, 1, 7, n_items, overlapping, 10.0, gen)
    assert all(sorted(_items(row)) == [3, 5, 7, 8, 10] for row in everything)


# --- DCD -----------------------------------------------------------------------------------
def test_ranks_from_scores_and_lists_match_reference():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 6, (5, 15), generator=gen).double()      # many ties
    exclude = torch.rand(5, 15, generator=gen) < 0.3
    exclude[:, 0] = True
    assert torch.equal(ranks_from_scores(scores, exclude), reference_ranks(scores, exclude))
    no_exclusion = torch.zeros(15, 5, dtype=torch.bool)     # item-side view: rows are items
    assert torch.equal(ranks_from_scores(scores.T), reference_ranks(scores.T, no_exclusion))
    lists, mask, _ = make_users(2, n_items=15, n=6)
    mask[1, 2] = False
    assert torch.equal(ranks_from_lists(lists, mask, 15)[:, 1:],
                       reference_list_ranks(lists, mask, 15)[:, 1:])


def _dcd_setting(seed, b=6, n_items=30, m=8):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(b, n_items, generator=gen, dtype=torch.float64)
    student = teacher + torch.randn(b, n_items, generator=gen, dtype=torch.float64)
    exclude = torch.rand(b, n_items, generator=gen) < 0.2
    exclude[:, 0] = True
    t_ranks, s_ranks = reference_ranks(teacher, exclude), reference_ranks(student, exclude)
    t_top = teacher.masked_fill(exclude, float("-inf")).topk(m, dim=1).indices
    s_top = student.masked_fill(exclude, float("-inf")).topk(m, dim=1).indices
    s_top[0, 5:] = 0                                                   # padding
    return student, t_ranks, s_ranks, t_top, s_top


@pytest.mark.parametrize("seed", range(3))
def test_dcd_probabilities_match_formula(seed):
    _, t_ranks, s_ranks, t_top, s_top = _dcd_setting(seed)
    for eps_t, eps_s in ((0.1, 0.05), (1.0, 1.0)):
        teacher, student = dcd_probabilities(t_ranks, s_ranks, t_top, s_top, eps_t, eps_s)
        ref_teacher, ref_student = reference_dcd_probabilities(t_ranks, s_ranks, t_top, s_top,
                                                               eps_t, eps_s)
        assert torch.allclose(teacher, ref_teacher, atol=1e-12, rtol=0)
        assert torch.allclose(student, ref_student, atol=1e-12, rtol=0)
        assert teacher.gt(0).any() and student.gt(0).any()


@pytest.mark.parametrize("independent", [False, True])
def test_dcd_sample_draws_only_eligible_items_in_list_order(independent):
    _, t_ranks, s_ranks, t_top, s_top = _dcd_setting(5)
    teacher, _ = dcd_probabilities(t_ranks, s_ranks, t_top, s_top, 0.2, 0.2)
    draws = [dcd_sample(t_top, teacher, 3, torch.Generator().manual_seed(s), independent)
             for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1])
    for u in range(t_top.shape[0]):
        eligible = [i for i, p in zip(t_top[u].tolist(), teacher[u].tolist()) if i and p > 0]
        chosen = _items(draws[0][u])
        assert _padded_at_end(draws[0][u]) and len(set(chosen)) == len(chosen)
        assert chosen == [i for i in eligible if i in chosen]           # the list's order
        if not independent:
            assert len(chosen) == min(3, len(eligible))


def test_dcd_sample_frequencies():
    rows = 20000
    candidates = torch.tensor([4, 9, 2, 7, 0]).expand(rows, 5).contiguous()
    probs = torch.tensor([0.9, 0.3, 0.0, 0.6, 0.5], dtype=torch.float64).expand(rows, 5)
    gen = torch.Generator().manual_seed(3)
    one = dcd_sample(candidates, probs, 1, gen)
    share = torch.tensor([0.9, 0.3, 0.6], dtype=torch.float64) / 1.8
    freq = torch.stack([(one[:, 0] == i).double().mean() for i in (4, 9, 7)])
    assert _within(freq, share, rows) and not (one == 2).any()
    kept = dcd_sample(candidates, probs, 5, gen, independent=True)
    freq = torch.stack([(kept == i).any(dim=1).double().mean() for i in (4, 9, 7)])
    assert _within(freq, torch.tensor([0.9, 0.3, 0.6], dtype=torch.float64), rows)
    assert not (kept == 2).any()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("listed", [False, True])
def test_dcd_loss_and_grad_match_formula(seed, listed):
    student, t_ranks, s_ranks, t_top, s_top = _dcd_setting(seed)
    unranked = None
    if listed:  # a teacher known by its top-5 lists: the rest tie at rank 6, unordered
        t_ranks = reference_list_ranks(t_top[:, :5], t_top[:, :5] > 0, student.shape[1])
        unranked = 6
    teacher, student_side = dcd_probabilities(t_ranks, s_ranks, t_top, s_top, 0.3, 0.3)
    gen = torch.Generator().manual_seed(seed)
    drawn_t = dcd_sample(t_top, teacher, 4, gen)
    drawn_s = dcd_sample(s_top, student_side, 4, gen)
    assert drawn_s.gt(0).any()
    loss, grad = _loss_and_grad(dcd_loss, student, drawn_t, drawn_s, t_ranks, unranked)
    ref_loss, ref_grad = _loss_and_grad(reference_dcd_loss, student, drawn_t, drawn_s, t_ranks,
                                        unranked)
    assert torch.allclose(loss, ref_loss, atol=1e-10, rtol=0)
    assert torch.allclose(grad, ref_grad, atol=1e-10, rtol=0)
