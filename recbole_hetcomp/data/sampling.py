"""Negative sampling for RecBole's training loader, vectorised (``vectorised_loader: True``).

RecBole 1.2.1's ``Sampler.sample_by_key_ids`` draws candidates with numpy but checks each one
against the user's set of used items in a Python loop: on ml-1m that loop is most of a BPR epoch
(see results/profile_epoch_ml-1m.md). This sampler draws from the same distribution without the
loop:

- uniform: an item drawn uniformly from [1, item_num), redrawn while it is one of the user's used
  items, i.e. uniform over the user's unused items (RecBole's rejection rule, batched);
- popularity: P(item) proportional to (count / total) ** alpha over the items that occur in the
  sampler's datasets (RecBole's alias table over the same counts), redrawn the same way.

"Used" is exactly RecBole's: the sets of the phase the sampler was made for (the training items
for the training loader), read once from RecBole's own sampler into a users x items bit matrix
(ml-1m: 2.8 MB; one lookup per draw), or, past ``BITSET_BYTES``, a sorted array of
``user * item_num + item`` keys (one ``searchsorted`` per draw: slower, as small as the data).
Draws use numpy's global generator, as RecBole's do, so ``init_seed`` makes them reproducible (the
draws differ from RecBole's: same distribution, other stream).

``VectorisedTrainDataLoader`` also replaces the batching around it: RecBole's loader is a torch
DataLoader over ``list(range(n))``, so every epoch yields n Python ints one by one and collates
each batch from a list; this one slices a shuffled index tensor. Batches are the same size and
are drawn the same way (a uniformly random permutation per epoch, from the loader's seeded
generator, cut into ``step``-sized slices); negatives and transforms are RecBole's own calls.
"""

import math

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

#: Largest users x items bit matrix kept for membership tests (256 MB: Gowalla's 30k x 41k is
#: 153 MB); larger catalogues use the sorted keys.
BITSET_BYTES = 1 << 28


class VectorisedSampler:
    """A drop-in for RecBole's train-phase ``Sampler``: same distribution, batched rejection.

    Wraps RecBole's sampler (its phase, used sets and datasets); everything but sampling is
    delegated to it, so the loader's ``update_config`` / ``set_distribution`` still reach it.
    """

    def __init__(self, sampler):
        self._inner = sampler
        self.item_num = sampler.item_num
        used = sampler.used_ids  # array of python sets, one per user (RecBole's layout)
        users = [np.full(len(items), user, dtype=np.int64)
                 for user, items in enumerate(used) if items]
        items = [np.fromiter(items, dtype=np.int64, count=len(items)) for items in used if items]
        users = np.concatenate(users) if users else np.zeros(0, np.int64)
        items = np.concatenate(items) if items else np.zeros(0, np.int64)
        self._bits = self._used_keys = None
        width = (self.item_num + 7) // 8
        if len(used) * width <= BITSET_BYTES:
            self._bits = np.zeros((len(used), width), dtype=np.uint8)
            np.bitwise_or.at(self._bits, (users, items >> 3),
                             np.left_shift(1, items & 7).astype(np.uint8))
        else:
            self._used_keys = np.unique(users * self.item_num + items)
        self._popularity = None  # (distribution alpha, cumulative weights), built on first use

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _draw(self, n):
        if self._inner.distribution == "uniform":
            return np.random.randint(1, self.item_num, n)
        if self._inner.distribution == "popularity":
            alpha = self._inner.alpha
            if self._popularity is None or self._popularity[0] != alpha:
                counts = np.zeros(self.item_num, dtype=np.float64)
                for dataset in self._inner.datasets:
                    counts += np.bincount(dataset.inter_feat[self._inner.iid_field].numpy(),
                                          minlength=self.item_num)[:self.item_num]
                weights = np.where(counts > 0, (counts / counts.sum()) ** alpha, 0.0)
                self._popularity = (alpha, np.cumsum(weights))
            cumulative = self._popularity[1]
            draw = np.random.random(n) * cumulative[-1]
            # side="right": an item of weight 0 (never occurring) has an empty interval.
            return np.minimum(np.searchsorted(cumulative, draw, side="right"), self.item_num - 1)
        raise NotImplementedError(f"The sampling distribution [{self._inner.distribution}] is "
                                  "not implemented.")

    def _is_used(self, keys, values):
        if self._bits is not None:
            return ((self._bits[keys, values >> 3] >> (values & 7)) & 1).astype(bool)
        wanted = keys * self.item_num + values
        if not len(self._used_keys):
            return np.zeros(len(wanted), dtype=bool)
        pos = np.minimum(np.searchsorted(self._used_keys, wanted), len(self._used_keys) - 1)
        return self._used_keys[pos] == wanted

    def sample_by_key_ids(self, key_ids, num):
        """RecBole's layout: value ``j * len(key_ids) + i`` is the j-th draw for ``key_ids[i]``."""
        key_ids = np.tile(np.asarray(key_ids, dtype=np.int64), num)
        values = self._draw(len(key_ids))
        pending = np.flatnonzero(self._is_used(key_ids, values))
        while len(pending):
            values[pending] = self._draw(len(pending))
            pending = pending[self._is_used(key_ids[pending], values[pending])]
        return torch.tensor(values, dtype=torch.long)

    def sample_by_user_ids(self, user_ids, item_ids, num):
        user_ids = np.asarray(user_ids)
        if len(user_ids) and (user_ids.min() < 0 or user_ids.max() >= self._inner.user_num):
            bad = user_ids[(user_ids < 0) | (user_ids >= self._inner.user_num)][0]
            raise ValueError(f"user_id [{bad}] not exist.")
        return self.sample_by_key_ids(user_ids, num)


class VectorisedTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` with its batching vectorised (see the module docstring).

    Only for a single process without loader workers (RecBole's distributed and multi-worker
    paths stay RecBole's: ``make_loaders`` checks)."""

    def __iter__(self):
        n = self.sample_size
        order = (torch.randperm(n, generator=self.generator) if self.shuffle
                 else torch.arange(n))
        columns = self._dataset.inter_feat.interaction
        for start in range(0, n, self.step):
            index = order[start:start + self.step]
            # Dataset[index] as RecBole computes it (the rows, then joined with user and item
            # features), gathering each column with the index tensor: RecBole's Interaction
            # turns the index into a Python list first, most of its batch's cost.
            data = self._dataset.join(Interaction({k: v[index] for k, v in columns.items()}))
            yield self._neg_sampling(self.transform(self._dataset, data))

    def __len__(self):
        return math.ceil(self.sample_size / self.step)
