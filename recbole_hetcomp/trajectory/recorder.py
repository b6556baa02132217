"""Record a teacher's top-M ranking of every user's non-training items at each evaluation.

Only top-M item lists are kept (``uint16`` when the catalogue allows, else ``int32``), never a
dense users x items matrix. Item 0 (RecBole's padding item) marks an empty slot, for users with
fewer than M candidate items.
"""

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_hetcomp.knowledge import exclusion_mask, masked_topk


def list_dtype(n_items):
    """Smallest integer dtype that holds every item id."""
    return np.uint16 if n_items <= np.iinfo(np.uint16).max + 1 else np.int32


def select_snapshots(scores, best_index, fractions):
    """Pick C = len(fractions) + 1 evaluations out of a trajectory.

    Snapshot c < C-1 is the first evaluation (not after the best one) whose validation score
    reaches ``fractions[c]`` of the best score; the last snapshot is the best evaluation. When
    early evaluations already exceed several fractions, snapshots repeat (the easy-to-hard
    sequence is then shorter), which keeps the rule monotone and simple to reason about.

    Parameters
    ----------
    scores : sequence of float
        Validation score of each evaluation, in training order.
    best_index : int
        Index of the best evaluation (the one whose weights are kept).
    fractions : sequence of float
        Ascending fractions in (0, 1].

    Returns
    -------
    list of int
        Indices into ``scores``, non-decreasing, ending with ``best_index``.
    """
    best = scores[best_index]
    chosen = []
    for fraction in fractions:
        pick = best_index
        if best > 0:
            for index in range(best_index + 1):
                if scores[index] >= fraction * best:
                    pick = index
                    break
        chosen.append(max(pick, chosen[-1]) if chosen else pick)
    return chosen + [best_index]


class TrajectoryRecorder:
    """Rank every user's items with a model, in user batches on the run's device.

    The training histories and the lists being built stay on that device; lists come back to
    the host once per pass, not once per batch. Scores may come back on another device than
    the run's (RecBole's EASE, SLIMElastic and ADMMSLIM score on the CPU): masks are built
    where the scores are.

    Parameters
    ----------
    model : recbole AbstractRecommender
        Anything with ``full_sort_predict``.
    train_dataset : recbole Dataset
        The training part of the split (its items are each user's observed items).
    top_m : int
        Length M of the recorded lists.
    batch_size : int
        Users per scoring batch.
    device : torch.device or str, optional
        Where users are sent and lists are built (the run's ``config['device']``); default:
        the device of the model's first parameter.
    """

    def __init__(self, model, train_dataset, top_m=100, batch_size=512, device=None):
        self.model = model
        self.device = torch.device(device) if device is not None else next(
            model.parameters()).device
        self.uid_field = train_dataset.uid_field
        self.n_users = train_dataset.user_num
        self.n_items = train_dataset.item_num
        self.top_m = min(top_m, self.n_items - 1)
        self.batch_size = batch_size
        self.dtype = list_dtype(self.n_items)
        history, _, lengths = train_dataset.history_item_matrix()
        self.history = history.to(self.device)  # (U, max_len) training item ids, 0-padded
        self.history_len = lengths
        self.epochs, self.scores, self.rankings = [], [], []

    def training_mask(self, users, device=None):
        """(B, I) bool on ``device`` (default: the run's): True for each user's training
        items and for padding item 0."""
        history = self.history[users.to(self.device)]
        return exclusion_mask(history.to(device or self.device), self.n_items)

    def scores_for(self, users):
        """(B, I) scores of ``users`` for every item (model in eval mode, no grad)."""
        interaction = Interaction({self.uid_field: users.to(self.device)})
        with torch.no_grad():
            return self.model.full_sort_predict(interaction).view(len(users), -1).float()

    def top_lists(self, scores, excluded):
        """(B, M) top-M item ids of ``scores`` outside ``excluded``; 0 where fewer exist."""
        return masked_topk(scores, excluded, self.top_m)

    def training_item_lists(self, users, scores):
        """(B, M) top-M training items of ``users`` under raw ``scores`` (B, I)."""
        # Masks live on the scores' device: some models (EASE, ADMMSLIM) score on the CPU.
        excluded = ~self.training_mask(users, scores.device)
        excluded[:, 0] = True
        return self.top_lists(scores, excluded)

    def rank_users_both(self, users):
        """Top-M non-training and training items of ``users``, from one scoring pass.

        Returns two ``(len(users), M)`` numpy arrays of ``self.dtype``.
        """
        was_training = self.model.training
        self.model.eval()
        unobserved = torch.zeros((len(users), self.top_m), dtype=torch.long, device=self.device)
        observed = torch.zeros_like(unobserved)
        for start in range(0, len(users), self.batch_size):
            batch = users[start:start + self.batch_size]
            scores = self.scores_for(batch)
            rows = slice(start, start + len(batch))
            unobserved[rows] = self.top_lists(
                scores, self.training_mask(batch, scores.device)).to(self.device)
            observed[rows] = self.training_item_lists(batch, scores).to(self.device)
        self.model.train(was_training)
        return self.to_numpy(unobserved), self.to_numpy(observed)

    def rank_users(self, users, observed=False):
        """Top-M lists for ``users``: their non-training items, or (``observed``) training items."""
        return self.rank_users_both(users)[1 if observed else 0]

    def to_numpy(self, lists):
        return lists.cpu().numpy().astype(self.dtype)

    def all_users(self):
        return torch.arange(1, self.n_users)  # user 0 is RecBole's padding user

    def rank_all(self, observed=False):
        """(U, M) lists for every user id (row 0, the padding user, stays empty)."""
        lists = np.zeros((self.n_users, self.top_m), dtype=self.dtype)
        lists[1:] = self.rank_users(self.all_users(), observed=observed)
        return lists

    def record(self, epoch, valid_score, lists):
        """Keep one evaluation's (U, M) lists."""
        self.epochs.append(int(epoch))
        self.scores.append(float(valid_score))
        self.rankings.append(lists)

    def snapshots(self, best_epoch, fractions):
        """(indices, (C, U, M) array) of the snapshots chosen by ``select_snapshots``."""
        if not self.rankings:
            raise RuntimeError("no evaluation was recorded")
        best_index = self.epochs.index(best_epoch) if best_epoch in self.epochs else (
            len(self.epochs) - 1)
        chosen = select_snapshots(self.scores, best_index, fractions)
        return chosen, np.stack([self.rankings[i] for i in chosen])
