"""Overall and rank losses, and their gradients, against slow, obvious per-user loops."""

import pytest
import torch

from recbole_hetcomp.knowledge import masked_logsumexp, overall_loss, rank_loss


def _valid(items, mask):
    return [i for i, m in zip(items.tolist(), mask.tolist()) if m]


def _lse(values):
    return torch.logsumexp(torch.stack(values), dim=0)


def reference_overall(scores, exclude, targets, t_mask, observed, o_mask):
    out = []
    for u in range(scores.shape[0]):
        s = scores[u]
        t_items = _valid(targets[u], t_mask[u])
        rest = [j for j in range(scores.shape[1]) if not exclude[u, j] and j not in t_items]
        total = s.new_zeros(())
        for i in _valid(observed[u], o_mask[u]) + t_items:
            total = total - (s[i] - _lse([s[i]] + [s[j] for j in rest]))
        out.append(total)
    return torch.stack(out)


def reference_pl(s, ranking, rest):
    """Plackett-Luce NLL of `ranking` (valid ids only) against the items in `rest`."""
    total = s.new_zeros(())
    for k in range(len(ranking)):
        total = total - (s[ranking[k]] - _lse([s[i] for i in ranking[k:]] + [s[j] for j in rest]))
    return total


def reference_rank(scores, exclude, targets, t_mask, observed, o_mask, top=(50, 10)):
    a, b = top
    out = []
    for u in range(scores.shape[0]):
        s = scores[u]
        t_items = _valid(targets[u], t_mask[u])
        head_a = _valid(targets[u, :a], t_mask[u, :a])
        head_b = _valid(targets[u, :b], t_mask[u, :b])
        unobserved = [j for j in range(scores.shape[1]) if not exclude[u, j]]
        rest_a = [j for j in unobserved if j not in head_a]
        rest_b = [j for j in unobserved if j not in head_b]
        p_items = _valid(observed[u], o_mask[u])
        assert set(t_items) <= set(unobserved)
        out.append(reference_pl(s, p_items, rest_a)
                   + (reference_pl(s, head_a, rest_a) + reference_pl(s, head_b, rest_b)) / 2)
    return torch.stack(out)


def make_batch(seed, b=6, n_items=14, k=12, l=4, shuffle_masks=False):
    """Random users with 0..5 training items; some users' T_u covers every unobserved item."""
    gen = torch.Generator().manual_seed(seed)
    exclude = torch.zeros(b, n_items, dtype=torch.bool)
    exclude[:, 0] = True
    targets = torch.zeros(b, k, dtype=torch.long)
    t_mask = torch.zeros(b, k, dtype=torch.bool)
    observed = torch.zeros(b, l, dtype=torch.long)
    o_mask = torch.zeros(b, l, dtype=torch.bool)
    for u in range(b):
        items = (torch.randperm(n_items - 1, generator=gen) + 1).tolist()
        n_train = u % 6
        train, unobserved = items[:n_train], items[n_train:]
        exclude[u, train] = True
        ranked = train[:l]
        observed[u, :len(ranked)] = torch.tensor(ranked, dtype=torch.long)
        o_mask[u, :len(ranked)] = True
        # user 1: T_u holds every unobserved item (empty remainder); others: random lengths
        n_t = k if u == 1 else int(torch.randint(0, k + 1, (1,), generator=gen))
        n_t = min(n_t, len(unobserved))
        targets[u, :n_t] = torch.tensor(unobserved[:n_t], dtype=torch.long)
        t_mask[u, :n_t] = True
    if shuffle_masks:  # masked entries anywhere in the lists, not only at the end
        for tensor, mask in ((targets, t_mask), (observed, o_mask)):
            for u in range(b):
                perm = torch.randperm(mask.shape[1], generator=gen)
                tensor[u] = tensor[u, perm]
                mask[u] = mask[u, perm]
    scores = torch.randn(b, n_items, generator=gen, dtype=torch.float64) * 2
    weights = torch.rand(b, generator=gen, dtype=torch.float64) + 0.5
    return scores, exclude, targets, t_mask, observed, o_mask, weights


def _loss_and_grad(fn, scores, weights, *args, **kwargs):
    leaf = scores.clone().requires_grad_(True)
    loss = fn(leaf, *args, **kwargs)
    (loss * weights.to(loss.dtype)).sum().backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shuffle_masks", [False, True])
def test_overall_loss_and_grad_match_reference(seed, shuffle_masks):
    scores, *args, weights = make_batch(seed, shuffle_masks=shuffle_masks)
    loss, grad = _loss_and_grad(overall_loss, scores, weights, *args)
    ref_loss, ref_grad = _loss_and_grad(reference_overall, scores, weights, *args)
    assert loss.shape == (scores.shape[0],)
    assert torch.allclose(loss, ref_loss, atol=1e-9, rtol=0)
    assert torch.allclose(grad, ref_grad, atol=1e-9, rtol=0)
    # float32 scores agree to single precision
    loss32, grad32 = _loss_and_grad(overall_loss, scores.float(), weights, *args)
    assert torch.allclose(loss32.double(), ref_loss, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad32.double(), ref_grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shuffle_masks", [False, True])
@pytest.mark.parametrize("top", [(5, 2), (2, 5), (4, 4), (50, 10)])
def test_rank_loss_and_grad_match_reference(seed, shuffle_masks, top):
    scores, *args, weights = make_batch(seed, shuffle_masks=shuffle_masks)
    loss, grad = _loss_and_grad(rank_loss, scores, weights, *args, top=top)
    ref_loss, ref_grad = _loss_and_grad(reference_rank, scores, weights, *args, top=top)
    assert loss.shape == (scores.shape[0],)
    assert torch.allclose(loss, ref_loss, atol=1e-9, rtol=0)
    assert torch.allclose(grad, ref_grad, atol=1e-9, rtol=0)
    loss32, grad32 = _loss_and_grad(rank_loss, scores.float(), weights, *args, top=top)
    assert torch.allclose(loss32.double(), ref_loss, atol=1e-5, rtol=1e-5)
    assert torch.allclose(grad32.double(), ref_grad, atol=1e-5, rtol=1e-5)


def test_losses_vanish_without_knowledge():
    scores, exclude, targets, t_mask, observed, o_mask, weights = make_batch(3)
    t_mask[:] = False
    o_mask[:] = False
    for fn in (overall_loss, rank_loss):
        loss, grad = _loss_and_grad(fn, scores, weights, exclude, targets, t_mask, observed, o_mask)
        assert not loss.any() and not grad.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", [overall_loss, rank_loss])
def test_extreme_scores_stay_finite(dtype, fn):
    scores, *args, weights = make_batch(7)
    gen = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, scores.shape, generator=gen) * 2 - 1
    for extreme in (signs * 1e4, torch.full_like(scores, 1e4), torch.full_like(scores, -1e4),
                    torch.randn(scores.shape, generator=gen, dtype=torch.float64) * 1e4):
        loss, grad = _loss_and_grad(fn, extreme.to(dtype), weights, *args)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
        assert (loss >= 0).all()
    # and still exact where the reference can be evaluated in float64
    extreme = (signs * 1e4).double()
    ref = {overall_loss: reference_overall, rank_loss: reference_rank}[fn]
    ref_loss, ref_grad = _loss_and_grad(ref, extreme, weights, *args)
    loss, grad = _loss_and_grad(fn, extreme, weights, *args)
    assert torch.allclose(loss, ref_loss, atol=1e-6, rtol=1e-9)
    assert torch.allclose(grad, ref_grad, atol=1e-9)


def test_masked_logsumexp_gradcheck():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 7, generator=gen) < 0.6
    mask[:, 0] = True
    assert torch.autograd.gradcheck(lambda t: masked_logsumexp(t, mask, dim=1), (x,))
    x_t = x.detach().T.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: masked_logsumexp(t, mask.T, dim=0), (x_t,))


def test_masked_logsumexp_empty_rows():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = masked_logsumexp(x, mask, dim=1)
    assert out[0].item() == pytest.approx(torch.logsumexp(torch.tensor([1.0, 3.0]), 0).item())
    assert out[1].item() == float("-inf")
    torch.where(torch.isfinite(out), out, torch.zeros_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 1] == 0 and not x.grad[1].any()


@pytest.mark.parametrize("seed", range(3))
def test_plackett_luce_gradcheck_with_masks(seed):
    from recbole_hetcomp.knowledge import plackett_luce

    gen = torch.Generator().manual_seed(30 + seed)
    s = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(5, 7, generator=gen) < 0.7
    mask[0] = False                      # an empty list
    mask[1, 3:] = False                  # a short list
    log_z = torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_(True)
    with torch.no_grad():
        log_z[2] = float("-inf")         # an empty remainder
    assert torch.autograd.gradcheck(lambda a, z: plackett_luce(a, mask, z), (s, log_z))
    # and against the definition, position by position
    loss = plackett_luce(s, mask, log_z)
    for b in range(5):
        ranked = [s[b, k] for k in range(7) if mask[b, k]]
        ref = sum(torch.logaddexp(torch.logsumexp(torch.stack(ranked[k:]), 0), log_z[b])
                  - ranked[k] for k in range(len(ranked))) if ranked else 0.0
        assert float(loss[b]) == pytest.approx(float(ref), abs=1e-12)
