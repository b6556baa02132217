"""Ensemble knowledge, easy-to-hard construction and losses of HetComp: pure tensor code.

No I/O and no RecBole objects: tensors in, tensors out, on the device of the inputs, in user
batches. Item id 0 is the padding item everywhere ("no item").
"""

from recbole_hetcomp.knowledge.construction import (
    KnowledgeState,
    discounted_gain,
    discrepancy,
    exclusion_mask,
    knowledge_step,
    masked_topk,
    mean_snapshot,
    share_at_last,
    should_switch,
    threshold,
)
from recbole_hetcomp.knowledge.ensemble import ensemble_targets, ensemble_top, observed_lists
from recbole_hetcomp.knowledge.importance import (
    FIXED_POINT_BITS,
    fixed_point_importance,
    rank_importance,
)
from recbole_hetcomp.knowledge.topk import topk_by_id
from recbole_hetcomp.knowledge.weights import (
    LIST_METRICS,
    integer_weights,
    list_metric,
    select_weights,
    weighted_ensemble_metric,
)
from recbole_hetcomp.knowledge.losses import (
    masked_logsumexp,
    overall_loss,
    plackett_luce,
    rank_loss,
    remaining_items,
)

__all__ = [
    "FIXED_POINT_BITS",
    "LIST_METRICS",
    "integer_weights",
    "list_metric",
    "select_weights",
    "weighted_ensemble_metric",
    "KnowledgeState",
    "discounted_gain",
    "discrepancy",
    "ensemble_targets",
    "ensemble_top",
    "exclusion_mask",
    "fixed_point_importance",
    "knowledge_step",
    "masked_logsumexp",
    "masked_topk",
    "mean_snapshot",
    "observed_lists",
    "overall_loss",
    "plackett_luce",
    "rank_importance",
    "rank_loss",
    "remaining_items",
    "share_at_last",
    "should_switch",
    "threshold",
    "topk_by_id",
]
