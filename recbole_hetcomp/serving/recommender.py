"""``Recommender``: top-k for users given by their own tokens, from a model package.

Loads in well under a second (JSON, ``.npy`` and an optional faiss index; no RecBole dataset,
no model code) and scores with the package's factorised form on CPU or GPU.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge.topk import topk_by_id
from recbole_hetcomp.serving import index as faiss_index
from recbole_hetcomp.serving.factors import factor_scores
from recbole_hetcomp.serving.package import (FACTOR_FILES, INDEX, PackageError, card_sizes,
                                             read_array, read_card, read_tokens, require_files)

#: The card's ``serving`` flag of each file in ``FACTOR_FILES``.
FACTOR_PARTS = ("factorised", "factorised", "item_bias", "user_bias")
#: What every served package holds besides its factors.
KNOWN_FILES = ["user_tokens.json", "item_tokens.json", "known_indptr.npy", "known_indices.npy"]

#: Scores held at once while ranking a batch (users x items), ~16 MB of float32.
SCORE_BUDGET = 1 << 22


class Recommendations(list):
    """One user's recommendations: ``(item token, score)`` pairs, best first.

    ``user`` is the token asked for; ``fallback`` is True when the user is unknown to the
    model and the items are the most popular ones (scores are then how many distinct
    training users interacted with each item).
    """

    def __init__(self, user, pairs, fallback):
        super().__init__(pairs)
        self.user, self.fallback = user, fallback

    def as_dict(self):
        return {"user": self.user, "fallback": self.fallback,
                "items": [{"item": t, "score": s} for t, s in self]}


@dataclass
class Batch:
    """Array form of a batch of recommendations (row b: user b of the request).

    ``items``: (B, k) item tokens (``""`` past a row's length); ``scores``: (B, k) float32
    (NaN past a row's length); ``lengths``: items per row (fewer than k only when a user has
    fewer unknown items left); ``fallback``: (B,) True for unknown users.
    """
    users: list
    items: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray
    fallback: np.ndarray


class Recommender:
    """A loaded model package. Use ``Recommender.load(path)``."""

    def __init__(self, path, card, user_tokens, item_tokens, indptr, indices, factors, index,
                 device):
        self.path, self.card, self.device = path, card, serving_device(device)
        self.user_tokens, self.item_tokens = user_tokens, item_tokens
        self._user_id = {t: i for i, t in enumerate(user_tokens) if i > 0}
        self._item_id = {t: i for i, t in enumerate(item_tokens) if i > 0}
        self._tokens = np.array(item_tokens, dtype=object)
        self.indptr, self.indices = indptr, indices
        self.factors = tuple(None if f is None else torch.from_numpy(f).to(self.device)
                             for f in factors)
        # (d, I) copy: with tiny d, users @ items_t is ~2x faster than users @ items.T on CPU
        # (the layout HetCompStudent's scorer uses too).
        self._items_t = self.factors[1].T.contiguous()
        self.index = index
        self.index_redone = 0  # users the index path handed to brute force (ties at its cut)
        popularity = np.bincount(indices, minlength=len(item_tokens)).astype(np.float32)
        popularity[0] = -1.0  # the padding item is never recommended
        # Most popular first, ties by item id: the fallback for users the model never saw.
        self._popular = np.argsort(-popularity, kind="stable")[:len(item_tokens) - 1]
        self._popularity = popularity

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path, device="cpu", use_index=True, verify=True):
        """Load the package at ``path`` (checked against its manifest unless ``verify=False``).

        ``device``: ``"cpu"`` or ``"cuda[:N]"``. ``use_index``: rank through the package's
        faiss index when it has one (needs faiss). Raises PackageError (a HetCompError) for a
        missing, corrupt or foreign package, HetCompError for a device torch cannot use here.
        """
        serving_device(device)  # before reading anything
        card = read_card(path, verify=verify)
        serving = card.get("serving") if isinstance(card.get("serving"), dict) else {}
        if not serving.get("factorised"):
            raise PackageError(
                f"'{path}' holds a {card.get('model')}, which has no factorised serving form; "
                "Recommender serves HetCompStudent, BPR, LightGCN and CML packages: for this "
                "one use recbole_hetcomp.serving.load_data_and_model(path)")
        files = card["files"]
        # The card says which biases the scorer has: a bias file gone from the card's list
        # would otherwise be skipped silently and every score would be wrong.
        wanted = [name for name, part in zip(FACTOR_FILES, FACTOR_PARTS) if serving.get(part)]
        require_files(path, card, KNOWN_FILES + wanted)
        n_users, n_items = card_sizes(path, card)
        user_tokens = read_tokens(path, "user_tokens.json", n_users)
        item_tokens = read_tokens(path, "item_tokens.json", n_items)
        indptr = read_array(path, "known_indptr.npy", "i", 1)
        indices = read_array(path, "known_indices.npy", "i", 1)
        if (len(indptr) != n_users + 1 or indptr[0] != 0 or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 0)
                or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))):
            raise PackageError(f"'{path}': its known-items arrays are inconsistent")
        factors = []
        for name, rows in zip(FACTOR_FILES, (n_users, n_items, n_items, n_users)):
            if name not in wanted:
                factors.append(None)
                continue
            array = read_array(path, name, "f", 1 if "bias" in name else 2)
            if len(array) != rows:
                raise PackageError(f"'{path}': {name} has {len(array)} rows, expected {rows}")
            factors.append(np.ascontiguousarray(array, dtype=np.float32))
        if factors[0].shape[1] != factors[1].shape[1]:
            raise PackageError(f"'{path}': user and item factors differ in width")
        index = None
        if use_index and INDEX in files:
            index = faiss_index.read_index(os.path.join(path, INDEX), n_items,
                                           factors[1].shape[1])
        return cls(path, card, user_tokens, item_tokens, indptr.astype(np.int64),
                   indices.astype(np.int64), factors, index, device)

    # --- sizes and ids ---------------------------------------------------------------------
    @property
    def n_users(self):
        """Users the model knows (the padding id 0 aside)."""
        return len(self.user_tokens) - 1

    @property
    def n_items(self):
        """Items in the catalogue (the padding id 0 aside)."""
        return len(self.item_tokens) - 1

    def user_ids(self, users):
        """Internal ids of user tokens (ints are read as tokens); -1 for unknown users."""
        users = _tokens(users, "users")
        return np.array([self._user_id.get(u, -1) for u in users], dtype=np.int64)

    # --- scoring ---------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, user_ids):
        """(B, n_items + 1) scores of internal user ids, as the model's full_sort_predict."""
        users = torch.as_tensor(np.asarray(user_ids, dtype=np.int64), device=self.device)
        return factor_scores(self.factors, users, self._items_t)

    def recommend(self, users, k=10, exclude_known=True):
        """Top-``k`` items for each user token: a list of ``Recommendations``, one per user."""
        batch = self.topk(users, k, exclude_known)
        return [Recommendations(u, list(zip(batch.items[b, :n].tolist(),
                                            batch.scores[b, :n].tolist())),
                                bool(batch.fallback[b]))
                for b, (u, n) in enumerate(zip(batch.users, batch.lengths))]

    def topk(self, users, k=10, exclude_known=True):
        """Array form of ``recommend`` (see ``Batch``); ties are broken by the lower item id."""
        users = _tokens(users, "users")
        k = _check_k(k)
        width = min(k, self.n_items)
        ids = self.user_ids(users)
        items = np.zeros((len(users), width), dtype=np.int64)
        scores = np.full((len(users), width), np.nan, dtype=np.float32)
        lengths = np.zeros(len(users), dtype=np.int64)
        known = np.flatnonzero(ids >= 0)
        chunk = max(1, SCORE_BUDGET // (self.n_items + 1))
        for start in range(0, len(known), chunk):
            rows = known[start:start + chunk]
            rank = self._rank_index if self.index is not None else self._rank_brute
            got_items, got_scores, got_lengths = rank(ids[rows], width, exclude_known)
            items[rows], scores[rows], lengths[rows] = got_items, got_scores, got_lengths
        unknown = np.flatnonzero(ids < 0)
        if len(unknown):
            items[unknown] = self._popular[:width]
            scores[unknown] = self._popularity[self._popular[:width]]
            lengths[unknown] = width
        tokens = self._tokens[items]
        for b in np.flatnonzero(lengths < width):
            tokens[b, lengths[b]:] = ""
            scores[b, lengths[b]:] = np.nan
        return Batch(users, tokens, scores, lengths, ids < 0)

    def _excluded(self, user_ids):
        """(rows, cols) of each user's known items, for a batch of internal ids."""
        starts, ends = self.indptr[user_ids], self.indptr[user_ids + 1]
        counts = ends - starts
        rows = np.repeat(np.arange(len(user_ids)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.indices[np.repeat(starts, counts) + offsets]

    def _rank_brute(self, user_ids, width, exclude_known):
        scores = self.scores(user_ids)
        scores[:, 0] = -torch.inf
        allowed = np.full(len(user_ids), self.n_items)
        if exclude_known:
            rows, cols = self._excluded(user_ids)
            scores[torch.as_tensor(rows, device=self.device),
                   torch.as_tensor(cols, device=self.device)] = -torch.inf
            allowed -= np.bincount(rows, minlength=len(user_ids))
        values, items = topk_by_id(scores, width)
        return items.cpu().numpy(), values.cpu().numpy(), np.minimum(allowed, width)

    def _rank_index(self, user_ids, width, exclude_known):
        """Through faiss: over-fetch each user's known items (and the padding item), drop them,
        rescore the candidates from the factors; users whose cut could hide a tie go brute
        force. Near-equal scores may order differently from brute force (``index.py``)."""
        p, q, item_bias, user_bias = self.factors
        queries = faiss_index.augmented_users(p[torch.as_tensor(user_ids)].cpu().numpy())
        known = np.diff(self.indptr)[user_ids] if exclude_known else np.zeros(len(user_ids))
        fetch = int(min(self.n_items + 1, width + int(known.max(initial=0)) + 2))
        found, candidates = self.index.search(queries, fetch)
        # Candidates in item-id order, so that ties below are broken by the lower id.
        order = np.argsort(candidates, axis=1, kind="stable")
        candidates = np.take_along_axis(candidates, order, axis=1)
        drop = candidates <= 0  # faiss's -1 (nothing found) and the padding item
        if exclude_known:
            rows, cols = self._excluded(user_ids)
            keys = (np.arange(len(user_ids))[:, None] * (self.n_items + 1)
                    + np.maximum(candidates, 0))
            drop |= np.isin(keys, rows * (self.n_items + 1) + cols)
        cand = torch.as_tensor(np.maximum(candidates, 0), device=self.device)
        users = torch.as_tensor(user_ids, device=self.device)
        with torch.no_grad():
            exact = torch.einsum("bd,bfd->bf", p[users], q[cand])
            if item_bias is not None:
                exact += item_bias[cand]
            if user_bias is not None:
                exact += user_bias[users].unsqueeze(1)
            exact[torch.as_tensor(drop, device=self.device)] = -torch.inf
            values, columns = topk_by_id(exact, min(width, fetch))
        values, columns = values.cpu().numpy(), columns.cpu().numpy()
        items = np.take_along_axis(candidates, columns, axis=1)
        available = (~drop).sum(1)
        lengths = np.minimum(available, width)
        allowed = np.minimum(self.n_items - known, width)
        # faiss scores lack the user's constant bias: compare the cut in faiss's terms.
        shift = 0.0 if user_bias is None else user_bias[users].cpu().numpy()
        cut = values[np.arange(len(user_ids)), np.maximum(lengths - 1, 0)] - shift
        hidden_tie = (fetch <= self.n_items) & (found[:, -1] >= cut - 1e-5 * (1 + np.abs(cut)))
        redo = np.flatnonzero((lengths < allowed) | hidden_tie)
        self.index_redone += len(redo)
        if len(redo):  # rare: an unfetched item could tie with the last one kept
            got = self._rank_brute(user_ids[redo], width, exclude_known)
            items[redo], values[redo], lengths[redo] = got
        return items, values, lengths

    def similar_items(self, items, k=10):
        """For each item token, the ``k`` items with the most similar factors (cosine), best
        first, itself excluded: a list of ``(item token, similarity)`` lists."""
        k = _check_k(k)
        items = _tokens(items, "items")
        if not items:
            return []
        ids = []
        for item in items:
            iid = self._item_id.get(item)
            if iid is None:
                raise HetCompError(f"unknown item token '{item}': it is not in this model's "
                                   "catalogue")
            ids.append(iid)
        q = self.factors[1]
        unit = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        with torch.no_grad():
            sims = unit[torch.as_tensor(ids, device=self.device)] @ unit.T
            sims[:, 0] = -torch.inf
            sims[torch.arange(len(ids), device=self.device),
                 torch.as_tensor(ids, device=self.device)] = -torch.inf
            values, top = topk_by_id(sims, min(k, self.n_items - 1))
        return [list(zip(self._tokens[row].tolist(), vals.tolist()))
                for row, vals in zip(top.cpu().numpy(), values.cpu().numpy())]


def serving_device(device, flag="device="):
    """``device`` as a ``torch.device`` this torch can serve on; else HetCompError, its message
    naming ``flag`` (the CLIs pass ``"--device "``)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise HetCompError(f"{flag}{device} is not a torch device: use {flag}cpu, or "
                           f"{flag}cuda on a machine with a GPU") from None
    if parsed.type == "cpu":
        return parsed
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise HetCompError(f"{flag}{device}: torch here has no CUDA (or sees no GPU); use "
                               f"{flag}cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise HetCompError(f"{flag}{device}: torch sees {torch.cuda.device_count()} GPU(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return parsed
    raise HetCompError(f"{flag}{device}: serving runs on {flag}cpu or {flag}cuda[:N], not on "
                       f"{parsed.type}")


def _tokens(tokens, what):
    """``tokens`` as a list of str; one bare token is refused, since iterating a string would
    silently ask for one user per character."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{what} must be a list of tokens, not one {type(tokens).__name__}: "
                        f"pass [{tokens!r}]")
    return [str(t) for t in tokens]


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise HetCompError(f"k must be a positive integer, got {k!r}")
    return int(k)
