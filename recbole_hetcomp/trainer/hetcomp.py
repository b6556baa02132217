"""HetCompTrainer: the student's training loop with dynamic knowledge construction.

Every ``kc_period`` epochs (from epoch p on, until the switch) the student's top lists are
compared with the teachers' next snapshots and each (user, teacher) pair may move on
(``knowledge/construction.py``), then the targets are rebuilt. The overall loss is used until
``switch_share`` of the pairs reached the last snapshot, the rank loss after that (once).
"""

from time import perf_counter

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from tqdm import tqdm

from recbole_hetcomp.knowledge import overall_loss, rank_loss, should_switch
from recbole_hetcomp.trainer.teacher import BestStateMixin


class HetCompTrainer(BestStateMixin, Trainer):
    """RecBole Trainer for ``HetCompStudent``; call ``set_knowledge`` before ``fit``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.period = config["kc_period"]
        self.alpha, self.decay = config["alpha"], config["decay"]
        self.discrepancy_n = config["discrepancy_n"]
        self.switch_share = config["switch_share"]
        self.rank_top = tuple(config["rank_top"])
        self.overall_weight, self.rank_weight = config["overall_weight"], config["rank_weight"]
        self.cf_weight = config["cf_weight"]
        self.knowledge = None
        self.switched = False
        self.kc_history = []  # one dict per knowledge-construction step
        self.valid_history = []

    def set_knowledge(self, knowledge):
        self.knowledge = knowledge

    # --- knowledge construction ----------------------------------------------------------
    def _knowledge_due(self, epoch_idx):
        return (not self.switched and epoch_idx >= self.period and epoch_idx % self.period == 0)

    def _construct(self, epoch_idx):
        start = perf_counter()
        self.model.eval()
        self.knowledge.construct(self.model.user_scores, epoch_idx, self.period, self.alpha,
                                 self.decay, self.discrepancy_n)
        switched_now = should_switch(self.knowledge.state.choice[1:],
                                     self.knowledge.n_snapshots, self.switch_share)
        if switched_now:
            self.knowledge.finish()
            self.switched = True
        self.model.train()
        self.cur_step = 0  # new knowledge: early-stopping patience restarts
        entry = {"epoch": epoch_idx, **self.knowledge.progress(),
                 "loss": "rank" if self.switched else "overall",
                 "seconds": perf_counter() - start}
        self.kc_history.append(entry)
        means = ", ".join(f"{t} {m:.2f}" for t, m in entry["mean_snapshot"].items())
        self.logger.info(set_color(f"epoch {epoch_idx} knowledge construction", "green")
                         + f" [{entry['seconds']:.2f}s] mean snapshot: {means}; at last "
                         f"snapshot: {entry['share_at_last']:.1%}; loss: {entry['loss']}"
                         + (" (switched to the rank loss)" if switched_now else ""))

    # --- training ------------------------------------------------------------------------
    def distillation_loss(self, users):
        """Weighted distillation loss of ``users`` (summed over users, as released)."""
        scores = self.model.user_scores(users)  # (B, I)
        batch = self.knowledge.batch(users)
        if self.switched:
            return self.rank_weight * rank_loss(scores, *batch, top=self.rank_top).sum()
        return self.overall_weight * overall_loss(scores, *batch).sum()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.knowledge is None:
            raise RuntimeError("HetCompTrainer needs set_knowledge() before training")
        self._epoch = epoch_idx  # (this loop replaces Trainer._train_epoch: no super() call)
        if self._knowledge_due(epoch_idx):
            self._construct(epoch_idx)
        self.model.train()
        uid = self.config["USER_ID_FIELD"]
        batches = (tqdm(train_data, total=len(train_data), ncols=100,
                        desc=set_color(f"Train {epoch_idx:>5}", "pink"))
                   if show_progress else train_data)
        total = 0.0
        for interaction in batches:
            interaction = interaction.to(self.device)
            users = torch.unique(interaction[uid])
            self.optimizer.zero_grad()
            loss = self.distillation_loss(users)
            if self.cf_weight:
                loss = loss + self.cf_weight * self.model.calculate_loss(interaction)
            self._check_nan(loss)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        return total
