"""Rank importance of an item in a teacher's top-M list (HetComp, WWW 2023, section 1 of the spec).

The importance of the item at 0-based rank r is ``exp(-r / T)``. The ensemble sums these weights
over teachers; to make that sum exact whatever the summation order (and so make ties exact and the
tie-break by item id reproducible on every device), it is done in fixed point: each weight is
rounded to a multiple of ``2 ** -FIXED_POINT_BITS`` and stored as an int64 count of those units,
and integer addition is associative.
"""

import torch

#: Fixed-point resolution of the ensemble weights: one unit is 2**-40 (about 9.1e-13).
FIXED_POINT_BITS = 40


def rank_importance(m, temperature=10.0, device=None):
    """Importance of each rank of a top-m list.

    Parameters
    ----------
    m : int
        Length of the list.
    temperature : float
        T in ``exp(-r / T)``.
    device : torch.device or str, optional
        Where the result lives.

    Returns
    -------
    torch.Tensor
        (m,) float64, ``w[r] = exp(-r / T)`` for the 0-based rank r.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    r = torch.arange(m, dtype=torch.float64, device=device)
    return torch.exp(-r / temperature)


def fixed_point_importance(m, temperature=10.0, device=None):
    """Rank importance in fixed point, as int64 counts of ``2 ** -FIXED_POINT_BITS``.

    Every weight is at least one unit, so an item present in a list always has a positive score
    even where ``exp(-r / T)`` underflows the grid (ranks beyond about 27 T); such deep ranks then
    tie with each other and the item-id tie-break orders them.

    Parameters
    ----------
    m : int
        Length of the list.
    temperature : float
        T in ``exp(-r / T)``.
    device : torch.device or str, optional
        Where the result lives.

    Returns
    -------
    torch.Tensor
        (m,) int64.
    """
    w = rank_importance(m, temperature, device)
    # Scaling by a power of two is exact in float64, so only the final rounding is lossy.
    return torch.round(w * float(2**FIXED_POINT_BITS)).long().clamp_min(1)
