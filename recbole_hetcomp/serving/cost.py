"""What a model costs to serve: parameter count and full-ranking time per 1,000 users."""

import time

import torch
from recbole.data.interaction import Interaction

from recbole_hetcomp.device import synchronize


def parameter_count(model):
    """Trainable and buffer-held numbers a served model needs (embeddings, weights, caches)."""
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    return int(params + buffers)


@torch.no_grad()
def inference_ms_per_1000_users(model, uid_field, n_users, batch_size=256, repeats=3):
    """Median wall time (ms) to score every item for 1,000 users and take their top-50.

    Users 1..min(1000, n_users-1) are scored in batches on the model's device; the time is
    scaled to 1,000 users when the dataset has fewer. Models that precompute all-item
    representations at evaluation time (LightGCN, ItemVAE) keep them, as a server would.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    users = torch.arange(1, min(1001, n_users), device=device)
    times = []
    for _ in range(repeats + 1):  # the first pass warms caches (and a GPU) and is dropped
        synchronize(device)
        start = time.perf_counter()
        for s in range(0, len(users), batch_size):
            batch = users[s:s + batch_size]
            scores = model.full_sort_predict(Interaction({uid_field: batch})).view(len(batch), -1)
            torch.topk(scores, min(50, scores.shape[1]), dim=1)
        synchronize(device)
        times.append(time.perf_counter() - start)
    model.train(was_training)
    times = sorted(times[1:])
    return 1000.0 * times[len(times) // 2] * 1000.0 / len(users)
