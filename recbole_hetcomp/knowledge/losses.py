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
_LOG2_E = 1.4426950408889634  # log2(e)


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


class _RemainderAndListed(torch.autograd.Function):
    """Per row: the log-sum-exp of the items left in, and the scores of the listed items.

    Both losses need exactly these two things from the (B, I) scores. Taking them in one node
    makes this node the scores' only consumer, so their gradient is built in one (B, I) buffer:
    the forward's ``exp(x - peak)`` buffer, scaled in place, with the listed items' gradients
    scatter-added into it. Left to autograd, three dense gradients (two of them zero-filled
    scatters of a gather's backward) would be allocated and summed for every chunk of users.
    Single use: the backward consumes the saved buffer.
    """

    @staticmethod
    def forward(ctx, scores, left_out, listed):
        weight = scores.detach().clone()
        if left_out.dtype == torch.bool:                  # (B, I) mask
            weight.masked_fill_(left_out, _NEG_INF)
        else:                                             # (B, E) index, 0-padded
            weight.scatter_(1, left_out, _NEG_INF)
            weight[:, 0] = _NEG_INF  # the padding item is never a candidate
        lse, total = _lse_in_place(weight)
        ctx.save_for_backward(weight, total, listed)
        return lse, scores.detach().gather(1, listed)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse, grad_listed):
        weight, total, listed = ctx.saved_tensors
        grad = weight.mul_(_lse_scale(grad_lse, total))
        grad.scatter_add_(1, listed, grad_listed)
        return grad, None, None


def _lse_in_place(weight):
    """log-sum-exp of each row of ``weight`` (-inf where left out), which becomes
    ``exp(weight - peak)``; returns (lse (...), total (..., 1))."""
    peak = weight.amax(dim=-1, keepdim=True)
    # Empty rows peak at -inf: shift by 0 instead, their sum is 0 and the log gives -inf.
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    # exp(y) as 2^(y log2 e): torch's vectorised exp2 runs ~3x faster than its exp on CPU
    # (0.6 vs 1.8 ms for 2M floats), and the scaling is exact to float rounding.
    weight.sub_(peak).mul_(_LOG2_E).exp2_()             # left-out entries: 2^-inf = 0
    total = weight.sum(dim=-1, keepdim=True)            # >= 1 unless the row is empty
    return (peak + total.log()).squeeze(-1), total


def _lse_scale(grad, total):
    # An empty row has total 0 and all weights 0: divide by 1 to keep its gradient at 0.
    return grad.unsqueeze(-1) / torch.where(total > 0, total, torch.ones_like(total))


def _lse_of_masked(ctx, weight):
    """Forward of ``_MaskedLogSumExp`` on ``weight`` (-inf where left out; overwritten)."""
    lse, total = _lse_in_place(weight)
    ctx.save_for_backward(weight, total)
    return lse


def _lse_grad(ctx, grad):
    weight, total = ctx.saved_tensors
    return weight * _lse_scale(grad, total)


def _remainder_and_listed(scores, exclude, items, mask, listed, listed_mask):
    """(log-sum-exp over the items neither excluded nor among the valid ``items``, the scores of
    the valid ``listed`` items (masked entries read item 0)).

    ``exclude`` is a (B, I) bool mask or a (B, E) long index of excluded items (0-padded: item 0
    is always excluded).
    """
    listed = torch.where(listed_mask, listed, torch.zeros_like(listed))
    if scores.shape[1] == 0:
        return scores.new_full(scores.shape[:1], _NEG_INF), scores.new_zeros(listed.shape)
    if exclude.dtype == torch.bool:
        left_out = ~remaining_items(exclude, items, mask)
    else:
        left_out = torch.cat([exclude.long(), torch.where(mask, items, torch.zeros_like(items))],
                             dim=1)
    return _RemainderAndListed.apply(scores, left_out, listed)


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
    items = torch.cat([observed, targets], dim=1)                   # (B, L + K)
    valid = torch.cat([observed_mask, target_mask], dim=1)
    log_rest, s = _remainder_and_listed(scores, exclude, targets, target_mask, items, valid)
    log_rest = log_rest.unsqueeze(1)                                # (B, 1)
    # -log(e^s / (e^s + e^r)) = softplus(r - s): finite for any s, r, and 0 when R is empty
    term = F.softplus(log_rest - s)
    return torch.where(valid, term, torch.zeros_like(term)).sum(dim=1)


class _PlackettLuce(torch.autograd.Function):
    """Plackett-Luce NLL of (B, K) ordered lists in O(B K), see ``plackett_luce``.

    Forward: the tail sums ``log(sum_{l >= k} exp(s_l))`` are one reversed ``logcumsumexp``
    (stable), then ``logaddexp`` with log Z. Backward, written out because logcumsumexp's own
    gradient is NaN next to the -inf entries of masked positions:
    ``d/ds_l = sum_{valid k <= l} exp(s_l - denom_k) - 1`` for a valid l, computed as
    ``exp(s_l + logcumsumexp_k(-denom_k))`` (every term is at most 1: no overflow), and
    ``d/dlog Z = sum_{valid k} exp(log Z - denom_k)``.
    """

    @staticmethod
    def forward(ctx, s, mask, log_z):
        x = s.detach().masked_fill(~mask, _NEG_INF)
        tail = torch.logcumsumexp(x.flip(1), dim=1).flip(1)               # (B, K)
        denom = torch.logaddexp(tail, log_z.detach().unsqueeze(1))
        # Valid positions include their own score, so denom is finite there.
        denom = torch.where(mask, denom, torch.zeros_like(denom))
        ctx.save_for_backward(x, mask, log_z, denom)
        return torch.where(mask, denom - x, torch.zeros_like(denom)).sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mask, log_z, denom = ctx.saved_tensors
        reach = torch.logcumsumexp(torch.where(mask, -denom, torch.full_like(denom, _NEG_INF)),
                                   dim=1)                                  # (B, K)
        share = torch.where(mask, torch.exp(x + reach) - 1, torch.zeros_like(x))
        to_z = torch.where(mask, torch.exp(log_z.unsqueeze(1) - denom), torch.zeros_like(x))
        g = grad.unsqueeze(1)
        return share * g, None, to_z.sum(dim=1) * grad


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
        (B,) per-row losses (first-order differentiable in ``s`` and ``log_z``).
    """
    if s.shape[1] == 0:
        return s.new_zeros(s.shape[:1]) + 0 * log_z
    return _PlackettLuce.apply(s, mask, log_z)


def rank_loss(scores, exclude, targets, target_mask, observed, observed_mask, top=(50, 10)):
    """Permutation-level loss on P_u and the heads of T_u.

    ``L(u) = PL(P_u; Z_a) + (PL(T_u[:a]; Z_a) + PL(T_u[:b]; Z_b)) / 2`` with ``(a, b) = top`` and
    Z_n = sum of exp(s_uj) over the items j not excluded and not in T_u[:n].

    Parameters
    ----------
    scores : torch.Tensor
        (B, I) float student scores for every item.
    exclude : torch.Tensor
        (B, I) bool: training items and item 0; or the same as a (B, E) long index, 0-padded.
    targets, target_mask : torch.Tensor
        (B, K) long, (B, K) bool: T_u and its validity; valid entries are distinct unobserved
        (not excluded) items, as ``ensemble_targets`` builds them.
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
    k = targets.shape[1]
    long_n, short_n = max(a, b), min(a, b)
    # One pass over all items for the longer head's remainder, which also reads the listed
    # scores; the shorter head's remainder adds back the items between the two heads (valid
    # targets are distinct unobserved items, so none of them is excluded).
    log_z_long, listed = _remainder_and_listed(
        scores, exclude, targets[:, :long_n], target_mask[:, :long_n],
        torch.cat([targets, observed], dim=1), torch.cat([target_mask, observed_mask], dim=1))
    t_scores, p_scores = listed[:, :k], listed[:, k:]                  # (B, K), (B, L)
    log_z_short = _logaddexp(log_z_long, masked_logsumexp(t_scores[:, short_n:long_n],
                                                          target_mask[:, short_n:long_n]))
    log_z = {long_n: log_z_long, short_n: log_z_short}
    loss_p = plackett_luce(p_scores, observed_mask, log_z[a])
    loss_a = plackett_luce(t_scores[:, :a], target_mask[:, :a], log_z[a])
    loss_b = plackett_luce(t_scores[:, :b], target_mask[:, :b], log_z[b])
    return loss_p + (loss_a + loss_b) / 2
