"""The ranking-distillation baselines RRD and DCD, as pure tensor code.

- RRD: Relaxed Ranking Distillation, the ranking half of DE-RRD (Kang, Hwang, Kweon, Yu,
  "DE-RRD: A Knowledge Distillation Framework for Recommender System", CIKM 2020,
  arXiv 2012.04357), section 4.2.
- DCD: Dual Correction strategy for Distillation (Lee and Kim, "Dual Correction Strategy for
  Ranking Distillation in Top-N Recommender System", CIKM 2021, arXiv 2109.03459), section 4.

Written from the papers' formulas, not from any released code. No I/O and no RecBole objects:
tensors in, tensors out, on the inputs' device, batched over rows (users; items for DCD's
item-side view). Item id 0 is RecBole's padding item and means "no item" in every list.

How the functions map to the papers
-----------------------------------
RRD. The teacher ranks the unobserved items; its top-N list is where *interesting* items come
from: K of them are drawn without replacement with probability proportional to
``exp(-r / T)`` (r = rank in the list) and kept in the teacher's order. L *uninteresting* items
are drawn uniformly from the unobserved items outside that list (``rrd_sample``). The loss is the
negative log of the relaxed permutation probability (``rrd_loss``)::

    L_RRD(u) = -sum_{k=1..K} log( exp(s_pi_k) / (sum_{l=k..K} exp(s_pi_l) + sum_{j in U} exp(s_j)) )

It asks for the teacher's order among the interesting items and for every interesting item above
every uninteresting one, and nothing about the order among uninteresting items. The student
minimises ``L_base + lambda_RRD * L_RRD``; the items are re-drawn periodically (see the table).

DCD. Both models rank the unobserved items; their disagreement decides what is distilled
(``dcd_probabilities``). *Teacher-side correction*: an item of the teacher's top list that the
student ranks lower than the teacher is drawn with probability
``tanh(max(eps_t * (r_s - r_t), 0))``; *student-side correction*: an item of the student's top
list that the teacher ranks lower than the student, with ``tanh(max(eps_s * (r_t - r_s), 0))``.
The drawn items (``dcd_sample``) are distilled with a listwise loss in the teacher's order
(``dcd_loss``). The *user-side* view (L_UCD) ranks items for each user; the *item-side* view
(L_ICD) ranks users for each item: the same functions on the transposed matrices (rows = items,
columns = users, e.g. ``ranks_from_scores(teacher_scores.T)``). DCD's objective adds both
corrections to a ranking distillation term L_RKD, RRD's loss (``rrd_loss``):
``L_base + lambda * (L_RKD + L_UCD + L_ICD)`` (the relative weights are to verify, see the
spec).

Default hyper-parameters
------------------------
Only the papers' abstracts were at hand when this module was written, not their method and
experiment sections: the values and locations below are recalled, not checked against the text.
Verify them before quoting them; every one is a parameter here or in the trainer.

======================  ==================================  =====================================
hyper-parameter         recalled value                      where (recalled, to verify)
======================  ==================================  =====================================
RRD N (top list)        100                                 DE-RRD sec. 5 (experimental setup)
RRD K (interesting)     10                                  DE-RRD sec. 5
RRD L (uninteresting)   40 (unsure; 10-100 plausible)       DE-RRD sec. 5
RRD T (temperature)     10                                  DE-RRD sec. 4.2 / 5
RRD lambda              tuned per dataset (grid)            DE-RRD sec. 5
RRD re-sampling         every epoch                         DE-RRD sec. 4.2
DCD eps_t, eps_s        tuned; ~1e-3 (unsure)               DCD sec. 5 (implementation details)
DCD items per side      tuned (unsure)                      DCD sec. 5
DCD student refresh     every epoch (unsure)                DCD sec. 4
======================  ==================================  =====================================

HetComp (its released README) removes "the sampling processes for top-ranked unobserved items"
from RRD and DCD in its experiments: ``rrd_sample(..., temperature=None)`` then takes the
teacher's top K in order.
"""

import torch

from recbole_hetcomp.knowledge.losses import masked_logsumexp, plackett_luce

_NEG_INF = float("-inf")


def _race_keys(log_weights, generator):
    """``log_weights`` plus Gumbel noise, as ``log w - log E`` with E ~ Exp(1) (float64).

    Taking the k largest keys draws k items without replacement, each draw proportional to w
    among the items left (Gumbel-top-k): the exponential race ``E_i / w_i``, smallest first.
    Entries at -inf (no weight) never win.
    """
    race = torch.empty(log_weights.shape, dtype=torch.float64, device=log_weights.device)
    race.exponential_(generator=generator)
    return log_weights.double() - race.log()


def _select(items, keys, n):
    """The items with the n largest keys (-inf never chosen), kept in list order.

    Parameters
    ----------
    items : torch.Tensor
        (B, M) long item lists.
    keys : torch.Tensor
        (B, M) float, -inf where an item may not be chosen.
    n : int
        Number of items per row.

    Returns
    -------
    torch.Tensor
        (B, n) long, in the order of ``items``; 0 where fewer than n items may be chosen.
    """
    b, m = items.shape
    kk = min(n, m)
    chosen_keys, positions = keys.topk(kk, dim=1)
    # Unchosen slots sort after every position and read item 0.
    positions = torch.where(chosen_keys > _NEG_INF, positions, torch.full_like(positions, m))
    positions = positions.sort(dim=1).values
    padded = torch.cat([items, items.new_zeros(b, 1)], dim=1)
    chosen = padded.gather(1, positions)
    if kk < n:
        chosen = torch.cat([chosen, chosen.new_zeros(b, n - kk)], dim=1)
    return chosen


def _distinct_uniform(blocked, n_draw, n_items, generator, rounds=4):
    """Per row, ``n_draw`` distinct items drawn uniformly from 1..n_items-1 minus ``blocked``.

    Rejection with redraws: each round draws ``2 * n_draw`` ids with replacement for the rows
    still short and accepts, in draw order, those neither blocked nor seen before; sequential
    draws with rejection give a uniform sample without replacement. Rows still short after
    ``rounds`` rounds (catalogues nearly used up) finish with uniform random keys over the whole
    catalogue, which keeps the sample uniform given what was accepted.

    Parameters
    ----------
    blocked : torch.Tensor
        (B, F) long item ids that may not be drawn, 0-padded (item 0 is never drawn).
    n_draw : int
        Items per row.
    n_items : int
        Number of items, padding item 0 included.
    generator : torch.Generator or None
        Source of randomness, on ``blocked``'s device.
    rounds : int
        Rejection rounds before the exact fallback.

    Returns
    -------
    torch.Tensor
        (B, n_draw) long in draw order; 0 where fewer than n_draw items are left.
    """
    b = blocked.shape[0]
    device = blocked.device
    if n_draw == 0:
        return blocked.new_zeros(b, 0)
    blocked = torch.cat([blocked.new_zeros(b, 1), blocked.long()], dim=1).sort(dim=1).values
    first = torch.ones_like(blocked, dtype=torch.bool)
    first[:, 1:] = blocked[:, 1:] != blocked[:, :-1]
    n_left = (n_items - 1) - (first & (blocked > 0)).sum(dim=1)
    need = n_left.clamp(min=0, max=n_draw)
    out = blocked.new_zeros(b, n_draw + 1)            # last column: sink for unused draws
    filled = torch.zeros_like(need)
    for _ in range(rounds):
        rows = (filled < need).nonzero().squeeze(1)
        if rows.numel() == 0:
            return out[:, :n_draw]
        draws = torch.randint(1, n_items, (rows.numel(), 2 * n_draw), generator=generator,
                              device=device)
        row_blocked = blocked[rows]
        at = torch.searchsorted(row_blocked, draws).clamp(max=row_blocked.shape[1] - 1)
        hit = row_blocked.gather(1, at) == draws
        # Few items are accepted per row: compare with them directly, no re-sort.
        hit |= (draws.unsqueeze(2) == out[rows, :n_draw].unsqueeze(1)).any(dim=2)
        # The first copy of each id in draw order: a stable sort keeps copies in draw order.
        values, order = draws.sort(dim=1, stable=True)
        first_sorted = torch.ones_like(values, dtype=torch.bool)
        first_sorted[:, 1:] = values[:, 1:] != values[:, :-1]
        first_copy = torch.empty_like(first_sorted).scatter_(1, order, first_sorted)
        accept = first_copy & ~hit
        slot = filled[rows].unsqueeze(1) + accept.long().cumsum(dim=1) - 1
        accept &= slot < need[rows].unsqueeze(1)
        slot = torch.where(accept, slot, torch.full_like(slot, n_draw))
        block = out[rows]
        block.scatter_(1, slot, torch.where(accept, draws, torch.zeros_like(draws)))
        block[:, n_draw] = 0
        out[rows] = block
        filled[rows] += accept.sum(dim=1)
    rows = (filled < need).nonzero().squeeze(1)
    if rows.numel():
        keys = torch.rand(rows.numel(), n_items, generator=generator, device=device,
                          dtype=torch.float64)
        keys.scatter_(1, torch.cat([blocked[rows], out[rows, :n_draw]], dim=1), _NEG_INF)
        want = need[rows] - filled[rows]
        draws = keys.topk(int(want.max()), dim=1).indices
        step = torch.arange(draws.shape[1], device=device).unsqueeze(0)
        accept = step < want.unsqueeze(1)
        slot = torch.where(accept, filled[rows].unsqueeze(1) + step, torch.full_like(draws, n_draw))
        block = out[rows]
        block.scatter_(1, slot, torch.where(accept, draws, torch.zeros_like(draws)))
        out[rows] = block
    return out[:, :n_draw]


def rrd_sample(teacher_lists, teacher_mask, n_interesting, n_uninteresting, n_items, excluded,
               temperature=10.0, generator=None):
    """RRD's interesting and uninteresting items for a batch of users.

    Interesting: ``n_interesting`` items drawn without replacement from the valid entries of each
    user's teacher list, each draw with probability proportional to ``exp(-r / temperature)``
    among the items left (r = 1-based rank among the list's valid entries), then put in the
    teacher's order. Uninteresting: ``n_uninteresting`` distinct items drawn uniformly from the
    items that are neither item 0, nor in the teacher list, nor training items.

    choice: rank r counts valid entries only, so masked slots inside a list do not shift the
    weights (with masks at the end it is the list position). choice: ``temperature=None`` takes
    the teacher's top ``n_interesting`` in order, without sampling (HetComp's protocol).

    Parameters
    ----------
    teacher_lists : torch.Tensor
        (B, N) long: each user's teacher top-N unobserved items, best first.
    teacher_mask : torch.Tensor
        (B, N) bool validity of ``teacher_lists``.
    n_interesting : int
        K.
    n_uninteresting : int
        L.
    n_items : int
        Number of items, padding item 0 included.
    excluded : torch.Tensor
        (B, E) long: each user's training items, 0-padded.
    temperature : float or None
        T of the rank-aware sampling; None: no sampling.
    generator : torch.Generator, optional
        Source of randomness, on the inputs' device.

    Returns
    -------
    interesting : torch.Tensor
        (B, K) long, in the teacher's order; 0 after the last item when a list has fewer than K
        valid entries.
    uninteresting : torch.Tensor
        (B, L) long, in draw order; 0 after the last item when fewer than L items are left.
    """
    listed = torch.where(teacher_mask, teacher_lists, torch.zeros_like(teacher_lists)).long()
    rank = teacher_mask.long().cumsum(dim=1).double()                    # (B, N), 1-based
    if temperature is None:
        keys = -rank
    else:
        keys = _race_keys(-rank / temperature, generator)
    keys = keys.masked_fill(~teacher_mask, _NEG_INF)
    interesting = _select(listed, keys, n_interesting)
    blocked = torch.cat([listed, excluded.long()], dim=1)
    uninteresting = _distinct_uniform(blocked, n_uninteresting, n_items, generator)
    return interesting, uninteresting


def rrd_loss(scores, interesting, uninteresting):
    """RRD's loss: -log of the relaxed permutation probability, per user.

    ``L(u) = -sum_k log( exp(s_pi_k) / (sum_{l >= k} exp(s_pi_l) + sum_{j in U} exp(s_j)) )``
    over the interesting items pi (in the teacher's order) and the uninteresting items U; item 0
    entries are absent from both. Computed from log-sum-exps (a reversed logcumsumexp for the
    tail sums), no clamping: finite for any finite scores.

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores for every item.
    interesting : torch.Tensor
        (B, K) long, in the teacher's order, 0 = no item.
    uninteresting : torch.Tensor
        (B, L) long, 0 = no item.

    Returns
    -------
    torch.Tensor
        (B,) per-user losses.
    """
    s_interesting = scores.gather(1, interesting)                        # (B, K)
    s_uninteresting = scores.gather(1, uninteresting)                    # (B, L)
    log_rest = masked_logsumexp(s_uninteresting, uninteresting > 0, dim=1)
    return plackett_luce(s_interesting, interesting > 0, log_rest)


def ranks_from_scores(scores, exclude=None):
    """Dense 1-based ranks of each row's items by descending score, ties by the lower item id.

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float scores (for DCD's item-side view: (I, U), rows = items).
    exclude : torch.Tensor, optional
        (B, I) bool: entries left out of the ranking (training items, item 0); they get rank I,
        after every ranked entry.

    Returns
    -------
    torch.Tensor
        (B, I) long ranks.
    """
    b, i = scores.shape
    scores = scores.detach()
    if exclude is not None:
        scores = scores.masked_fill(exclude, _NEG_INF)
    order = scores.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, i + 1, device=scores.device).expand(b, i)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    if exclude is not None:
        ranks = ranks.masked_fill(exclude, i)
    return ranks


def ranks_from_lists(lists, mask, n_items, unlisted_rank=None):
    """Dense ranks from top lists: a listed item's 1-based rank among the list's valid entries.

    choice: a teacher known only by its top-N lists (HetComp's ensemble) ties every unlisted
    item at ``unlisted_rank`` (default N + 1, just below the list).

    Parameters
    ----------
    lists : torch.Tensor
        (B, N) long item lists, best first.
    mask : torch.Tensor
        (B, N) bool validity of ``lists``.
    n_items : int
        Number of items, padding item 0 included.
    unlisted_rank : int, optional
        Rank of the items absent from a row's list (and of item 0); default N + 1.

    Returns
    -------
    torch.Tensor
        (B, n_items) long ranks.
    """
    b, n = lists.shape
    if unlisted_rank is None:
        unlisted_rank = n + 1
    ranks = torch.full((b, n_items), unlisted_rank, dtype=torch.long, device=lists.device)
    listed_rank = mask.long().cumsum(dim=1)
    ranks.scatter_(1, torch.where(mask, lists, torch.zeros_like(lists)).long(),
                   torch.where(mask, listed_rank, torch.full_like(listed_rank, unlisted_rank)))
    ranks[:, 0] = unlisted_rank  # masked entries all wrote to item 0
    return ranks


def dcd_probabilities(teacher_ranks, student_ranks, teacher_top, student_top, scale_teacher,
                      scale_student):
    """DCD's sampling probabilities of the teacher-side and student-side correction items.

    Teacher side, for each item i of the teacher's top list: ``tanh(max(eps_t (r_s(i) - r_t(i)),
    0))``, positive when the student ranks i lower than the teacher does. Student side, for
    each item j of the student's top list: ``tanh(max(eps_s (r_t(j) - r_s(j)), 0))``, positive
    when the student ranks j higher than the teacher does. As ranks are shared, no item is
    positive on both sides.

    Parameters
    ----------
    teacher_ranks, student_ranks : torch.Tensor
        (B, I) long dense 1-based ranks (``ranks_from_lists``, ``ranks_from_scores``).
    teacher_top : torch.Tensor
        (B, M) long: the teacher's top unobserved items, 0 = no item.
    student_top : torch.Tensor
        (B, M') long: the student's top unobserved items, 0 = no item.
    scale_teacher, scale_student : float
        eps_t and eps_s.

    Returns
    -------
    teacher_side : torch.Tensor
        (B, M) float64, aligned with ``teacher_top``; 0 for padding.
    student_side : torch.Tensor
        (B, M') float64, aligned with ``student_top``; 0 for padding.
    """
    def side(items, ahead, behind, scale):
        # How far ``behind`` ranks the item below ``ahead``, scaled, squashed into [0, 1).
        gap = (behind.gather(1, items) - ahead.gather(1, items)).double()
        weight = torch.tanh((scale * gap).clamp(min=0.0))
        return torch.where(items > 0, weight, torch.zeros_like(weight))

    return (side(teacher_top.long(), teacher_ranks, student_ranks, scale_teacher),
            side(student_top.long(), student_ranks, teacher_ranks, scale_student))


def dcd_sample(candidates, probabilities, n_samples, generator=None, independent=False):
    """Draw DCD's correction items from the candidates and their probabilities.

    choice (the paper's wording allows both readings): ``independent=False`` draws
    ``n_samples`` items without replacement, each draw proportional to the probabilities among
    the items left; ``independent=True`` keeps each candidate with its own probability (a
    Bernoulli draw), then at most ``n_samples`` of the kept ones, uniformly.

    Parameters
    ----------
    candidates : torch.Tensor
        (B, M) long, 0 = no item (e.g. the teacher's top list).
    probabilities : torch.Tensor
        (B, M) float in [0, 1] (``dcd_probabilities``); items at 0 are never drawn.
    n_samples : int
        Items per row.
    generator : torch.Generator, optional
        Source of randomness, on the inputs' device.
    independent : bool
        Bernoulli reading instead of proportional draws.

    Returns
    -------
    torch.Tensor
        (B, n_samples) long in the candidates' order (the teacher's order for teacher-side
        candidates); 0 after the last item when fewer can be drawn.
    """
    eligible = (candidates > 0) & (probabilities > 0)
    if independent:
        coins = torch.rand(probabilities.shape, generator=generator, dtype=torch.float64,
                           device=probabilities.device)
        eligible &= coins < probabilities.double()
        log_weights = torch.zeros_like(coins)            # uniform among the kept ones
    else:
        log_weights = torch.where(eligible, probabilities.double(),
                                  torch.ones_like(probabilities, dtype=torch.float64)).log()
    keys = _race_keys(log_weights, generator).masked_fill(~eligible, _NEG_INF)
    return _select(candidates.long(), keys, n_samples)


def dcd_loss(scores, teacher_side, student_side, teacher_ranks, unranked_rank=None):
    """DCD's correction loss on the drawn items, per row: Plackett-Luce in the teacher's order.

    The teacher-side and student-side items of a row are merged and sorted by the teacher's
    rank; ``L = -sum_k log( exp(s_pi_k) / (sum_{l >= k} exp(s_pi_l) + sum_{j in U} exp(s_j)) )``
    over the sorted items pi. choice: items the teacher does not rank (rank >= ``unranked_rank``,
    e.g. outside an ensemble's top-N list, all tied) form the unordered set U: they must fall
    below every ranked item, in no order among themselves (RRD's relaxation). With dense teacher
    ranks and ``unranked_rank=None`` this is ListMLE on the merged items. The other reading
    (every teacher-side item above every student-side item) is
    ``rrd_loss(scores, teacher_side, student_side)``.

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores (item-side view: (I, U) scores of users).
    teacher_side, student_side : torch.Tensor
        (B, M), (B, M') long drawn items, disjoint, 0 = no item.
    teacher_ranks : torch.Tensor
        (B, I) long dense 1-based teacher ranks.
    unranked_rank : int, optional
        Teacher ranks from this one on count as unranked; None: every rank is ordered.

    Returns
    -------
    torch.Tensor
        (B,) per-row losses.
    """
    items = torch.cat([teacher_side, student_side], dim=1).long()          # (B, M + M')
    present = items > 0
    rank = teacher_ranks.gather(1, items)
    ordered = present if unranked_rank is None else present & (rank < unranked_rank)
    # Ranked items first, by teacher rank; then the rest (order irrelevant, they are masked).
    sort_key = torch.where(ordered, rank, torch.full_like(rank, torch.iinfo(rank.dtype).max))
    order = sort_key.sort(dim=1, stable=True).indices
    items, ordered = items.gather(1, order), ordered.gather(1, order)
    s = scores.gather(1, items)
    log_rest = masked_logsumexp(s, present.gather(1, order) & ~ordered, dim=1)
    return plackett_luce(s, ordered, log_rest)
