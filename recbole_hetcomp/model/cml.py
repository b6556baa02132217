r"""
CML
################################################
Reference:
    Cheng-Kang Hsieh et al. "Collaborative Metric Learning." in WWW 2017.

Users and items are points in one Euclidean space; a user's preference for an item is the
negative squared distance between them. Training pulls each user towards the items they
interacted with and pushes sampled negatives at least ``margin`` further away (a hinge on
triplets), with every embedding kept inside a ball of radius ``clip_norm``.

Differences from the paper, kept small on purpose:

* one uniformly sampled negative per positive (RecBole's pairwise sampler) and the plain hinge,
  instead of WARP's rank-weighted hinge over U sampled negatives;
* Adam instead of AdaGrad (RecBole's default learner).
"""

import torch
import torch.nn as nn
from torch.nn.init import normal_

from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType


class CML(GeneralRecommender):
    r"""Collaborative metric learning: score(u, i) = -||p_u - q_i||^2.

    The unit-ball constraint is enforced by projection (row-wise renormalisation) rather than by
    a penalty. RecBole's trainer gives the model no hook after ``optimizer.step()``, so the
    projection runs, under ``torch.no_grad()``, at the start of every ``calculate_loss`` (it then
    projects the result of the previous step before the next loss is computed) and at the start
    of ``predict`` / ``full_sort_predict`` (so the scores of a model fresh from its last step are
    the scores of the projected embeddings). Between a step and the next call the stored
    embeddings may lie slightly outside the ball; :meth:`clip_embeddings` projects them at once.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super(CML, self).__init__(config, dataset)

        self.embedding_size = config["embedding_size"]
        self.margin = config["margin"]
        self.clip_norm = config["clip_norm"]
        self.cov_reg_weight = config["cov_reg_weight"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)

        # As in the paper: N(0, 1/d) puts a random embedding at norm about 1, on the ball's edge
        # rather than in a clump at the origin where all distances (hence all hinges) are equal.
        std = self.embedding_size ** -0.5
        normal_(self.user_embedding.weight, mean=0.0, std=std)
        normal_(self.item_embedding.weight, mean=0.0, std=std)
        self.clip_embeddings()

    @torch.no_grad()
    def clip_embeddings(self):
        r"""Project every user and item embedding into the ball of radius ``clip_norm``."""
        for table in (self.user_embedding.weight, self.item_embedding.weight):
            table.renorm_(p=2, dim=0, maxnorm=self.clip_norm)

    @staticmethod
    def _squared_distance(a, b):
        return (a - b).pow(2).sum(dim=-1)

    def _covariance_loss(self, embeddings):
        r"""Decorrelation penalty of the paper: (||C||_F - ||diag(C)||_2^2) / N.

        ``embeddings`` is (N, d); C is the (d, d) covariance of its rows.
        """
        n = embeddings.shape[0]
        centred = embeddings - embeddings.mean(dim=0, keepdim=True)
        cov = centred.t() @ centred / n
        return (torch.linalg.norm(cov) - cov.diagonal().pow(2).sum()) / n

    def forward(self, user, item):
        return -self._squared_distance(
            self.user_embedding(user), self.item_embedding(item)
        )

    def calculate_loss(self, interaction):
        self.clip_embeddings()

        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]

        user_e = self.user_embedding(user)
        pos_e = self.item_embedding(pos_item)
        neg_e = self.item_embedding(neg_item)

        pos_d = self._squared_distance(user_e, pos_e)
        neg_d = self._squared_distance(user_e, neg_e)
        loss = torch.relu(self.margin + pos_d - neg_d).mean()

        if self.cov_reg_weight > 0:
            loss = loss + self.cov_reg_weight * self._covariance_loss(
                torch.cat([user_e, pos_e, neg_e], dim=0)
            )
        return loss

    def predict(self, interaction):
        self.clip_embeddings()
        return self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        self.clip_embeddings()
        user_e = self.user_embedding(interaction[self.USER_ID])  # (B, d)
        item_e = self.item_embedding.weight  # (I, d)
        # ||p - q||^2 = ||p||^2 - 2 p.q + ||q||^2: one (B, d) x (d, I) product, so the only
        # large tensor is the (B, I) result itself, never a (B, I, d) difference tensor.
        distance = (
            user_e.pow(2).sum(dim=1, keepdim=True)
            - 2.0 * user_e @ item_e.t()
            + item_e.pow(2).sum(dim=1).unsqueeze(0)
        )  # (B, I)
        return (-distance).view(-1)
