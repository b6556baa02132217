"""Teacher weights of the ensemble, fitted on validation lists (no teacher is re-scored).

A uniform sum of rank importances (the paper's ensemble) lets weak teachers drag the target
down: on CiteULike the six-teacher ensemble was weaker than LightGCN alone. Here each teacher x
gets a non-negative integer weight n_x and the ensemble score becomes
``sum_x n_x * exp(-r_x(u, i) / T)`` (``ensemble_top(..., weights=n)``); the weights reported to
the user are n_x / sum(n).

The weights are chosen by greedy forward selection with replacement (Caruana et al., "Ensemble
selection from libraries of models", ICML 2004): start from nothing, add one unit of weight at a
time to the teacher whose addition gives the best validation metric, keep the best prefix of
that path. The first step picks the best single teacher, so the chosen ensemble is never worse
than it on validation; the uniform ensemble is also a candidate, so it is never worse than that
either. Everything is computed from the recorded converged top-M lists and the validation items:
integer weights keep the ensemble's fixed-point sums exact, hence deterministic on every device.
"""

import math

import torch

from recbole_hetcomp.knowledge.ensemble import ensemble_top

#: Metrics this module computes from a top-k list, with RecBole's definitions.
LIST_METRICS = ("recall", "ndcg", "hit", "precision", "mrr")


def list_metric(lists, positives, metric, k):
    """Per-user ranking metric of top-k lists against held-out items, as RecBole computes it.

    Parameters
    ----------
    lists : torch.Tensor
        (U, n >= k) item ids, best first, 0 = no item.
    positives : torch.Tensor
        (U, P) held-out item ids of each user, 0-padded.
    metric : str
        One of ``LIST_METRICS`` (case-insensitive).
    k : int
        The cut-off.

    Returns
    -------
    values : torch.Tensor
        (U,) float64, the metric of each user (0 for a user without held-out items).
    has_positives : torch.Tensor
        (U,) bool, users that count in the mean (RecBole evaluates only users with held-out items).
    """
    metric = metric.lower()
    if metric not in LIST_METRICS:
        raise ValueError(f"metric must be one of {LIST_METRICS}, got {metric!r}")
    top = lists[:, :k]                                               # (U, k)
    hit = ((top.unsqueeze(2) == positives.unsqueeze(1)) & (positives > 0).unsqueeze(1)).any(2)
    hit &= top > 0                                                    # (U, k) bool
    n_pos = (positives > 0).sum(1)                                    # (U,)
    has_positives = n_pos > 0
    hits = hit.double()
    denominator = n_pos.clamp_min(1).double()
    if metric == "recall":
        values = hits.sum(1) / denominator
    elif metric == "precision":
        values = hits.sum(1) / k
    elif metric == "hit":
        values = hits.amax(1)
    elif metric == "mrr":
        first = torch.where(hit.any(1), hit.double().argmax(1), torch.full_like(n_pos, -1))
        values = torch.where(first >= 0, 1.0 / (first + 1).double(), torch.zeros_like(hits[:, 0]))
    else:  # ndcg: binary gains, ideal DCG over min(#positives, k) positions
        discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64, device=lists.device) + 2)
        dcg = (hits * discount).sum(1)
        ideal = discount.cumsum(0)[(n_pos.clamp(1, k) - 1)]
        values = dcg / ideal
    return values.masked_fill(~has_positives, 0.0), has_positives


def weighted_ensemble_metric(lists, weights, positives, metric, k, temperature=10.0,
                             batch_size=1024):
    """Mean validation metric of the ensemble of ``lists`` with integer ``weights``.

    Parameters
    ----------
    lists : torch.Tensor
        (U, X, M) every teacher's top-M list per user, 0-padded.
    weights : torch.Tensor
        (X,) int64, non-negative, not all zero.
    positives : torch.Tensor
        (U, P) held-out items per user, 0-padded.
    metric, k : see ``list_metric``.
    temperature : float
    batch_size : int
        Users per batch.

    Returns
    -------
    float
        The mean over users with held-out items.
    """
    total, count = 0.0, 0
    for start in range(0, lists.shape[0], batch_size):
        top, _ = ensemble_top(lists[start:start + batch_size], k, temperature, weights=weights)
        values, valid = list_metric(top, positives[start:start + batch_size], metric, k)
        total += float(values.sum())
        count += int(valid.sum())
    return total / max(count, 1)


def select_weights(lists, positives, metric, k, steps=20, temperature=10.0, batch_size=1024):
    """Teacher weights that maximise the ensemble's validation metric (greedy selection).

    Parameters
    ----------
    lists : torch.Tensor
        (U, X, M) every converged teacher's top-M list of each user's unobserved items.
    positives : torch.Tensor
        (U, P) validation items per user, 0-padded.
    metric : str
        One of ``LIST_METRICS``.
    k : int
        Cut-off of the metric (<= M).
    steps : int
        Units of weight handed out along the path (the weights' resolution is 1 / steps).
    temperature : float
    batch_size : int

    Returns
    -------
    weights : torch.Tensor
        (X,) int64 chosen integer weights (the uniform ensemble is all ones).
    info : dict
        ``uniform`` (the uniform ensemble's metric), ``chosen`` (the chosen weights' metric),
        ``single`` (each teacher alone), ``path`` (metric after each step) and ``source``
        ('selection' or 'uniform').
    """
    x = lists.shape[1]
    device = lists.device

    def score(w):
        return weighted_ensemble_metric(lists, w, positives, metric, k, temperature, batch_size)

    eye = torch.eye(x, dtype=torch.long, device=device)
    single = [score(eye[t]) for t in range(x)]
    counts = torch.zeros(x, dtype=torch.long, device=device)
    path, best, best_counts = [], -math.inf, None
    for step in range(steps):
        # The first step's candidates are the single teachers, already scored.
        candidates = single if step == 0 else [score(counts + eye[t]) for t in range(x)]
        pick = max(range(x), key=lambda t: (candidates[t], -t))  # ties: the lower teacher index
        counts = counts + eye[pick]
        path.append(candidates[pick])
        if candidates[pick] > best:
            best, best_counts = candidates[pick], counts.clone()
    uniform = score(torch.ones(x, dtype=torch.long, device=device))
    if uniform >= best:  # the paper's ensemble, unless the selection beats it
        chosen, weights, source = uniform, torch.ones(x, dtype=torch.long, device=device), "uniform"
    else:
        chosen, weights, source = best, best_counts // _gcd(best_counts), "selection"
    return weights, {"uniform": uniform, "chosen": chosen, "single": single, "path": path,
                     "source": source}


def integer_weights(weights, resolution=256):
    """User-given non-negative weights as integers on a grid of 1 / ``resolution`` of their sum.

    Integer weights keep the ensemble's fixed-point sums exact (hence ties and the tie-break by
    item id reproducible); a list of integers is kept as it is.
    """
    values = [float(w) for w in weights]
    if any(w < 0 or math.isnan(w) for w in values) or not sum(values) > 0:
        raise ValueError(f"ensemble weights must be non-negative and not all 0, got {weights}")
    if all(float(w).is_integer() for w in values):
        counts = torch.tensor([int(w) for w in values], dtype=torch.long)
    else:
        total = sum(values)
        counts = torch.tensor([round(w / total * resolution) for w in values], dtype=torch.long)
        if int(counts.sum()) == 0:
            raise ValueError(f"ensemble weights {weights} round to 0 on a 1/{resolution} grid")
    return counts // _gcd(counts)


def _gcd(counts):
    g = 0
    for c in counts.tolist():
        g = math.gcd(g, int(c))
    return max(g, 1)
