"""HetCompStudent: the small model HetComp distils the teachers' ensemble into.

Kang et al., "Distillation from Heterogeneous Models for Top-K Recommendation", WWW 2023.
Matrix factorisation with a small embedding, as in the paper; the distillation losses live in
``HetCompTrainer`` (they need the ensemble knowledge), ``calculate_loss`` is the optional BPR
term on the same batch (``cf_weight``).
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import BPRLoss
from recbole.utils import InputType


class _InnerProducts(torch.autograd.Function):
    """``users @ items.T`` with products laid out for tiny embedding sizes.

    The distillation loss spends most of its time in these three products over the whole
    catalogue, and with d = 6 their speed on CPU depends on the layout alone (one thread,
    83 users x 25,182 items): the scores from a contiguous (d, I) copy of the items take 0.9 ms
    instead of 2.0 ms; the user gradient as ``(items_t @ grad.T).T`` 0.7 ms instead of 2.8 ms
    for ``grad @ items``; the item gradient as ``(users.T @ grad).T`` 0.9 ms instead of 6.6 ms
    for autograd's ``grad.T @ users``. The copy costs 0.3 ms.
    """

    @staticmethod
    def forward(ctx, users, items):
        items_t = items.T.contiguous()                      # (d, I)
        ctx.save_for_backward(users, items_t)
        return users @ items_t

    @staticmethod
    def backward(ctx, grad):
        users, items_t = ctx.saved_tensors
        return (items_t @ grad.T).T, (users.T @ grad).T


class HetCompStudent(GeneralRecommender):
    """Inner-product matrix factorisation trained from ensemble knowledge."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.bpr_loss = BPRLoss()
        self.apply(xavier_normal_initialization)

    def user_scores(self, users):
        """(B, I) scores of ``users`` for every item."""
        return _InnerProducts.apply(self.user_embedding(users), self.item_embedding.weight)

    def calculate_loss(self, interaction):
        user = self.user_embedding(interaction[self.USER_ID])
        pos = self.item_embedding(interaction[self.ITEM_ID])
        neg = self.item_embedding(interaction[self.NEG_ITEM_ID])
        return self.bpr_loss((user * pos).sum(-1), (user * neg).sum(-1))

    def predict(self, interaction):
        user = self.user_embedding(interaction[self.USER_ID])
        item = self.item_embedding(interaction[self.ITEM_ID])
        return (user * item).sum(-1)

    def full_sort_predict(self, interaction):
        return self.user_scores(interaction[self.USER_ID]).view(-1)
