"""Finished seeds of a pipeline run, kept on disk until the run completes.

A multi-seed run that is stopped (Ctrl-C, a killed job, a failed Ray worker) keeps the seeds it
had finished: each seed's rows (the student, the baseline, the ablations and distillation
baselines), their histories and the best-state weights of its student and baseline are written
as soon as the seed is done, and the same run started again trains only the missing seeds.

Layout (under the run's ``checkpoint_dir``)::

    run-state/<dataset>-<key[:16]>/
        seed-<seed>.json             results and histories (numbers and names only), the key,
                                     the size and SHA-256 of each weights file; written last
        seed-<seed>-<row>.pth        best-state weights (``package.plain_state``), read with
                                     ``torch.load(weights_only=True)``

The key is a hash of everything that decides a seed's outcome: the split fingerprint, each
teacher's name, settings hash and the SHA-256 of its recorded lists, the teacher weights, the
run's resolved configuration (the student's, and through it the baseline's and the variants')
and the package versions; keys that cannot change a seed's numbers (the seed list, workers,
threads, log level, export switches, paths of outputs) are left out, so a run resumed with
more seeds or more workers reuses what it had. Every file is written atomically; a file that
does not verify is ignored (its seed is trained again), never half-read. The folder is removed
when the run's report is written: a completed run run again trains every seed again, as
before this state existed.
"""

import hashlib
import json
import os
import shutil

import recbole
import torch

import recbole_hetcomp
from recbole_hetcomp.atomic import (atomic_path, file_sha256, save_weights,
                                    write_text_atomically)

FORMAT_VERSION = 1

#: Run keys that do not change any seed's numbers (left out of the key): the seed list and seed
#: (the key names the seed), how the run is spread over processes and threads (last bits aside:
#: see README "Running teachers and seeds in parallel"; the device chosen is in the key), what
#: is logged and exported, and where the teachers' lists are kept (their hashes are in the key).
NOT_OUTCOME_KEYS = {"seeds", "seed", "teacher_workers", "seed_workers", "teacher_gpus",
                    "seed_gpus", "ray_address", "torch_threads", "gpu_id", "use_gpu", "state",
                    "show_progress", "checkpoint_dir", "export_model", "export_teachers",
                    "export_index", "log_wandb", "wandb_project", "save_checkpoint",
                    "trajectory_dir", "trajectory_keep_aside", "trajectory_on_error",
                    "config_files", "local_rank", "single_spec"}
#: What every seed file holds (a file without one is refused like a corrupt one).
REQUIRED = ("format", "key", "seed", "student", "run", "baseline", "variants", "weights")


def run_key(config, split, trajectories, weights):
    """Hex SHA-256 of everything that decides a seed's outcome (see the module docstring)."""
    resolved = {k: v for k, v in config.final_config_dict.items() if k not in NOT_OUTCOME_KEYS}
    teachers = [{"teacher": t.teacher, "settings_hash": t.manifest["settings_hash"],
                 "files": {name: entry["sha256"]
                           for name, entry in sorted(t.manifest["files"].items())}}
                for t in trajectories]
    key = {"split_fingerprint": split.fingerprint, "teachers": teachers,
           "weights": None if weights is None else [int(w) for w in weights.tolist()],
           "config": resolved,
           "versions": {"recbole_hetcomp": recbole_hetcomp.__version__,
                        "recbole": recbole.__version__, "torch": torch.__version__}}
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SeedStore:
    """The finished seeds of one run configuration.

    Parameters
    ----------
    config : Config
        The run's (the student's) Config.
    split : Split
    trajectories : list of Trajectory
        The run's teachers, as stored (their manifests name their files' hashes).
    weights : torch.Tensor or None
        The run's teacher weights.
    logger : logging.Logger
    """

    def __init__(self, config, split, trajectories, weights, logger):
        self.key = run_key(config, split, trajectories, weights)
        self.folder = os.path.join(config["checkpoint_dir"], "run-state",
                                   f"{config['dataset']}-{self.key[:16]}")
        self.logger = logger

    def _json(self, seed):
        return os.path.join(self.folder, f"seed-{seed}.json")

    def _weights(self, seed, row):
        return os.path.join(self.folder, f"seed-{seed}-{row}.pth")

    def save(self, outcome):
        """Write a seed's outcome: weights first, the JSON that vouches for them last."""
        seed = outcome["seed"]
        files = {}
        for row, state in outcome["states"].items():
            if state is None:
                continue
            path = self._weights(seed, row)
            with atomic_path(path) as tmp:
                save_weights(state, tmp)
            files[row] = {"file": os.path.basename(path), "bytes": os.path.getsize(path),
                          "sha256": file_sha256(path)}
        record = {"format": FORMAT_VERSION, "key": self.key, "seed": seed,
                  **{k: outcome[k] for k in ("student", "run", "baseline", "variants")},
                  "weights": files}
        # allow_nan: a diverged model's NaN metrics are results too (json reads them back).
        write_text_atomically(self._json(seed), json.dumps(record, indent=1, sort_keys=True))
        return self._json(seed)

    def load(self, seed):
        """The outcome of ``seed`` finished by an earlier run of this configuration, or None
        (none, or a file that does not verify: the seed is trained again)."""
        path = self._json(seed)
        if not os.path.isfile(path):
            return None
        try:
            return self._read(path, seed)
        except _Unusable as exc:
            self.logger.warning(f"ignoring the saved results of seed {seed} ({path}: {exc}); "
                                "training it again")
            return None

    def _read(self, path, seed):
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            raise _Unusable(f"not readable JSON ({type(exc).__name__})") from None
        if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
            raise _Unusable("not a seed file of this version")
        if record["format"] != FORMAT_VERSION or record["key"] != self.key \
                or record["seed"] != seed:
            raise _Unusable("written for another run configuration or seed")
        states = {}
        for row, entry in record["weights"].items():
            file = os.path.join(self.folder, os.path.basename(str(entry.get("file"))))
            if not os.path.isfile(file) or os.path.getsize(file) != entry.get("bytes") \
                    or file_sha256(file) != entry.get("sha256"):
                raise _Unusable(f"its weights {os.path.basename(file)} are missing or differ "
                                "from the recorded checksum")
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file means: train again
                raise _Unusable(f"{os.path.basename(file)} is not a plain state dict "
                                f"({type(exc).__name__})") from None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                                      for v in state.values()):
                raise _Unusable(f"{os.path.basename(file)} is not a state dict of tensors")
            states[row] = state
        outcome = {k: record[k] for k in ("seed", "student", "run", "baseline", "variants")}
        outcome["states"] = states
        return outcome

    def clear(self):
        """Forget this configuration's finished seeds (the run is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = os.path.dirname(self.folder)
        if os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


class _Unusable(Exception):
    """A saved seed that cannot be trusted: it is trained again, not an error of the user."""
