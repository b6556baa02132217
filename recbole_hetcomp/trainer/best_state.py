"""Keep a model's best validation state in memory, on top of any RecBole trainer.

RecBole reloads its best checkpoint with ``torch.load``, which on torch >= 2.6 refuses the pickled
Config inside; copying the state in memory avoids loading pickles at all and is faster.
"""

import copy

from recbole_hetcomp.errors import HetCompError


class BestStateMixin:
    """Keep the best validation state in memory (``evaluate`` restores it) and the
    validation history (``valid_history``: epoch and score of each evaluation)."""

    best_epoch = None
    _best_state = None
    _epoch = -1

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._epoch = epoch_idx
        return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if not hasattr(self, "valid_history"):
            self.valid_history = []
        self.valid_history.append({"epoch": self._epoch, "score": float(score)})
        return score, result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        self.best_epoch = epoch
        self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._best_other = copy.deepcopy(self.model.other_parameter())
        if self.config["save_checkpoint"]:
            super()._save_checkpoint(epoch, verbose=verbose, **kwargs)

    def restore_best(self):
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
            self.model.load_other_parameter(self._best_other)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if model_file is not None:
            raise HetCompError("evaluating a checkpoint file is not supported: the best state "
                               "of this run is kept in memory")
        if load_best_model:
            self.restore_best()
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
