"""Trajectory recording as a trainer mixin that works on top of any RecBole trainer.

``TrajectoryMixin`` records the teacher's top-M ranking of every user's non-training items at
each evaluation. During a full-sort validation RecBole already computes every validation user's
scores with training items masked, so the ranking is read off those scores (one ``topk`` per
batch); only users absent from the validation set are scored again.
"""

import time

import numpy as np
import torch

from recbole_hetcomp.device import Stopwatch, synchronize
from recbole_hetcomp.registry import get_trainer
from recbole_hetcomp.trainer.best_state import BestStateMixin


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
        device = recorder.device
        # Lists are gathered on the device and copied to the host once, after the pass.
        shape = (recorder.n_users, recorder.top_m)
        self._captured = torch.zeros(shape, dtype=torch.long, device=device)
        self._observed = torch.zeros(shape, dtype=torch.long, device=device)
        self._seen = torch.zeros(recorder.n_users, dtype=torch.bool, device=device)
        self._seen[0] = True
        self._stopwatch = Stopwatch(device)
        model_predict = self.model.full_sort_predict
        self.model.full_sort_predict = self._keep_raw_scores(model_predict)
        try:
            score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        finally:
            del self.model.full_sort_predict  # back to the class's method
        start = time.perf_counter()
        captured, observed = recorder.to_numpy(self._captured), recorder.to_numpy(self._observed)
        missing = torch.from_numpy(np.flatnonzero(~self._seen.cpu().numpy()))
        if len(missing):
            captured[missing.numpy()], observed[missing.numpy()] = \
                recorder.rank_users_both(missing)
        recorder.record(self._epoch, score, captured)
        self._last_observed, self._captured = observed, None
        synchronize(device)
        self.record_seconds += time.perf_counter() - start + self._stopwatch.seconds
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
            with self._stopwatch:  # no host sync per batch: device time, read once
                recorder = self.recorder
                rows = interaction[recorder.uid_field].to(recorder.device)
                # RecBole's mask hides a user's training items only when they are not also
                # validation positives (a pair logged twice can be in both parts): masked
                # again here, since training items never enter the recorded lists
                lists = recorder.top_lists(scores, recorder.training_mask(rows, scores.device))
                raw = self._raw_scores.view(len(rows), -1)
                self._captured[rows] = lists.to(recorder.device)
                self._observed[rows] = recorder.training_item_lists(rows, raw).to(
                    recorder.device)
                self._seen[rows] = True
        return interaction, scores, positive_u, positive_i

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        self.best_observed = getattr(self, "_last_observed", None)


def make_trainer(config, model, recorder=None):
    """The trainer of ``config['model']`` (see ``registry.get_trainer``), keeping its best
    state in memory, and recording into ``recorder`` when one is given."""
    base = get_trainer(config["MODEL_TYPE"], config["model"])
    mixin = TrajectoryMixin if recorder is not None else BestStateMixin
    if not issubclass(base, mixin):
        prefix = "Recording" if recorder is not None else "BestState"
        base = type(f"{prefix}{base.__name__}", (mixin, base), {})
    trainer = base(config, model)
    if recorder is not None:
        trainer.recorder = recorder
    return trainer
