"""Easy-to-hard knowledge construction (spec, section 4).

Each (user, teacher) pair follows the teacher's training trajectory: v(u, x) in 0..C-1 says which
snapshot feeds the ensemble target of user u. Every p epochs the student's top-n list is compared
with the next snapshot of every teacher (discrepancy = 1 - discounted NDCG); a pair moves on when the student
has caught up, and once the threshold falls below 1 every pair moves on, so the sequence ends.
"""

from dataclasses import dataclass

import torch

from recbole_hetcomp.knowledge.topk import topk_by_id

def exclusion_mask(items, n_items):
    """Dense per-batch mask of the items a user must never be recommended.

    Parameters
    ----------
    items : torch.Tensor
        (B, L) long: each user's training items, 0-padded.
    n_items : int
        Number of items, padding item 0 included.

    Returns
    -------
    torch.Tensor
        (B, n_items) bool: True for the user's training items and for item 0.
    """
    mask = torch.zeros(items.shape[0], n_items, dtype=torch.bool, device=items.device)
    mask.scatter_(1, items.long(), True)
    mask[:, 0] = True
    return mask


def masked_topk(scores, exclude, n):
    """The top-n items of each row, excluded items (training items, item 0) removed, ties
    broken by the lower item id.

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores.
    exclude : torch.Tensor
        (B, I) bool, True for items that may not be returned.
    n : int
        List length.

    Returns
    -------
    torch.Tensor
        (B, n) long, best first; 0 where fewer than n items are allowed.
    """
    scores = scores.detach().masked_fill(exclude, float("-inf"))
    b, i = scores.shape
    kk = min(n, i)
    values, items = topk_by_id(scores, kk)  # ties by item id: the same lists on every device
    items = torch.where(values > float("-inf"), items, torch.zeros_like(items))
    if kk < n:
        items = torch.cat([items, items.new_zeros(b, n - kk)], dim=1)
    return items


def discounted_gain(n, temperature=10.0, device=None):
    """NDCG weight of a hit at each 0-based position t: ``(2 ** exp(-t / T) - 1) / log2(t + 2)``.

    The gain ``2 ** exp(-t / T) - 1`` and the standard log2(t + 2) position discount of a
    discounted cumulative gain (spec, section 4); (n,) float64.
    """
    t = torch.arange(n, dtype=torch.float64, device=device)
    return (torch.pow(2.0, torch.exp(-t / temperature)) - 1.0) / torch.log2(t + 2.0)


def _gain_bits(n):
    """Fixed-point resolution of the discrepancy: as fine as float64 allows, without overflow.

    Every discounted gain is at most 1, so a sum of n of them in units of ``2 ** -bits`` stays
    below ``n * 2 ** bits``; 62 bits of int64 headroom leave ``bits = 62 - ceil(log2 n)``, capped at
    float64's 52-bit mantissa (finer units would only round away on the way back to float).
    """
    return min(52, 62 - max(1, (n - 1).bit_length()))


def _fixed_point_gain(n, temperature, device):
    """(n,) int64 discounted gains in units of ``2 ** -_gain_bits(n)``."""
    scale = float(2 ** _gain_bits(n))
    return torch.round(discounted_gain(n, temperature, device) * scale).long()


def _sorted_student(student_top, n):
    """The student's first n items sorted by id, and their positions: two (B, ns) long tensors."""
    ns = min(n, student_top.shape[-1])
    if ns == 0:
        raise ValueError("student_top is empty: need at least one position")
    return student_top[:, :ns].long().sort(dim=1)


def _discrepancy_sorted(student_sorted, student_pos, teacher, gain):
    """1 - NDCG from a presorted student list.

    Parameters
    ----------
    student_sorted, student_pos : torch.Tensor
        (B, ns) long: the student's items sorted by id, and each one's position in its list.
    teacher : torch.Tensor
        (B, E, n') long: E teacher list heads per row.
    gain : torch.Tensor
        (n,) int64 fixed-point discounted gains of all n scored positions (n >= ns), see
        ``_fixed_point_gain``; the ideal DCG is their sum.

    Returns
    -------
    torch.Tensor
        (B, E) float64.
    """
    b, e, m = teacher.shape
    ns = student_sorted.shape[1]
    flat = teacher.reshape(b, e * m).contiguous()
    # Look every teacher item up in the row's sorted student list (one sort per user, shared by
    # all its teacher lists), then mark the student positions it hits.
    at = torch.searchsorted(student_sorted, flat).clamp_max_(ns - 1)    # (B, E * n')
    hit = (student_sorted.gather(1, at) == flat) & (flat != 0)
    position = torch.where(hit, student_pos.gather(1, at), ns).view(b, e, m)
    # Scattering a constant keeps "is the item among the teacher's items" a membership test,
    # whatever the teacher list holds twice; column ns collects the misses.
    hits = torch.zeros(b, e, ns + 1, dtype=torch.bool, device=teacher.device)
    hits.scatter_(2, position, True)
    # Integer (fixed-point) gains: D is exactly 0 when every position hits, and bit-identical
    # for equal hit patterns on any device, so the advance rule's comparisons are reproducible.
    dcg = torch.where(hits[..., :ns], gain[:ns], torch.zeros_like(gain[:ns])).sum(dim=-1)
    ideal = gain.sum()
    return (ideal - dcg).to(torch.float64) / ideal.to(torch.float64)


def discrepancy(student_top, teacher_lists, n=50, temperature=10.0):
    """Discrepancy 1 - NDCG between the student's top list and teacher lists (spec, section 4).

    A standard discounted NDCG over the student's first n positions: position t (0-based) gains
    ``(2 ** exp(-t / T) - 1) / log2(t + 2)`` when the student's item there is among the teacher
    list's first n items, else 0; the ideal DCG counts a hit at all n positions, so a student
    list shorter than n (or 0-padded) simply misses its empty positions. Item 0 never counts as a
    hit. Gains are summed in fixed point (about ``2 ** -52`` units, see ``_gain_bits``), so D is
    exactly 0 for a perfect match and equal hit patterns give bit-equal values on every device,
    which keeps the advance rule's ratio comparisons reproducible.

    Parameters
    ----------
    student_top : torch.Tensor
        (B, N) long, the student's ranking (distinct items).
    teacher_lists : torch.Tensor
        (B, ..., N') integer teacher rankings, e.g. (B, X, N') for X teachers; 0-padded.
    n : int
        Prefix length of both lists.
    temperature : float
        T of the position gain.

    Returns
    -------
    torch.Tensor
        (B, ...) float64 in [0, 1].
    """
    student_sorted, student_pos = _sorted_student(student_top, n)
    teacher = teacher_lists[..., :n].long()
    lead = teacher.shape[:-1]                                   # (B, ...)
    b = teacher.shape[0]
    gain = _fixed_point_gain(n, temperature, teacher.device)
    flat = teacher.reshape(b, -1, teacher.shape[-1])            # (B, E, n')
    out = _discrepancy_sorted(student_sorted, student_pos, flat, gain)
    return out.reshape(lead)


def threshold(epoch, p=10, alpha=1.05, decay=0.995):
    """Advance threshold ``alpha * decay ** (epoch // p)``."""
    return alpha * decay ** (epoch // p)


@dataclass
class KnowledgeState:
    """Where each (user, teacher) pair stands on the teacher's trajectory.

    Attributes
    ----------
    choice : torch.Tensor
        (U, X) long, v(u, x): the snapshot feeding user u's target from teacher x.
    d : torch.Tensor
        (U, X) float64: the discrepancy remembered for the pair's next snapshot.
    initialised : bool
        False until the first ``knowledge_step`` has filled ``d``.
    """

    choice: torch.Tensor
    d: torch.Tensor
    initialised: bool = False

    @classmethod
    def new(cls, n_users, n_teachers, device=None):
        """Every pair at snapshot 0, nothing remembered."""
        return cls(
            choice=torch.zeros(n_users, n_teachers, dtype=torch.long, device=device),
            d=torch.zeros(n_users, n_teachers, dtype=torch.float64, device=device),
            initialised=False,
        )

    def to(self, device):
        """The same state on ``device``."""
        return KnowledgeState(self.choice.to(device), self.d.to(device), self.initialised)


def knowledge_step(state, student_top, rankings, epoch, p=10, alpha=1.05, decay=0.995,
                   batch_size=1024, n=50, temperature=10.0):
    """One knowledge-construction step for every user and teacher.

    First call: remember d(u, x) = D(u, snapshot v + 1), clamped to the last snapshot; nothing
    moves. Later calls, with th = ``threshold(epoch, p, alpha, decay)``: every pair not at the last
    snapshot computes d_next = D(u, snapshot v + 1) and advances when d / d_next > th or
    d / d_next < 1 (d_next = 0 counts as advancing, 0 / 0 included); an advanced pair remembers
    D(u, snapshot min(v + 1, C - 1)) for its new v, the others keep their d. Once th < 1 every
    ratio passes, so d_next is not computed at all. Vectorised over users (in batches of
    ``batch_size``) and teachers; each batch costs one host sync (to list the pairs that can move).

    Parameters
    ----------
    state : KnowledgeState
        Updated in place and returned.
    student_top : torch.Tensor
        (U, N) long, the student's current top-N unobserved items.
    rankings : torch.Tensor
        (X, C, U, M) integer teacher trajectories (see ``ensemble_targets``).
    epoch : int
        Current epoch (sets the threshold).
    p, alpha, decay : int, float, float
        Threshold schedule, see ``threshold``.
    batch_size : int
        Users per batch.
    n : int
        Prefix length of the discrepancy.
    temperature : float
        T of the discrepancy's position gain.

    Returns
    -------
    KnowledgeState
        ``state``.
    """
    x, c, u, _ = rankings.shape
    if state.choice.shape != (u, x):
        raise ValueError(f"state is for {tuple(state.choice.shape)} (users, teachers), "
                         f"rankings for {(u, x)}")
    if student_top.shape[0] != u:
        raise ValueError(f"student_top has {student_top.shape[0]} users, rankings {u}")
    device = rankings.device
    th = threshold(epoch, p, alpha, decay)
    gain = None
    teacher = torch.arange(x, device=device)
    for start in range(0, u, batch_size):
        end = min(start + batch_size, u)
        student_sorted, student_pos = _sorted_student(student_top[start:end].to(device), n)
        if gain is None:
            gain = _fixed_point_gain(n, temperature, device)
        v = state.choice[start:end]                              # (B, X)
        if not state.initialised:
            user = torch.arange(start, end, device=device).unsqueeze(1)  # (B, 1)
            heads = rankings[teacher.unsqueeze(0), (v + 1).clamp_max(c - 1), user, :n]
            state.d[start:end] = _discrepancy_sorted(student_sorted, student_pos, heads.long(),
                                                     gain)
            continue
        # Only pairs short of the last snapshot can move: work on those pairs alone.
        row, col = (v < c - 1).nonzero(as_tuple=True)           # (P,) pair coordinates
        if th >= 1:
            d_next = _pair_discrepancy(student_sorted, student_pos, rankings, row, col,
                                       v[row, col] + 1, start, n, gain)
            d = state.d[start + row, col]
            reached = d_next == 0
            ratio = d / torch.where(reached, torch.ones_like(d_next), d_next)
            advance = reached | (ratio > th) | (ratio < 1)      # (P,)
            row, col = row[advance], col[advance]
        # else every ratio is > th or < 1: all these pairs advance, d_next is not needed.
        v_new = v[row, col] + 1
        state.choice[start + row, col] = v_new
        state.d[start + row, col] = _pair_discrepancy(
            student_sorted, student_pos, rankings, row, col, (v_new + 1).clamp_max(c - 1), start,
            n, gain)
    state.initialised = True
    return state


def _pair_discrepancy(student_sorted, student_pos, rankings, row, col, snapshot, start, n, gain):
    """(P,) discrepancy of batch row ``row`` against teacher ``col`` at ``snapshot``."""
    heads = rankings[col, snapshot, start + row, :n].long().unsqueeze(1)  # (P, 1, n)
    return _discrepancy_sorted(student_sorted[row], student_pos[row], heads, gain).squeeze(1)


def share_at_last(choice, c):
    """Fraction of (user, teacher) pairs at the last snapshot C - 1."""
    if choice.numel() == 0:
        return 1.0
    return float((choice == c - 1).double().mean())


def mean_snapshot(choice):
    """(X,) float64: each teacher's mean snapshot index over users."""
    return choice.double().mean(dim=0)


def should_switch(choice, c, switch_share=0.995):
    """True when at least ``switch_share`` of the pairs reached the last snapshot."""
    return share_at_last(choice, c) >= switch_share
