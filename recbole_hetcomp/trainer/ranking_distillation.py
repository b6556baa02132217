"""RankingDistillationTrainer: the RRD and DCD baselines, taught by the run's ensemble.

The teacher is the converged ensemble (a ``KnowledgeSet`` at its last snapshot, with the run's
teacher weights): its top-N list of each user's unobserved items, the same knowledge HetComp
ends on, without the easy-to-hard sequence. Per user of a batch:

- RRD: K interesting items (the list's top K in order, or drawn rank-aware with
  ``kd_temperature``) must beat L uninteresting ones drawn uniformly outside the list, in the
  teacher's order (``knowledge.rrd_sample`` / ``rrd_loss``);
- DCD: the same term plus the correction term: items of the teacher's list that the student
  ranks too low (teacher side) and items of the student's own top list that the teacher does
  not rank as high (student side) are drawn with probability tanh(max(eps * rank gap, 0)) and
  distilled in the teacher's order (``dcd_probabilities`` / ``dcd_sample`` / ``dcd_loss``). The
  student's ranking is refreshed every ``dcd_refresh`` epochs (one full-catalogue ranking of
  every user). Only the user-side view is trained: DCD's item-side view needs the teachers'
  ranking of users for each item, which top-M lists of items per user do not hold.

Draws come from a generator seeded with the run's seed, so a run is reproducible.
"""

import torch

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge import exclusion_mask, masked_topk
from recbole_hetcomp.knowledge.kd_baselines import (dcd_loss, dcd_probabilities, dcd_sample,
                                                    ranks_from_lists, ranks_from_scores,
                                                    rrd_loss, rrd_sample)
from recbole_hetcomp.trainer.distillation import DistillationTrainer


class RankingDistillationTrainer(DistillationTrainer):
    """RecBole Trainer for ``RRD`` and ``DCD`` (the model's name picks the loss)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.method = config["model"]
        if self.method not in ("RRD", "DCD"):
            raise HetCompError(f"RankingDistillationTrainer trains RRD or DCD, not "
                               f"{self.method}")
        self.n_interesting, self.n_uninteresting = config["kd_interesting"], \
            config["kd_uninteresting"]
        self.temperature, self.weight = config["kd_temperature"], config["kd_weight"]
        if self.method == "DCD":
            self.epsilon, self.n_samples = config["dcd_epsilon"], config["dcd_samples"]
            self.student_n, self.refresh = config["dcd_student_n"], config["dcd_refresh"]
        self.generator = torch.Generator(device=self.device).manual_seed(int(config["seed"]))
        # DCD's view of the student, as of the last refresh
        self.student_rank_of_teacher = self.student_top = None

    def set_knowledge(self, knowledge):
        knowledge.finish()  # the converged teachers: no easy-to-hard sequence here
        super().set_knowledge(knowledge)

    def _before_epoch(self, epoch_idx):
        if self.method == "DCD" and epoch_idx % self.refresh == 0:
            self._refresh_student_ranking()

    @torch.no_grad()
    def _refresh_student_ranking(self):
        """The student's rank of each item of the teacher's lists, and its own top list."""
        self.model.eval()
        knowledge, n_items = self.knowledge, self.model.n_items
        ranks = torch.empty_like(knowledge.targets)                         # (U, N)
        top = torch.empty(knowledge.n_users, self.student_n, dtype=torch.long,
                          device=self.device)                              # (U, N')
        for start in range(0, knowledge.n_users, knowledge.batch_size):
            users = torch.arange(start, min(start + knowledge.batch_size, knowledge.n_users),
                                 device=self.device)
            scores = self.model.user_scores(users)                           # (B, I)
            excluded = exclusion_mask(knowledge.history[users], n_items)
            ranks[users] = ranks_from_scores(scores, excluded).gather(1, knowledge.targets[users])
            top[users] = masked_topk(scores, excluded, self.student_n)
        self.student_rank_of_teacher, self.student_top = ranks, top
        self.model.train()

    def distillation_backward(self, users):
        total = None
        for start in range(0, len(users), self.chunk_users):
            chunk = users[start:start + self.chunk_users]
            scores = self.model.user_scores(chunk)                             # (B, I)
            history, lists, mask, _, _ = self.knowledge.batch(chunk)
            interesting, uninteresting = rrd_sample(
                lists, mask, self.n_interesting, self.n_uninteresting, self.model.n_items,
                history, self.temperature, self.generator)
            loss = rrd_loss(scores, interesting, uninteresting)
            if self.method == "DCD":
                loss = loss + self._correction_loss(chunk, scores, lists, mask)
            loss = self.weight * loss.sum()
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total

    def _correction_loss(self, users, scores, lists, mask):
        """DCD's user-side correction term for ``users`` (B,) with their scores (B, I)."""
        n_items, n = self.model.n_items, lists.shape[1]
        teacher_ranks = ranks_from_lists(lists, mask, n_items)                # (B, I)
        # Dense student ranks where they are read: at the teacher's items and the student's top
        # items (both from the same refresh, so an item in both lists has one rank).
        student_ranks = torch.full_like(teacher_ranks, n_items)
        listed = torch.where(mask, lists, torch.zeros_like(lists))
        student_ranks.scatter_(1, listed, self.student_rank_of_teacher[users])
        top = self.student_top[users]                                         # (B, N')
        student_ranks.scatter_(1, top, torch.arange(1, top.shape[1] + 1,
                                                    device=top.device).expand_as(top))
        student_ranks[:, 0] = n_items
        p_teacher, p_student = dcd_probabilities(teacher_ranks, student_ranks, listed, top,
                                                 self.epsilon, self.epsilon)
        teacher_side = dcd_sample(listed, p_teacher, self.n_samples, self.generator)
        student_side = dcd_sample(top, p_student, self.n_samples, self.generator)
        return dcd_loss(scores, teacher_side, student_side, teacher_ranks, unranked_rank=n + 1)
