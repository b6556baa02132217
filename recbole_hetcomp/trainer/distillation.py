"""The training loop shared by the students that learn from the ensemble (HetComp, RRD, DCD).

Each batch of RecBole's training interactions gives its distinct users (drawn in proportion to
their activity); the subclass's ``distillation_backward(users)`` computes their loss against
the student's scores for every item and accumulates its gradient; an optional BPR term on the
same batch (``cf_weight``), RecBole's ``clip_grad_norm`` and one NaN check per batch follow.
"""

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_hetcomp.device import batch_users
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.trainer.best_state import BestStateMixin


class DistillationTrainer(BestStateMixin, Trainer):
    """RecBole Trainer whose loss comes from ensemble knowledge; call ``set_knowledge`` before
    ``fit``. Subclasses implement ``distillation_backward`` and may hook ``_before_epoch``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        name = type(self).__name__
        for key in ("enable_amp", "enable_scaler"):
            if config[key]:
                # The losses' fused log-sum-exps and fixed-point knowledge assume float32 scores.
                raise HetCompError(f"{key} is not supported by {name}: set {key}: False")
        self.cf_weight = config["cf_weight"] or 0.0
        self.chunk_users = batch_users(config, "loss_chunk_users", "loss", model.n_items)
        self.knowledge = None

    def set_knowledge(self, knowledge):
        self.knowledge = knowledge

    def _before_epoch(self, epoch_idx):
        """Work due before an epoch's batches (knowledge construction, refreshes)."""

    def distillation_backward(self, users):
        """Weighted loss of ``users`` (B,), gradient accumulated; a detached 0-d tensor."""
        raise NotImplementedError

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        name = type(self).__name__
        if self.knowledge is None:
            raise RuntimeError(f"{name} needs set_knowledge() before training")
        if loss_func is not None:
            raise HetCompError(f"{name} trains with the distillation losses; a loss_func "
                               "cannot replace them")
        self._epoch = epoch_idx  # (this loop replaces Trainer._train_epoch: no super() call)
        self._before_epoch(epoch_idx)
        self.model.train()
        uid = self.config["USER_ID_FIELD"]
        batches = (tqdm(train_data, total=len(train_data), ncols=100,
                        desc=set_color(f"Train {epoch_idx:>5}", "pink"))
                   if show_progress else train_data)
        total = torch.zeros((), device=self.device)
        for interaction in batches:
            # The batch's distinct users, found where the loader made the batch (the host):
            # on a GPU, unique() would wait for the device, as its size depends on the data.
            users = torch.unique(interaction[uid]).to(self.device)
            interaction = interaction.to(self.device)
            self.optimizer.zero_grad()
            loss = self.distillation_backward(users)
            if self.cf_weight:
                cf_loss = self.cf_weight * self.model.calculate_loss(interaction)
                cf_loss.backward()
                loss = loss + cf_loss.detach()
            self._check_nan(loss)  # the one host sync per batch: stop before a NaN step
            total += loss
            if self.clip_grad_norm:  # RecBole's key, applied as its Trainer does
                clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
        return float(total)
