"""Every knowledge function runs on the device of its inputs and agrees with the CPU."""

import contextlib

import pytest
import torch

from sim_accelerator import SIM_DEVICE, simulated_accelerator
from recbole_hetcomp.knowledge import (
    KnowledgeState,
    ensemble_targets,
    exclusion_mask,
    knowledge_step,
    masked_topk,
    observed_lists,
    overall_loss,
    rank_loss,
)

DEVICES = [
    "cpu",
    "sim",  # the simulated accelerator (tests/sim_accelerator.py): CUDA's placement rules
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                 reason="CUDA is not available")),
]


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, c, u, m, n_items = 3, 4, 40, 12, 30
    # Items drawn from a small pool per list: overlaps and exact ties are frequent.
    rankings = torch.stack([
        torch.randperm(n_items - 1, generator=gen)[:m] + 1 for _ in range(x * c * u)
    ]).reshape(x, c, u, m).to(torch.int32)
    rankings[..., -3:] = 0
    observed = torch.stack([
        torch.randperm(n_items - 1, generator=gen)[:5] + 1 for _ in range(x * u)
    ]).reshape(x, u, 5)
    observed[:, ::3, 2:] = 0
    choice = torch.randint(0, c, (u, x), generator=gen)
    scores = torch.randn(u, n_items, generator=gen)
    return rankings, observed, choice, scores


@pytest.mark.parametrize("device", DEVICES)
def test_knowledge_pipeline_on_device(device):
    harness = simulated_accelerator() if device == "sim" else contextlib.nullcontext()
    with harness:
        _knowledge_pipeline_agrees_with_the_cpu(SIM_DEVICE if device == "sim" else device)


def _knowledge_pipeline_agrees_with_the_cpu(device):
    rankings, observed, choice, scores = _inputs()
    c = rankings.shape[1]
    results = {}
    for where in ("cpu", device):
        r, o, ch, s = (t.to(where) for t in (rankings, observed, choice, scores))
        targets, t_mask = ensemble_targets(r, ch, k=20, batch_size=16)
        p_items, p_mask = observed_lists(o, l=4, batch_size=16)
        exclude = exclusion_mask(o[0], s.shape[1])
        top = masked_topk(s, exclude, 8)
        state = KnowledgeState.new(*ch.shape, device=where)
        for call in range(1, 4):
            knowledge_step(state, top.roll(call, dims=1), r, epoch=10 * call, batch_size=16, n=8)
        assert targets.device.type == state.choice.device.type == torch.device(where).type
        leaf = s.clone().requires_grad_(True)
        loss = (overall_loss(leaf, exclude, targets, t_mask, p_items, p_mask).sum()
                + rank_loss(leaf, exclude, targets, t_mask, p_items, p_mask, top=(10, 5)).sum())
        loss.backward()
        results[where] = [targets, t_mask, p_items, p_mask, top, state.choice, state.d,
                          loss.detach(), leaf.grad]
    for cpu_value, dev_value in zip(results["cpu"], results[device]):
        dev_value = dev_value.cpu()
        if cpu_value.is_floating_point():
            assert torch.allclose(cpu_value, dev_value, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(cpu_value, dev_value)
    assert bool((results[device][5] <= c - 1).all())
