"""The teachers' ensemble as a RecBole model, so RecBole's evaluator scores it like any model.

Its ranking for a user is the ensemble of the converged teachers' recorded top-M lists (the
same importance rule as the distillation targets, with the run's teacher weights); items
outside the ensemble list score -1e9.
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hetcomp.knowledge import ensemble_top


class EnsembleRanker(GeneralRecommender):
    """Scores read off precomputed ensemble lists (no training)."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset, rankings, k, temperature=10.0, batch_size=1024,
                 weights=None):
        super().__init__(config, dataset)
        # (X, U, M) last snapshot of every teacher -> (U, k) ensemble lists
        last = rankings[:, -1].long()
        lists = []
        for start in range(0, last.shape[1], batch_size):
            items, mask = ensemble_top(last[:, start:start + batch_size].transpose(0, 1), k,
                                       temperature, weights)
            lists.append(torch.where(mask, items, torch.zeros_like(items)))
        self.register_buffer("lists", torch.cat(lists))
        # RecBole's Trainer builds an optimizer: give it one (empty) parameter
        self.unused = nn.Parameter(torch.zeros(0))

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        lists = self.lists[users]  # (B, k), best first
        scores = torch.full((len(users), self.n_items), -1e9, device=lists.device)
        # descending scores by list position; padding slots point at item 0 (masked anyway)
        rank_score = torch.arange(lists.shape[1], 0, -1, device=lists.device, dtype=torch.float)
        scores.scatter_(1, lists, rank_score.expand_as(lists))
        return scores.view(-1)

    def calculate_loss(self, interaction):
        raise NotImplementedError("the ensemble is not trained")

    def predict(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        hit = self.lists[users] == items.unsqueeze(1)
        position = hit.float().argmax(dim=1)
        return torch.where(hit.any(dim=1), self.lists.shape[1] - position.float(),
                           torch.full_like(position, -1e9, dtype=torch.float))
