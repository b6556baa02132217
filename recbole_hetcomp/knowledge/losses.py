"""The two distillation losses of HetComp (spec, section 3), per user.

Both take the student's scores for all items of a batch of users and return one loss per user;
the trainer weights (0.01 overall, 0.005 rank) and sums them. Every log-sum-exp is computed with
masks over the raw scores (no clamping), shifted by its maximum. Sums over empty sets are -inf in
log space; they are guarded (``torch.where``, and a log-sum-exp whose backward is written out) so
that no unused branch sends a NaN gradient back: losses and gradients stay finite for any finite
scores (tested at +-1e4).
"""

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_NEG_INF = float("-inf")


class _MaskedLogSumExp(torch.autograd.Function):
    """log-sum-exp over the last dim where ``mask`` holds, with a fused backward.

    These reductions run over all items of every user in a batch and dominate the cost of both
    losses, so the forward keeps its one (.., N) buffer of ``exp(x - peak)`` and the backward is
    a single multiply: d out / d x = exp(x - peak) / sum, 0 on masked entries.
    """

    @staticmethod
    def forward(ctx, x, mask):
        return _lse_of_masked(ctx, x.masked_fill(~mask, _NEG_INF))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return _lse_grad(ctx, grad), None


class _LogSumExpExcept(torch.autograd.Function):
    """log-sum-exp of each row of ``x`` (B, N) leaving out column 0 and those in ``index``.

    The index form of ``_MaskedLogSumExp`` for the hot path: a user excludes a few hundred items
    out of tens of thousands, so scattering -inf into a copy beats building dense masks.
    """

    @staticmethod
    def forward(ctx, x, index):
        weight = x.detach().clone()
        weight.scatter_(1, index, _NEG_INF)
        weight[:, 0] = _NEG_INF  # the padding item is never a candidate
        return _lse_of_masked(ctx, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return _lse_grad(ctx, grad), None


def _lse_of_masked(ctx, weight):
    """Forward of both log-sum-exps on ``weight`` (-inf where left out; overwritten)."""
    peak = weight.amax(dim=-1, keepdim=True)
    # Empty rows peak at -inf: shift by 0 instead, their sum is 0 and the log gives -inf.
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    weight = weight.sub_(peak).exp_()                   # left-out entries: exp(-inf) = 0
    total = weight.sum(dim=-1, keepdim=True)            # >= 1 unless the row is empty
    ctx.save_for_backward(weight, total)
    return (peak + total.log()).squeeze(-1)


def _lse_grad(ctx, grad):
    weight, total = ctx.saved_tensors
    # An empty row has total 0 and all weights 0: divide by 1 to keep its gradient at 0.
    scale = grad.unsqueeze(-1) / torch.where(total > 0, total, torch.ones_like(total))
    return weight * scale


def _logsumexp_remaining(scores, exclude, items, mask):
    """log-sum-exp over the items neither excluded nor among the valid ``items``.

    ``exclude`` is a (B, I) bool mask or a (B, E) long index of excluded items (0-padded: item 0
    is always excluded).
    """
    if exclude.dtype == torch.bool:
        return masked_logsumexp(scores, remaining_items(exclude, items, mask))
    listed = torch.where(mask, items, torch.zeros_like(items))
    index = torch.cat([exclude.long(), listed], dim=1)
    if scores.shape[1] == 0:
        return scores.new_full(scores.shape[:1], _NEG_INF)
    return _LogSumExpExcept.apply(scores, index)


def _is_excluded(exclude, items):
    """(B, K) bool: which ``items`` are excluded (mask or index form of ``exclude``)."""
    if exclude.dtype == torch.bool:
        return exclude.gather(1, items)
    return (items.unsqueeze(2) == exclude.unsqueeze(1)).any(dim=2) | (items == 0)


def masked_logsumexp(x, mask, dim=-1):
    """``log(sum(exp(x)))`` over ``dim`` where ``mask`` is True; -inf where none is.

    Parameters
    ----------
    x : torch.Tensor
        Values.
    mask : torch.Tensor
        bool, broadcastable to ``x``.
    dim : int
        Dimension to reduce.

    Returns
    -------
    torch.Tensor
        ``x`` reduced over ``dim``. Gradients are finite, and zero for masked entries and empty
        rows (first order only: the backward is not itself differentiable).
    """
    mask = mask.expand_as(x)
    if dim not in (-1, x.dim() - 1):
        x, mask = x.movedim(dim, -1), mask.movedim(dim, -1)
    if x.shape[-1] == 0:
        return x.new_full(x.shape[:-1], _NEG_INF)
    return _MaskedLogSumExp.apply(x, mask)


def _logaddexp(a, b):
    """``torch.logaddexp`` whose gradient stays finite when both sides are -inf."""
    both_empty = torch.isneginf(a) & torch.isneginf(b)
    zero = torch.zeros_like(a)
    out = torch.logaddexp(torch.where(both_empty, zero, a), torch.where(both_empty, zero, b))
    return torch.where(both_empty, torch.full_like(out, _NEG_INF), out)


def remaining_items(exclude, items, mask):
    """(B, I) bool: items neither excluded nor among the valid entries of ``items``.

    Parameters
    ----------
    exclude : torch.Tensor
        (B, I) bool: training items and item 0.
    items : torch.Tensor
        (B, K) long item lists, e.g. T_u.
    mask : torch.Tensor
        (B, K) bool validity of ``items``.
    """
    rest = ~exclude
    # Masked entries point at item 0, the padding item, which is never a remaining item.
    rest.scatter_(1, torch.where(mask, items, torch.zeros_like(items)), False)
    rest[:, 0] = False
    return rest


def _gather_scores(scores, items, mask):
    # (B, K) scores of the listed items; masked entries read item 0 (always a valid index)
    return scores.gather(1, torch.where(mask, items, torch.zeros_like(items)))


def overall_loss(scores, exclude, targets, target_mask, observed, observed_mask):
    """Set-level loss: every item of P_u and of T_u must beat the remaining unobserved items.

    L(u) = sum over valid i in P_u and T_u of
    ``-log(exp(s_ui) / (exp(s_ui) + sum_{j in R} exp(s_uj)))``, R = items not excluded and not in
    T_u. P_u (training items) and T_u (unobserved items) are disjoint, so the sum over their union
    is the sum over both lists.

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores for every item.
    exclude : torch.Tensor
        (B, I) bool: training items and item 0; or the same as a (B, E) long index of the
        excluded items, 0-padded (faster: no dense mask is built).
    targets, target_mask : torch.Tensor
        (B, K) long, (B, K) bool: T_u and its validity.
    observed, observed_mask : torch.Tensor
        (B, L) long, (B, L) bool: P_u and its validity.

    Returns
    -------
    torch.Tensor
        (B,) per-user losses.
    """
    log_rest = _logsumexp_remaining(scores, exclude, targets, target_mask)
    log_rest = log_rest.unsqueeze(1)                                # (B, 1)
    items = torch.cat([observed, targets], dim=1)                   # (B, L + K)
    valid = torch.cat([observed_mask, target_mask], dim=1)
    s = _gather_scores(scores, items, valid)
    # -log(e^s / (e^s + e^r)) = softplus(r - s): finite for any s, r, and 0 when R is empty
    term = F.softplus(log_rest - s)
    return torch.where(valid, term, torch.zeros_like(term)).sum(dim=1)


def plackett_luce(s, mask, log_z):
    """Plackett-Luce negative log-likelihood of ordered lists against a remainder Z.

    ``PL = sum_k -(s_k - log(sum_{l >= k} exp(s_l) + Z))`` over the valid positions k; masked
    positions contribute nothing and are left out of the tail sums.

    Parameters
    ----------
    s : torch.Tensor
        (B, K) scores of the list's items, in list order.
    mask : torch.Tensor
        (B, K) bool validity of the positions.
    log_z : torch.Tensor
        (B,) ``log Z``; -inf for an empty remainder.

    Returns
    -------
    torch.Tensor
        (B,) per-row losses.
    """
    b, k = s.shape
    # Tail sums as a masked log-sum-exp over a (B, K, K + 1) triangle: K is at most ~100, and
    # this avoids logcumsumexp, whose gradient is NaN next to -inf entries.
    later = torch.ones(k, k, dtype=torch.bool, device=s.device).triu()   # [k, l]: l >= k
    tail_mask = later.unsqueeze(0) & mask.unsqueeze(1) & mask.unsqueeze(2)  # (B, K, K)
    z_mask = (mask & torch.isfinite(log_z).unsqueeze(1)).unsqueeze(2)       # (B, K, 1)
    vals = torch.cat([s.unsqueeze(1).expand(b, k, k), log_z.view(b, 1, 1).expand(b, k, 1)], dim=2)
    denom = masked_logsumexp(vals, torch.cat([tail_mask, z_mask], dim=2))  # (B, K)
    # Valid positions always include their own score, so denom is finite there.
    denom = torch.where(mask, denom, torch.zeros_like(denom))
    term = denom - s
    return torch.where(mask, term, torch.zeros_like(term)).sum(dim=1)


def rank_loss(scores, exclude, targets, target_mask, observed, observed_mask, top=(50, 10)):
    """Permutation-level loss on P_u and the heads of T_u.

    ``L(u) = PL(P_u; Z_a) + (PL(T_u[:a]; Z_a) + PL(T_u[:b]; Z_b)) / 2`` with ``(a, b) = top`` and
    Z_n = sum of exp(s_uj) over the items j not excluded and not in T_u[:n].

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores for every item.
    exclude : torch.Tensor
        (B, I) bool: training items and item 0.
    targets, target_mask : torch.Tensor
        (B, K) long, (B, K) bool: T_u and its validity.
    observed, observed_mask : torch.Tensor
        (B, L) long, (B, L) bool: P_u and its validity.
    top : tuple of int
        (a, b): the two heads of T_u.

    Returns
    -------
    torch.Tensor
        (B,) per-user losses.
    """
    a, b = top
    t_scores = _gather_scores(scores, targets, target_mask)          # (B, K)
    # One pass over all items for the longer head; the shorter head's remainder adds back the
    # items between the two heads (distinct unobserved items, as ensemble targets are).
    long_n, short_n = max(a, b), min(a, b)
    log_z_long = _logsumexp_remaining(scores, exclude, targets[:, :long_n],
                                      target_mask[:, :long_n])
    between = target_mask[:, short_n:long_n] & ~_is_excluded(
        exclude, torch.where(target_mask, targets, torch.zeros_like(targets))[:, short_n:long_n])
    log_z_short = _logaddexp(log_z_long, masked_logsumexp(t_scores[:, short_n:long_n], between))
    log_z = {long_n: log_z_long, short_n: log_z_short}
    loss_p = plackett_luce(_gather_scores(scores, observed, observed_mask), observed_mask,
                           log_z[a])
    loss_a = plackett_luce(t_scores[:, :a], target_mask[:, :a], log_z[a])
    loss_b = plackett_luce(t_scores[:, :b], target_mask[:, :b], log_z[b])
    return loss_p + (loss_a + loss_b) / 2
