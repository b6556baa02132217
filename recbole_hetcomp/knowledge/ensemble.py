"""Ensemble ranking knowledge: targets T_u and observed lists P_u (spec, section 1).

score(u, i) = sum over rankers x of exp(-r_x(u, i) / T), 0 where i is absent from ranker x's list.
The top-k items by score are kept, exact ties broken by the smaller item id. Item id 0 is
RecBole's padding item: it means "no item" in every list and never gets a score.

Nothing here builds a dense (users x items) matrix: the candidates of a user are the X * M ids in
its lists, so the work is a per-row sort of those ids, a segment sum over runs of equal ids and a
top-k by score with the id tie-break built into the key, all in user batches.
"""

import torch

from recbole_hetcomp.knowledge.importance import FIXED_POINT_BITS, fixed_point_importance


def ensemble_top(lists, k, temperature=10.0, weights=None):
    """Top-k items of the rank-importance ensemble of several ranked lists, per row.

    Scores are summed in fixed point (int64 units of ``2 ** -FIXED_POINT_BITS``, see
    ``importance.py``) so equal scores are bit-equal whatever the order of the sum or the device,
    and ties are broken by the smaller item id.

    Parameters
    ----------
    lists : torch.Tensor
        (B, X, M) integer item ids: X rankings of length M per row, best first, 0 = padding.
    k : int
        Number of items to return per row.
    temperature : float
        T in ``exp(-r / T)``.
    weights : torch.Tensor, optional
        (X,) non-negative integers: list x's importances count ``weights[x]`` times (the
        validation-weighted ensemble, ``weights.py``); None = all 1, the paper's uniform sum.
        Integers keep the sums exact; a list of weight 0 contributes nothing.

    Returns
    -------
    items : torch.Tensor
        (B, k) long, best first; 0 where the row has fewer than k scored items.
    mask : torch.Tensor
        (B, k) bool, True where ``items`` holds a real item.
    """
    if lists.dim() != 3:
        raise ValueError(f"lists must be (B, X, M), got shape {tuple(lists.shape)}")
    b, x, m = lists.shape
    n = x * m
    device = lists.device
    if n == 0 or k == 0:
        return (torch.zeros(b, k, dtype=torch.long, device=device),
                torch.zeros(b, k, dtype=torch.bool, device=device))
    w_table = fixed_point_importance(m, temperature, device)
    if weights is None:
        list_weights, weight_sum = w_table.repeat(x), x
    else:
        weights = torch.as_tensor(weights, dtype=torch.long, device=device)
        if weights.shape != (x,) or bool((weights < 0).any()):
            raise ValueError(f"weights must be {x} non-negative integers, got {weights.tolist()}")
        list_weights = (weights.unsqueeze(1) * w_table).reshape(n)  # (N,) list x, rank r
        weight_sum = int(weights.sum())
    # Largest possible row total: the cumulative sum below adds every weight of a row.
    max_total = int(w_table.sum()) * max(weight_sum, 1)
    if max_total >= 2**62:
        raise ValueError(f"{x} lists of length {m} overflow the {FIXED_POINT_BITS}-bit fixed point")

    ids = lists.reshape(b, n).long()                            # (B, N) candidate ids
    sorted_ids, order = ids.sort(dim=1)                         # equal ids become runs
    padding = sorted_ids <= 0
    w = list_weights.expand(b, n).gather(1, order)              # (B, N) weight of each candidate
    csum = w.masked_fill_(padding, 0).cumsum(dim=1)             # exact: integer arithmetic

    # A run's total is the cumulative sum at its last element minus the one at the previous run's
    # last element; csum never decreases, so a running max of run-end values finds the latter.
    is_end = torch.ones_like(padding)
    is_end[:, :-1] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    prev_end = torch.zeros_like(csum)
    prev_end[:, 1:] = csum.masked_fill(~is_end, 0).cummax(dim=1).values[:, :-1]
    # (B, N) score of each distinct id, held at its run's last position; 0 elsewhere
    score = (csum - prev_end).masked_fill_(~is_end | padding, 0)

    kk = min(k, n)
    pos_bits = (n - 1).bit_length()
    if max_total.bit_length() + pos_bits <= 62:
        # Run ends sit in ascending id order: appending the reversed position to the score makes
        # every key unique and puts the smaller id first on ties, so any top-k algorithm agrees.
        key = (score << pos_bits) | (n - 1 - torch.arange(n, device=device))
        top_key = key.topk(kk, dim=1).values
        top_score = top_key >> pos_bits
        pos = (n - 1) - (top_key & ((1 << pos_bits) - 1))
    else:
        # Too many bits for one key: a stable sort keeps the smaller id first on ties.
        top_score, pos = score.sort(dim=1, descending=True, stable=True)
        top_score, pos = top_score[:, :kk], pos[:, :kk]
    mask = top_score > 0
    items = torch.where(mask, sorted_ids.gather(1, pos), torch.zeros_like(pos))
    if kk < k:
        pad = k - kk
        items = torch.cat([items, items.new_zeros(b, pad)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(b, pad)], dim=1)
    return items, mask


def ensemble_targets(rankings, choice, k=100, temperature=10.0, batch_size=1024, weights=None):
    """Ensemble targets T_u from each teacher's chosen snapshot.

    Parameters
    ----------
    rankings : torch.Tensor
        (X, C, U, M) int16/int32/int64: teacher x's top-M ranking of user u's unobserved items at
        snapshot c, 0-padded.
    choice : torch.Tensor
        (U, X) integer, v(u, x) in 0..C-1: the snapshot of teacher x used for user u.
    k : int
        Length of T_u.
    temperature : float
        T in ``exp(-r / T)``.
    batch_size : int
        Users per batch.
    weights : torch.Tensor, optional
        (X,) integer teacher weights (see ``ensemble_top``); None = uniform.

    Returns
    -------
    targets : torch.Tensor
        (U, k) long, best first, 0-padded.
    mask : torch.Tensor
        (U, k) bool, True where ``targets`` holds a real item.
    """
    if rankings.dim() != 4:
        raise ValueError(f"rankings must be (X, C, U, M), got shape {tuple(rankings.shape)}")
    x, c, u, _ = rankings.shape
    device = rankings.device
    choice = choice.to(device=device, dtype=torch.long)
    if choice.shape != (u, x):
        raise ValueError(f"choice must be (U, X) = {(u, x)}, got {tuple(choice.shape)}")
    if choice.numel() and (int(choice.min()) < 0 or int(choice.max()) >= c):
        raise ValueError(f"choice must lie in 0..{c - 1} (C = {c} snapshots)")
    targets = torch.empty(u, k, dtype=torch.long, device=device)
    mask = torch.empty(u, k, dtype=torch.bool, device=device)
    teacher = torch.arange(x, device=device).unsqueeze(0)       # (1, X)
    for start in range(0, u, batch_size):
        end = min(start + batch_size, u)
        user = torch.arange(start, end, device=device).unsqueeze(1)  # (B, 1)
        lists = rankings[teacher, choice[start:end], user]  # (B, X, M)
        targets[start:end], mask[start:end] = ensemble_top(lists, k, temperature, weights)
    return targets, mask


def observed_lists(observed, l=10, temperature=10.0, batch_size=1024, weights=None):
    """Observed ranking P_u: the user's training items ranked by the converged teachers' ensemble.

    Users with fewer than ``l`` training items get shorter lists (mask False on the rest); no item
    is repeated or invented.

    Parameters
    ----------
    observed : torch.Tensor
        (X, U, M) integer: converged teacher x's ranking of user u's training items, 0-padded.
    l : int
        Length of P_u.
    temperature : float
        T in ``exp(-r / T)``.
    batch_size : int
        Users per batch.
    weights : torch.Tensor, optional
        (X,) integer teacher weights (see ``ensemble_top``); None = uniform.

    Returns
    -------
    items : torch.Tensor
        (U, l) long, best first, 0-padded.
    mask : torch.Tensor
        (U, l) bool, True where ``items`` holds a real item.
    """
    if observed.dim() != 3:
        raise ValueError(f"observed must be (X, U, M), got shape {tuple(observed.shape)}")
    _, u, _ = observed.shape
    device = observed.device
    items = torch.empty(u, l, dtype=torch.long, device=device)
    mask = torch.empty(u, l, dtype=torch.bool, device=device)
    for start in range(0, u, batch_size):
        end = min(start + batch_size, u)
        lists = observed[:, start:end].transpose(0, 1)          # (B, X, M)
        items[start:end], mask[start:end] = ensemble_top(lists, l, temperature, weights)
    return items, mask
