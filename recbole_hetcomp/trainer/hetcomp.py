"""HetCompTrainer: the student's training loop with dynamic knowledge construction.

Every ``kc_period`` epochs (from epoch p on, until the switch) the student's top lists are
compared with the teachers' next snapshots and each (user, teacher) pair may move on
(``knowledge/construction.py``), then the targets are rebuilt. The overall loss is used until
``switch_share`` of the pairs reached the last snapshot, the rank loss after that (once).

Two switches turn parts of the method off for the paper's ablations (``variants.py``):
``dynamic_construction: False`` starts every pair at the last snapshot (the converged
teachers' targets from epoch 0; the switch rule, checked at epoch p as usual, then fires at
once) and ``knowledge_transfer: overall | rank`` keeps one loss throughout.
"""

from time import perf_counter

import torch
from recbole.utils import set_color

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge import (exclusion_mask, masked_topk, overall_loss, rank_loss,
                                      should_switch)
from recbole_hetcomp.trainer.distillation import DistillationTrainer

#: knowledge_transfer values: the paper's adaptive switch, or one loss throughout (ablation).
TRANSFERS = ("adaptive", "overall", "rank")


class HetCompTrainer(DistillationTrainer):
    """RecBole Trainer for ``HetCompStudent``; call ``set_knowledge`` before ``fit``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.period = config["kc_period"]
        self.alpha, self.decay = config["alpha"], config["decay"]
        self.discrepancy_n = config["discrepancy_n"]
        self.switch_share = config["switch_share"]
        self.rank_top = tuple(config["rank_top"])
        self.overall_weight, self.rank_weight = config["overall_weight"], config["rank_weight"]
        self.dynamic = config["dynamic_construction"]
        self.transfer = config["knowledge_transfer"]
        if self.transfer not in TRANSFERS:
            raise HetCompError(f"knowledge_transfer must be one of {list(TRANSFERS)}, got "
                               f"{self.transfer!r}")
        self.switched = False  # every pair at the last snapshot: construction is over
        self.kc_history = []  # one dict per knowledge-construction step
        self.valid_history = []
        # The student's top-n unobserved lists read off the last validation pass (same
        # weights as the knowledge step that follows it): saves a full-catalogue scoring pass.
        self._valid_top, self._valid_top_epoch, self._capturing = None, None, False

    def set_knowledge(self, knowledge):
        super().set_knowledge(knowledge)
        if not self.dynamic:
            knowledge.finish()

    def _uses_rank_loss(self):
        if self.transfer == "adaptive":
            return self.switched
        return self.transfer == "rank"

    # --- knowledge construction ----------------------------------------------------------
    def _knowledge_due(self, epoch_idx):
        return (not self.switched and epoch_idx >= self.period and epoch_idx % self.period == 0)

    def _construct(self, epoch_idx):
        start = perf_counter()
        self.model.eval()
        if self.dynamic:
            known = self._valid_top if self._valid_top_epoch == epoch_idx - 1 else None
            self.knowledge.construct(self.model.user_scores, epoch_idx, self.period, self.alpha,
                                     self.decay, self.discrepancy_n, known)
        self._valid_top = None
        switched_now = should_switch(self.knowledge.state.choice[1:],
                                     self.knowledge.n_snapshots, self.switch_share)
        if switched_now:
            # the pairs still behind (at most 1 - switch_share of them) jump to the converged
            # teachers: after the switch every T_u is the final ensemble's (a choice)
            self.knowledge.finish()
            self.switched = True
        self.model.train()
        # Patience restarts at every call, moved pairs or not (a choice, not the spec's): the
        # targets are re-read, so a best score under older targets is no yardstick. With
        # eval_step = kc_period early stopping therefore acts only after the switch.
        self.cur_step = 0
        entry = {"epoch": epoch_idx, **self.knowledge.progress(),
                 "loss": "rank" if self._uses_rank_loss() else "overall",
                 "seconds": perf_counter() - start}
        self.kc_history.append(entry)
        means = ", ".join(f"{t} {m:.2f}" for t, m in entry["mean_snapshot"].items())
        self.logger.info(set_color(f"epoch {epoch_idx} knowledge construction", "green")
                         + f" [{entry['seconds']:.2f}s] mean snapshot: {means}; at last "
                         f"snapshot: {entry['share_at_last']:.1%}; loss: {entry['loss']}"
                         + (" (switched to the rank loss)"
                            if switched_now and self.transfer == "adaptive" else ""))

    # --- training ------------------------------------------------------------------------
    def distillation_backward(self, users):
        """Weighted distillation loss of ``users`` (summed over users, as released), with its
        gradient accumulated into the parameters; returns the loss as a detached 0-d tensor on
        the device (no host sync here: the caller checks it once per batch).

        The batch's users are processed in chunks of ``loss_chunk_users`` and each chunk's
        backward runs at once: the loss is a sum over users, so the accumulated gradient is
        exact, while every dense (chunk, items) tensor stays small. Small tensors are served
        from the allocator's cache; one (3000, 25000) tensor per op would be mmapped and
        page-faulted afresh each time; chunks of ~2M scores also stay in cache on CPU.
        """
        total = None
        for start in range(0, len(users), self.chunk_users):
            chunk = users[start:start + self.chunk_users]
            scores = self.model.user_scores(chunk)  # (B, I)
            batch = self.knowledge.batch(chunk)
            if self._uses_rank_loss():
                loss = self.rank_weight * rank_loss(scores, *batch, top=self.rank_top).sum()
            else:
                loss = self.overall_weight * overall_loss(scores, *batch).sum()
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total

    def _before_epoch(self, epoch_idx):
        if self._knowledge_due(epoch_idx):
            self._construct(epoch_idx)

    def _valid_epoch(self, valid_data, show_progress=False):
        self._capturing = not self.switched and self.dynamic and self.knowledge is not None
        if self._capturing:
            self._valid_top = torch.full((self.knowledge.n_users, self.discrepancy_n), -1,
                                         dtype=torch.long, device=self.device)
        try:
            result = super()._valid_epoch(valid_data, show_progress=show_progress)
        finally:
            self._capturing = False
        self._valid_top_epoch = self._epoch
        return result

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._capturing:
            # RecBole's -inf mask misses training items that are also validation positives
            # (a pair logged twice): the student's lists must hold unobserved items only
            users = interaction[self.config["USER_ID_FIELD"]].to(self.device)
            excluded = exclusion_mask(self.knowledge.history[users].to(scores.device),
                                      scores.shape[1])
            self._valid_top[users] = masked_topk(scores, excluded, self.discrepancy_n).to(
                self.device)
        return interaction, scores, positive_u, positive_i
