"""Easy-to-hard knowledge construction against slow, obvious per-(user, teacher) loops."""

import math

import pytest
import torch

from recbole_hetcomp.knowledge import (
    KnowledgeState,
    discrepancy,
    exclusion_mask,
    knowledge_step,
    masked_topk,
    mean_snapshot,
    share_at_last,
    should_switch,
    threshold,
)


def reference_discrepancy(student, teacher, n=50, temperature=10.0):
    """D = 1 - NDCG written from the spec (section 4), in plain Python.

    Position t of the student's list gains 2^exp(-t/T) - 1 when its item is in the teacher list's
    first n items; DCG discounts each gain by log2(t + 2); the ideal DCG is the same sum with a
    hit at every one of the n positions.
    """
    head = {i for i in teacher[:n] if i != 0}
    dcg = ideal = 0.0
    for t in range(n):
        weight = (2 ** math.exp(-t / temperature) - 1) / math.log2(t + 2)
        ideal += weight
        if t < len(student) and student[t] != 0 and student[t] in head:
            dcg += weight
    return 1 - dcg / ideal


def reference_step(choice, d, initialised, student_top, rankings, epoch, p, alpha, decay, n):
    """One knowledge step over python lists, pair by pair. Returns the new (choice, d)."""
    x, c, u, _ = rankings.shape
    choice = [row[:] for row in choice]
    d = [row[:] for row in d]
    th = alpha * decay ** (epoch // p)
    for user in range(u):
        student = student_top[user].tolist()
        for t in range(x):
            v = choice[user][t]
            nxt = rankings[t, min(v + 1, c - 1), user].tolist()
            d_next = reference_discrepancy(student, nxt, n)
            if not initialised:
                d[user][t] = d_next
                continue
            if v >= c - 1:
                continue
            if d_next == 0:
                advance = True
            else:
                ratio = d[user][t] / d_next
                advance = ratio > th or ratio < 1
            if advance:
                choice[user][t] = v + 1
                d[user][t] = reference_discrepancy(
                    student, rankings[t, min(v + 2, c - 1), user].tolist(), n)
    return choice, d


def random_rankings(gen, x, c, u, m, n_items):
    out = torch.zeros(x, c, u, m, dtype=torch.int32)
    for t in range(x):
        for s in range(c):
            for user in range(u):
                length = int(torch.randint(m // 2, m + 1, (1,), generator=gen))
                items = torch.randperm(n_items - 1, generator=gen)[:length] + 1
                out[t, s, user, :length] = items.int()
    return out


@pytest.mark.parametrize("seed", range(4))
def test_masked_topk_matches_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    b, n_items, n = 7, 9, 5
    scores = torch.randn(b, n_items, generator=gen)
    exclude = torch.rand(b, n_items, generator=gen) < 0.4
    exclude[:, 0] = True
    exclude[0] = True  # a user with nothing left
    exclude[1, 1:] = torch.arange(1, n_items) > 2  # only items 1 and 2 left
    top = masked_topk(scores, exclude, n)
    for i in range(b):
        allowed = [j for j in range(n_items) if not exclude[i, j]]
        ref = sorted(allowed, key=lambda j: -scores[i, j].item())[:n]
        assert top[i].tolist() == ref + [0] * (n - len(ref))


def test_masked_topk_longer_than_catalogue():
    scores = torch.tensor([[0.0, 3.0, 1.0]])
    exclude = torch.tensor([[True, False, False]])
    assert masked_topk(scores, exclude, 5).tolist() == [[1, 2, 0, 0, 0]]


def test_exclusion_mask():
    mask = exclusion_mask(torch.tensor([[2, 3, 0], [0, 0, 0]]), 5)
    assert mask.tolist() == [[True, False, True, True, False], [True, False, False, False, False]]


@pytest.mark.parametrize("seed", range(5))
def test_discrepancy_matches_reference(seed):
    gen = torch.Generator().manual_seed(10 + seed)
    b, x, n_items = 6, 3, 15
    n = 6
    student = torch.stack([torch.randperm(n_items - 1, generator=gen)[:8] + 1 for _ in range(b)])
    student[0, 5:] = 0  # a short student list (few unobserved items)
    teacher = torch.randint(0, n_items, (b, x, 9), generator=gen)
    teacher[:, 0, 4:] = 0  # padded teacher lists
    teacher[1, 1, :8] = student[1]  # a perfect agreement: D = 0
    out = discrepancy(student, teacher, n=n)
    assert out.shape == (b, x) and out.dtype == torch.float64
    for i in range(b):
        for t in range(x):
            ref = reference_discrepancy(student[i].tolist(), teacher[i, t].tolist(), n)
            assert out[i, t].item() == pytest.approx(ref, abs=1e-10)
    assert out[1, 1].item() == 0.0
    # Without a teacher dimension: (B, N')
    flat = discrepancy(student, teacher[:, 2], n=n)
    assert torch.equal(flat, out[:, 2])


def test_discrepancy_minimal_case_has_the_log_discount():
    # n = 2, student [a, b], teacher head [a, c]: g_0 = 1, g_1 = 2^exp(-0.1) - 1; with the
    # discount D = (g_1 / log2 3) / (1 + g_1 / log2 3) = 0.3550 (0.4659 without it).
    out = discrepancy(torch.tensor([[1, 2]]), torch.tensor([[1, 3]]), n=2).item()
    g1 = 2 ** math.exp(-0.1) - 1
    assert out == pytest.approx((g1 / math.log2(3)) / (1 + g1 / math.log2(3)), abs=1e-15)
    assert round(out, 4) == 0.3550


@pytest.mark.parametrize("seed", range(20))
def test_discrepancy_matches_spec_to_1e12(seed):
    # Full-size lists (n = 50) over a small catalogue, so hits are frequent, teacher lists hold
    # repeated items, student lists carry 0 padding, and many rows tie on their hit pattern.
    gen = torch.Generator().manual_seed(100 + seed)
    b, x, n, n_items = 16, 4, 50, 80
    student = torch.stack([torch.randperm(n_items - 1, generator=gen)[:n] + 1 for _ in range(b)])
    student[:3, 40:] = 0
    teacher = torch.randint(0, n_items, (b, x, 60), generator=gen)
    teacher[4, 1] = teacher[4, 0]  # two teachers with the same list: equal D
    teacher[5, 2, :n] = student[5]  # perfect agreement: D = 0
    out = discrepancy(student, teacher, n=n)
    for i in range(b):
        for t in range(x):
            ref = reference_discrepancy(student[i].tolist(), teacher[i, t].tolist(), n)
            assert abs(out[i, t].item() - ref) < 1e-12
    assert out[5, 2].item() == 0.0
    assert out[4, 0].item() == out[4, 1].item()


def test_discrepancy_of_a_student_list_shorter_than_n():
    # Spec, section 4: the ideal DCG assumes all n positions hit, so a student list of one item
    # (n = 3) that hits misses positions 1 and 2: g_0 = 1, g_1 = (2^exp(-0.1) - 1) / log2 3 =
    # 0.55038, g_2 = (2^exp(-0.2) - 1) / log2 4 = 0.38193, D = 1 - 1 / (1 + g_1 + g_2) = 0.48248.
    out = discrepancy(torch.tensor([[4]]), torch.tensor([[4, 5, 6]]), n=3).item()
    g1 = (2 ** math.exp(-0.1) - 1) / math.log2(3)
    g2 = (2 ** math.exp(-0.2) - 1) / 2
    assert out == pytest.approx(1 - 1 / (1 + g1 + g2), abs=1e-15)
    assert round(out, 5) == 0.48248
    # and random short lists (4 columns, n = 6) against the reference loop
    gen = torch.Generator().manual_seed(7)
    student = torch.stack([torch.randperm(11, generator=gen)[:4] + 1 for _ in range(5)])
    teacher = torch.stack([torch.randperm(11, generator=gen)[:8] + 1 for _ in range(5)])
    out = discrepancy(student, teacher, n=6)
    for i in range(5):
        ref = reference_discrepancy(student[i].tolist(), teacher[i].tolist(), 6)
        assert abs(out[i].item() - ref) < 1e-12


def test_discrepancy_padding_never_hits():
    student = torch.tensor([[0, 0, 5]])
    teacher = torch.tensor([[0, 0, 0]])
    assert discrepancy(student, teacher, n=3).item() == 1.0


def test_threshold_schedule():
    assert threshold(0) == pytest.approx(1.05)
    assert threshold(19, p=10) == pytest.approx(1.05 * 0.995)
    assert threshold(100, p=10) == pytest.approx(1.05 * 0.995 ** 10)
    assert threshold(100, p=10) < 1 < threshold(90, p=10)


def _step_alongside_reference(gen, x, c, u, m, n_items, n, calls, batch_size, atol,
                              copy_head):
    """Run ``calls`` knowledge steps (epoch = call * 10) on random student lists, each checked
    against ``reference_step``; ``copy_head``: user 0 copies teacher 0's next snapshot head."""
    rankings = random_rankings(gen, x, c, u, m, n_items)
    state = KnowledgeState.new(u, x)
    ref_choice, ref_d = state.choice.tolist(), state.d.tolist()
    initialised = False
    for call in range(1, calls + 1):
        epoch = call * 10
        student = torch.stack([torch.randperm(n_items - 1, generator=gen)[:n] + 1
                               for _ in range(u)])
        if copy_head:  # D = 0 and 0 / 0 ratios happen
            student[0] = rankings[0, min(ref_choice[0][0] + 1, c - 1), 0, :n].long()
        state = knowledge_step(state, student, rankings, epoch, p=10, alpha=1.05, decay=0.995,
                               batch_size=batch_size, n=n)
        ref_choice, ref_d = reference_step(ref_choice, ref_d, initialised, student, rankings,
                                           epoch, 10, 1.05, 0.995, n)
        initialised = True
        assert state.initialised
        assert state.choice.tolist() == ref_choice
        assert torch.allclose(state.d, torch.tensor(ref_d, dtype=torch.float64), atol=atol)
        assert bool((state.choice >= 0).all() and (state.choice <= c - 1).all())


@pytest.mark.parametrize("seed", range(4))
def test_knowledge_step_matches_reference_over_calls(seed):
    # 12 calls: the threshold drops below 1 at call 10.
    _step_alongside_reference(torch.Generator().manual_seed(20 + seed), x=3, c=4, u=9, m=6,
                              n_items=10, n=5, calls=12, batch_size=4, atol=1e-10,
                              copy_head=True)


@pytest.mark.parametrize("seed", range(3))
def test_advance_decisions_match_spec_at_full_size(seed):
    # n = 50 over a small catalogue: the discount changes which pairs advance here.
    _step_alongside_reference(torch.Generator().manual_seed(60 + seed), x=3, c=4, u=40, m=60,
                              n_items=90, n=50, calls=5, batch_size=16, atol=1e-12,
                              copy_head=False)


def test_first_call_only_remembers():
    rankings = torch.arange(1, 2 * 3 * 4 * 5 + 1, dtype=torch.int32).reshape(2, 3, 4, 5)
    state = KnowledgeState.new(4, 2)
    student = torch.randint(1, 100, (4, 5))
    knowledge_step(state, student, rankings, epoch=10, n=5)
    assert state.initialised and not state.choice.any()
    expected = discrepancy(student, rankings[:, 1].permute(1, 0, 2), n=5)
    assert torch.equal(state.d, expected)


@pytest.mark.parametrize("seed", range(4))
def test_schedule_always_ends(seed):
    gen = torch.Generator().manual_seed(40 + seed)
    x, c, u, m, n_items, p = 3, 4, 20, 8, 12, 10
    alpha, decay = 1.05, 0.995
    rankings = random_rankings(gen, x, c, u, m, n_items)
    # Any starting state: random snapshots, random remembered discrepancies, either phase.
    state = KnowledgeState(
        choice=torch.randint(0, c, (u, x), generator=gen),
        d=torch.rand(u, x, generator=gen, dtype=torch.float64),
        initialised=bool(seed % 2),
    )
    # th < 1 from call k_below on (epoch = call * p): from then on every pair advances.
    k_below = next(k for k in range(10_000) if alpha * decay ** k < 1)
    bound = k_below + c
    calls = 0
    while not should_switch(state.choice, c, switch_share=1.0):
        calls += 1
        assert calls <= bound, "knowledge construction did not end"
        student = torch.randint(0, n_items, (u, 6), generator=gen)
        knowledge_step(state, student, rankings, epoch=calls * p, p=p, alpha=alpha, decay=decay,
                       batch_size=7, n=6)
    assert bool((state.choice == c - 1).all())


def test_progress_summaries():
    choice = torch.tensor([[3, 0], [3, 3], [3, 1], [2, 3]])
    assert share_at_last(choice, 4) == pytest.approx(5 / 8)
    assert mean_snapshot(choice).tolist() == pytest.approx([11 / 4, 7 / 4])
    assert not should_switch(choice, 4)
    assert should_switch(choice, 4, switch_share=0.6)
    assert should_switch(torch.full((3, 2), 3), 4)


def test_state_to_device():
    state = KnowledgeState.new(3, 2, device="cpu")
    moved = state.to("cpu")
    assert moved.choice.shape == (3, 2) and moved.d.dtype == torch.float64 and not moved.initialised


def test_advance_rule_edge_cases():
    # One user, one teacher per case, C = 3; the student list is [1, 2]; n = 2.
    # Snapshot 1 of teacher 0 is [1, 2] (D = 0), of teacher 1 is [8, 9] (D = 1).
    # (X=2, C=3, U=1, M=2)
    rankings = torch.tensor([[[[5, 6]], [[1, 2]], [[7, 8]]],
                             [[[5, 6]], [[8, 9]], [[7, 8]]]], dtype=torch.int32)
    student = torch.tensor([[1, 2]])
    for d_old, teacher, advanced in [
        (0.0, 0, True),    # 0 / 0 counts as advancing
        (0.5, 0, True),    # x / 0 too
        (1.0, 0, True),    # 1 / 0 = inf > th: no hit before, a perfect match now
        (1.0, 1, False),   # ratio exactly 1, threshold above 1: stay
        (0.5, 1, True),    # ratio below 1
    ]:
        state = KnowledgeState(choice=torch.zeros(1, 2, dtype=torch.long),
                               d=torch.full((1, 2), d_old, dtype=torch.float64), initialised=True)
        knowledge_step(state, student, rankings, epoch=10, n=2)
        assert state.choice[0, teacher].item() == int(advanced)
        if advanced:  # remembers D against the new next snapshot (2: [7, 8], no hit)
            assert state.d[0, teacher].item() == 1.0
        else:
            assert state.d[0, teacher].item() == d_old
    # At the last snapshot nothing moves, whatever the ratio.
    state = KnowledgeState(choice=torch.full((1, 2), 2), d=torch.zeros(1, 2, dtype=torch.float64),
                           initialised=True)
    knowledge_step(state, student, rankings, epoch=10, n=2)
    assert state.choice.tolist() == [[2, 2]]
