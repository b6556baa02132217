r"""
ItemVAE
################################################
Reference:
    Dawen Liang et al. "Variational Autoencoders for Collaborative Filtering." in WWW 2018.
    SeongKu Kang et al. "Distillation from Heterogeneous Models for Top-K Recommendation."
    in WWW 2023 (the item-based autoencoder teacher "I-AE").

The Mult-VAE network run on the item side: each item's binary vector over users (who interacted
with it in training) is encoded to a Gaussian latent and decoded back to a distribution over
users. A user's score for an item is read at that user's coordinate of the item's reconstruction.

Making scores comparable across items. With the multinomial likelihood the decoder's logits for
item i are only defined up to a constant (softmax over users is shift invariant), so raw logits
rank item i against item j for one user arbitrarily. The multinomial scorer therefore returns

    score(u, i) = log softmax_u(logits_i)[u] + item_prior_weight * log(n_i + 1)
                = log p(u | i) + log p(i)   (with weight 1, up to a constant),

that is log p(u, i), which ranks a user's items like p(i | u). ``n_i`` is item i's number of
training users; the +1 keeps items without training users finite. The Bernoulli likelihood
(independent sigmoid per user) is calibrated per coordinate and returns the raw logit.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType


class ItemVAE(GeneralRecommender):
    r"""Item-based Mult-VAE (HetComp's I-AE).

    Training uses RecBole's ordinary interaction loader without negative sampling: each batch's
    distinct item ids are the items autoencoded in that step, so items are drawn in proportion to
    their popularity, as users are for a user-based autoencoder fed by interactions.

    Scoring is deterministic in either mode: no input dropout and z = the posterior mean, as
    Mult-VAE scores at test time.
    """

    input_type = InputType.POINTWISE

    # Bounds every dense (rows x users) block built while scoring: 2^24 float32 numbers = 64 MiB.
    max_chunk_elements = 1 << 24

    def __init__(self, config, dataset):
        super(ItemVAE, self).__init__(config, dataset)

        self.hidden_sizes = list(config["mlp_hidden_size"])
        self.latent_dimension = config["latent_dimension"]
        self.dropout_prob = config["dropout_prob"]
        self.anneal_cap = config["anneal_cap"]
        self.total_anneal_steps = config["total_anneal_steps"]
        self.likelihood = config["likelihood"]
        self.item_prior_weight = config["item_prior_weight"]
        if self.likelihood not in ("multinomial", "bernoulli"):
            raise ValueError(f"likelihood must be multinomial or bernoulli, not {self.likelihood}")

        # Item x user training matrix as CSR index tensors (memory O(interactions)); batches
        # densify only their own rows.
        item_user = dataset.inter_matrix(form="csr").transpose().tocsr()
        item_user.sum_duplicates()
        self.register_buffer(
            "item_user_indptr", torch.from_numpy(item_user.indptr).long(), persistent=False
        )
        self.register_buffer(
            "item_user_indices", torch.from_numpy(item_user.indices).long(), persistent=False
        )
        popularity = self.item_user_indptr[1:] - self.item_user_indptr[:-1]  # (I,)
        self.register_buffer(
            "item_log_prior", torch.log1p(popularity.float()), persistent=False
        )

        # Mult-VAE's layout: n_users -> hidden... -> 2 * latent (mean, log-variance), and
        # latent -> ...hidden -> n_users, tanh between layers, none after the last.
        self.encoder = self._mlp([self.n_users] + self.hidden_sizes + [2 * self.latent_dimension])
        self.decoder = self._mlp([self.latent_dimension] + self.hidden_sizes[::-1] + [self.n_users])

        self.anneal_step = 0
        self._score_cache = None

        self.apply(xavier_normal_initialization)

    @staticmethod
    def _mlp(sizes):
        modules = []
        for k, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            modules.append(nn.Linear(d_in, d_out))
            if k < len(sizes) - 2:
                modules.append(nn.Tanh())
        return nn.Sequential(*modules)

    def _item_rows(self, items):
        r"""Dense binary user vectors of ``items``: (n,) -> (n, n_users)."""
        start = self.item_user_indptr[items]
        length = self.item_user_indptr[items + 1] - start
        row = torch.repeat_interleave(torch.arange(len(items), device=self.device), length)
        # k-th stored user of row r sits at indptr[item_r] + k, and k = global position minus
        # the number of entries of the rows before r.
        first_of_row = torch.cumsum(length, dim=0) - length
        position = start[row] + torch.arange(len(row), device=self.device) - first_of_row[row]
        rows = torch.zeros(len(items), self.n_users, device=self.device)
        rows[row, self.item_user_indices[position]] = 1.0
        return rows

    def _encode(self, rows):
        h = F.normalize(rows)
        h = F.dropout(h, self.dropout_prob, training=self.training)
        h = self.encoder(h)
        return h[:, : self.latent_dimension], h[:, self.latent_dimension :]

    def forward(self, rows):
        mu, logvar = self._encode(rows)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decoder(z), mu, logvar

    def calculate_loss(self, interaction):
        items = torch.unique(interaction[self.ITEM_ID])
        rows = self._item_rows(items)  # (n, n_users)

        self.anneal_step += 1
        if self.total_anneal_steps > 0:
            anneal = min(self.anneal_cap, self.anneal_step / self.total_anneal_steps)
        else:
            anneal = self.anneal_cap

        logits, mu, logvar = self.forward(rows)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
        if self.likelihood == "multinomial":
            nll = -(F.log_softmax(logits, dim=1) * rows).sum(dim=1).mean()
        else:
            nll = F.binary_cross_entropy_with_logits(logits, rows, reduction="none")
            nll = nll.sum(dim=1).mean()
        return nll + anneal * kl

    # ----------------------------------------------------------------- scoring

    def _rows_per_chunk(self):
        return max(1, self.max_chunk_elements // self.n_users)

    def _scoring_mean(self, rows):
        # Scoring ignores the mode: no input dropout, no sampling.
        return self.encoder(F.normalize(rows))[:, : self.latent_dimension]

    def _log_scores_of_items(self, items):
        r"""Full score rows of ``items`` straight through the network: (n,) -> (n, n_users)."""
        logits = self.decoder(self._scoring_mean(self._item_rows(items)))
        if self.likelihood == "multinomial":
            prior = self.item_prior_weight * self.item_log_prior[items]
            return F.log_softmax(logits, dim=1) + prior.unsqueeze(1)
        return logits

    def predict(self, interaction):
        user = interaction[self.USER_ID]
        item = interaction[self.ITEM_ID]
        distinct, where = torch.unique(item, return_inverse=True)
        scores = torch.empty(len(item), device=self.device)
        step = self._rows_per_chunk()
        for start in range(0, len(distinct), step):
            block = self._log_scores_of_items(distinct[start : start + step])  # (c, n_users)
            selected = (where >= start) & (where < start + step)
            scores[selected] = block[where[selected] - start, user[selected]]
        return scores

    def train(self, mode=True):
        # Training makes the cache stale: free its memory now. Every other change of the
        # parameters is caught by the version check in _item_side_cache.
        if mode:
            self._score_cache = None
        return super().train(mode)

    def _parameter_state(self):
        # Optimiser steps and load_state_dict update parameters in place, which bumps their
        # version counters: a cache built under other versions is stale.
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    @torch.no_grad()
    def _item_side_cache(self):
        r"""Decoder's last hidden layer for every item, (I, H), and a per-item offset, (I,).

        With W (n_users, H) and b (n_users,) the decoder's last layer, item i's score row is
        W h_i + b + offset_i, where offset_i = prior_i - logsumexp_u(W h_i + b) for the
        multinomial scorer and 0 for the Bernoulli one.
        """
        state = self._parameter_state()
        if self._score_cache is not None and self._score_cache[0] == state:
            return self._score_cache[1], self._score_cache[2]

        last = self.decoder[-1]
        hidden_layers = self.decoder[:-1]
        step = self._rows_per_chunk()
        hidden, offset = [], []
        for start in range(0, self.n_items, step):
            items = torch.arange(start, min(start + step, self.n_items), device=self.device)
            h = hidden_layers(self._scoring_mean(self._item_rows(items)))  # (c, H)
            hidden.append(h)
            if self.likelihood == "multinomial":
                lse = torch.logsumexp(last(h), dim=1)  # (c,)
                offset.append(self.item_prior_weight * self.item_log_prior[items] - lse)
            else:
                offset.append(torch.zeros(len(items), device=self.device))
        hidden, offset = torch.cat(hidden), torch.cat(offset)
        self._score_cache = (state, hidden, offset)
        return hidden, offset

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        hidden, offset = self._item_side_cache()  # (I, H), (I,)
        last = self.decoder[-1]
        scores = last.weight[user] @ hidden.t()  # (B, I)
        scores = scores + last.bias[user].unsqueeze(1) + offset.unsqueeze(0)
        return scores.view(-1)
