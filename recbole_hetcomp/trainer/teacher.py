"""Trainer mixins that work on top of any RecBole trainer (plain, RecVAE, NCL...).

``BestStateMixin`` keeps the best weights in memory. RecBole reloads its best checkpoint with
``torch.load``, which on torch >= 2.6 refuses the pickled Config inside; copying the state in
memory avoids loading pickles at all and is faster.

``TrajectoryMixin`` records the teacher's top-M ranking of every user's non-training items at
each evaluation. During a full-sort validation RecBole already computes every validation user's
scores with training items masked, so the ranking is read off those scores (one ``topk`` per
batch); only users absent from the validation set are scored again.
"""

import copy
import importlib
import time

import numpy as np
import torch
from recbole.utils import get_trainer as recbole_get_trainer

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


class TrajectoryMixin(BestStateMixin):
    """Record a ``TrajectoryRecorder`` entry at every validation.

    Each validation also yields the teacher's ranking of every user's training items (read off
    the raw scores before RecBole masks them); the one of the best evaluation is kept in
    ``best_observed``, so no extra scoring pass is needed at the end.
    """

    recorder = None
    record_seconds = 0.0
    best_observed = None
    _captured = None

    def _valid_epoch(self, valid_data, show_progress=False):
        if self.recorder is None:
            return super()._valid_epoch(valid_data, show_progress=show_progress)
        recorder = self.recorder
        shape = (recorder.n_users, recorder.top_m)
        self._captured = np.zeros(shape, dtype=recorder.dtype)
        self._observed = np.zeros(shape, dtype=recorder.dtype)
        self._seen = np.zeros(recorder.n_users, dtype=bool)
        self._seen[0] = True
        model_predict = self.model.full_sort_predict
        self.model.full_sort_predict = self._keep_raw_scores(model_predict)
        try:
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        finally:
            del self.model.full_sort_predict  # back to the class's method
        start = time.perf_counter()
        missing = torch.from_numpy(np.flatnonzero(~self._seen))
        if len(missing):
            unobserved, observed = recorder.rank_users_both(missing)
            self._captured[missing.numpy()] = unobserved
            self._observed[missing.numpy()] = observed
        recorder.record(self._epoch, score, self._captured)
        self._last_observed, self._captured = self._observed, None
        self.record_seconds += time.perf_counter() - start
        return score, result

    def _keep_raw_scores(self, predict):
        def wrapper(interaction):
            scores = predict(interaction)
            self._raw_scores = scores.detach().clone()  # RecBole masks the scores in place
            return scores
        return wrapper

    def _full_sort_batch_eval(self, batched_data):
        self._raw_scores = None
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._captured is not None and self._raw_scores is not None:
            start = time.perf_counter()
            recorder = self.recorder
            users = interaction[recorder.uid_field]
            # scores already hold -inf at training items and item 0 (RecBole's history mask)
            lists = recorder.top_lists(scores, torch.zeros_like(scores, dtype=torch.bool))
            raw = self._raw_scores.view(len(users), -1)
            rows = users.cpu().numpy()
            self._captured[rows] = recorder.to_numpy(lists)
            self._observed[rows] = recorder.to_numpy(recorder.observed_lists(users, raw))
            self._seen[rows] = True
            self.record_seconds += time.perf_counter() - start
        return interaction, scores, positive_u, positive_i

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        self.best_observed = getattr(self, "_last_observed", None)


def base_trainer_class(config):
    """This package's ``<Model>Trainer`` if there is one, else RecBole's choice."""
    module = importlib.import_module("recbole_hetcomp.trainer")
    own = getattr(module, f"{config['model']}Trainer", None)
    return own or recbole_get_trainer(config["MODEL_TYPE"], config["model"])


def make_trainer(config, model, recorder=None):
    """Instantiate the right trainer for ``config['model']`` with the mixins on top."""
    base = base_trainer_class(config)
    if not issubclass(base, TrajectoryMixin):
        base = type(f"Recording{base.__name__}", (TrajectoryMixin, base), {})
    trainer = base(config, model)
    trainer.recorder = recorder
    return trainer
