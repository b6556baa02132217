"""The ensemble knowledge of a distillation run, on the run's device.

Glue between the trajectory store (numpy arrays) and the pure tensor core (``knowledge/``):
it holds the teachers' rankings, the observed lists P_u, the current targets T_u and the
easy-to-hard state, and hands out per-batch tensors.
"""

import numpy as np
import torch

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge import (KnowledgeState, ensemble_targets, exclusion_mask,
                                       knowledge_step, masked_topk, mean_snapshot,
                                       observed_lists, share_at_last)


class KnowledgeSet:
    """Teachers' trajectories turned into distillation targets.

    Parameters
    ----------
    trajectories : list of Trajectory
        One per teacher, all recorded on the same split with the same C and M.
    history : torch.Tensor
        (U, max_len) long, each user's training items, 0-padded (RecBole's history matrix).
    n_items : int
    k, l : int
        Lengths of T_u and P_u.
    temperature : float
    batch_size : int
        Users per batch for target rebuilds and knowledge construction.
    device : torch.device
    weights : torch.Tensor, optional
        (X,) integer teacher weights of the ensemble (``ensemble.choose_weights``); None =
        uniform, the paper's.
    """

    def __init__(self, trajectories, history, n_items, k=100, l=10, temperature=10.0,
                 batch_size=1024, device="cpu", weights=None):
        shapes = {t.teacher: t.rankings.shape for t in trajectories}
        if len({s for s in shapes.values()}) != 1:
            raise HetCompError(f"teacher trajectories differ in (C, users, M): {shapes}; record "
                               "them with the same trajectory_snapshots and trajectory_topk")
        c, u, m = trajectories[0].rankings.shape
        if k > n_items - 1:
            raise HetCompError(f"hetcomp_k={k} is larger than the catalogue ({n_items - 1} "
                               "items): lower hetcomp_k")
        if k > len(trajectories) * m:
            raise HetCompError(f"hetcomp_k={k} cannot be met by {len(trajectories)} teachers' "
                               f"top-{m} lists: lower hetcomp_k or raise trajectory_topk")
        if l > m:
            raise HetCompError(f"hetcomp_l={l} is longer than the recorded observed lists "
                               f"(trajectory_topk={m}): lower hetcomp_l")
        self.teachers = [t.teacher for t in trajectories]
        self.n_items, self.k, self.l = n_items, k, l
        self.temperature, self.batch_size, self.device = temperature, batch_size, device
        self.n_snapshots = c
        self.weights = None if weights is None else torch.as_tensor(weights).long().to(device)
        # int32 halves memory against int64; uint16 (the store's format) cannot index tensors
        self.rankings = torch.from_numpy(
            np.stack([t.rankings.astype(np.int32) for t in trajectories])).to(device)
        observed = torch.from_numpy(
            np.stack([t.observed.astype(np.int32) for t in trajectories])).to(device)
        self.observed, self.observed_mask = observed_lists(observed, l, temperature, batch_size,
                                                           self.weights)
        self.history = history.to(device)
        self.state = KnowledgeState.new(u, len(trajectories), device)
        self.rebuild_targets()

    @property
    def n_users(self):
        return self.rankings.shape[2]

    def rebuild_targets(self):
        self.targets, self.target_mask = ensemble_targets(
            self.rankings, self.state.choice, self.k, self.temperature, self.batch_size,
            self.weights)

    def batch(self, users):
        """Per-batch tensors for ``users`` (B,): excluded items (the training items as a 0-padded
        index, the losses' fast form), T_u, its mask, P_u, its mask."""
        return (self.history[users], self.targets[users],
                self.target_mask[users], self.observed[users], self.observed_mask[users])

    @torch.no_grad()
    def student_top(self, score_fn, n, known=None):
        """(U, n) the student's top-n unobserved items for every user, in user batches.

        ``known``: optional (U, n) lists already computed (rows of -1 are missing), e.g. read
        off the validation pass that ran on the same weights; only missing users are scored.
        """
        top = known.clone() if known is not None else torch.full(
            (self.n_users, n), -1, dtype=torch.long, device=self.device)
        missing = torch.nonzero(top[:, 0] < 0).flatten()
        for start in range(0, len(missing), self.batch_size):
            users = missing[start:start + self.batch_size]
            top[users] = masked_topk(score_fn(users), exclusion_mask(self.history[users],
                                                                     self.n_items), n)
        return top

    def construct(self, score_fn, epoch, p, alpha, decay, n=50, known_top=None):
        """One knowledge-construction step for all users, then rebuild T_u."""
        top = self.student_top(score_fn, n, known_top)
        knowledge_step(self.state, top, self.rankings, epoch, p, alpha, decay,
                       self.batch_size, n, self.temperature)
        self.rebuild_targets()

    def finish(self):
        """Every pair to the last snapshot (the converged teachers), targets rebuilt."""
        self.state.choice.fill_(self.n_snapshots - 1)
        self.rebuild_targets()

    def progress(self):
        """Mean snapshot index per teacher and the share of pairs at the last snapshot."""
        means = mean_snapshot(self.state.choice[1:]).tolist()  # user 0 is padding
        return {"mean_snapshot": dict(zip(self.teachers, means)),
                "share_at_last": share_at_last(self.state.choice[1:], self.n_snapshots)}
