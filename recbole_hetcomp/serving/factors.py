"""A trained model as a factorised scorer: score(u, i) = <P_u, Q_i> + b_i + c_u.

Serving needs no RecBole dataset and no model code when the scores are an inner product of
precomputed vectors: the package stores P (users x d), Q (items x d) and the two biases, and
the ``Recommender`` only multiplies them. Each model that can be written this way exactly (its
``full_sort_predict`` in evaluation mode) has a function here; ``serving_factors`` checks the
result against the model's own scores before anything is written, so a model whose arithmetic
differs from what its class says (a subclass, a changed forward) is caught, not shipped wrong.
"""

import torch

from recbole_hetcomp.errors import HetCompError


def _inner_product(model):
    # HetCompStudent, BPR: user_embedding . item_embedding
    return model.user_embedding.weight, model.item_embedding.weight, None, None


def _lightgcn(model):
    # The propagated embeddings (RecBole caches them as restore_user_e / restore_item_e).
    users, items = model.forward()
    return users, items, None, None


def _cml(model):
    # -||p - q||^2 = <2p, q> - ||q||^2 - ||p||^2 (after the max-norm clip full_sort_predict does)
    model.clip_embeddings()
    users, items = model.user_embedding.weight, model.item_embedding.weight
    return 2.0 * users, items, -items.pow(2).sum(1), -users.pow(2).sum(1)


#: Model class name -> function giving (P, Q, item_bias or None, user_bias or None).
FACTORISED = {"HetCompStudent": _inner_product, "BPR": _inner_product,
              "LightGCN": _lightgcn, "CML": _cml}


def can_factorise(model):
    return type(model).__name__ in FACTORISED


@torch.no_grad()
def serving_factors(model, check_users=256):
    """(P, Q, item_bias, user_bias) as float32 CPU tensors (biases may be None).

    Raises HetCompError when the model has no factorised form or the factors do not give the
    model's own ``full_sort_predict`` scores for the first ``check_users`` users.
    """
    name = type(model).__name__
    if name not in FACTORISED:
        raise HetCompError(f"{name} has no factorised serving form (supported: "
                           f"{', '.join(sorted(FACTORISED))})")
    was_training = model.training
    model.eval()
    try:
        parts = [None if t is None else t.detach().float().cpu().contiguous()
                 for t in FACTORISED[name](model)]
        users = torch.arange(min(check_users, model.n_users), device=_device(model))
        from recbole.data.interaction import Interaction

        expected = model.full_sort_predict(Interaction({model.USER_ID: users}))
        expected = expected.view(len(users), -1).float().cpu()
    finally:
        model.train(was_training)
    got = factor_scores(parts, users.cpu())
    scale = expected.abs().max().clamp_min(1.0)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(scale)):
        raise HetCompError(f"{name}'s factorised form does not reproduce its full_sort_predict "
                           f"scores (max difference {float((got - expected).abs().max()):.3g})")
    return tuple(parts)


def factor_scores(parts, users, items_t=None):
    """(B, I) scores of ``users`` (internal ids) from (P, Q, item_bias, user_bias).

    ``items_t``: Q.T made contiguous once by a caller that scores often (faster for tiny d)."""
    p, q, item_bias, user_bias = parts
    scores = p[users] @ (q.T if items_t is None else items_t)
    if item_bias is not None:
        scores += item_bias
    if user_bias is not None:
        scores += user_bias[users].unsqueeze(1)
    return scores


def _device(model):
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
