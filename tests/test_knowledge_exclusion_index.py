"""The index form of the exclusion (the trainer's fast path) equals the dense-mask form."""

import pytest
import torch

from recbole_hetcomp.knowledge import exclusion_mask, overall_loss, rank_loss


@pytest.mark.parametrize("loss", [overall_loss, rank_loss])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_and_mask_agree(loss, seed):
    gen = torch.Generator().manual_seed(seed)
    b, n_items, e, k, l = 6, 40, 8, 12, 4
    scale = 1e4 if seed == 2 else 3.0
    scores = (torch.randn(b, n_items, generator=gen, dtype=torch.float64) * scale)
    history = torch.randint(1, n_items, (b, e), generator=gen)
    history[0, 3:] = 0          # a user with few training items
    history[1] = 0              # a user with none
    # targets: distinct non-training items, some rows shorter (mask False at the end)
    targets = torch.zeros(b, k, dtype=torch.long)
    target_mask = torch.zeros(b, k, dtype=torch.bool)
    for u in range(b):
        pool = [i for i in torch.randperm(n_items - 1, generator=gen).add(1).tolist()
                if i not in history[u].tolist()]
        n = k if u % 3 else k // 2
        targets[u, :n] = torch.tensor(pool[:n])
        target_mask[u, :n] = True
    observed = history[:, :l].clone()
    observed_mask = observed > 0
    results = []
    for exclude in (exclusion_mask(history, n_items), history):
        x = scores.clone().requires_grad_(True)
        value = loss(x, exclude, targets, target_mask, observed, observed_mask)
        value.sum().backward()
        results.append((value.detach(), x.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-9, atol=1e-9)
    assert torch.isfinite(results[1][0]).all() and torch.isfinite(results[1][1]).all()
