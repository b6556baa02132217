"""On-disk trajectory store: one directory per (split fingerprint, teacher and its settings).

Layout::

    <root>/<dataset>/<fingerprint[:16]>/<Teacher>-<settings hash[:12]>/
        rankings.npy   (C, U, M) top-M non-training items per snapshot and user (0 = empty)
        observed.npy   (U, M)    the converged teacher's ranking of each user's training items
        manifest.json  teacher, settings, seed, snapshot epochs and metrics, M, C, fingerprint,
                       versions, and the size and SHA-256 of each array file

Arrays load with ``allow_pickle=False``. A store is written in a temporary sibling directory
and renamed into place only when complete (the manifest is written last), so an interrupted
write leaves nothing that loads as valid. A store whose files do not match their manifest, or
whose manifest names another split or other settings, is refused with a ``StoreError``.
"""

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

from recbole_hetcomp.atomic import file_sha256

from recbole_hetcomp.errors import HetCompError

FORMAT_VERSION = 1
ARRAYS = ("rankings", "observed")
#: Manifest keys every reader relies on (a manifest without one is refused like a corrupt one).
REQUIRED_KEYS = ("teacher", "settings_hash", "split_fingerprint", "n_users", "n_items", "M", "C",
                 "snapshot_epochs", "best_epoch", "test_result", "best_valid_result",
                 "train_seconds", "record_seconds", "n_params", "inference_ms_per_1000_users",
                 "files")


class StoreError(HetCompError):
    """A trajectory store that is corrupt, truncated, or made for another split or settings."""


def settings_hash(settings):
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Trajectory:
    """A teacher's recorded trajectory, as loaded from (or about to go to) the store."""

    rankings: np.ndarray  # (C, U, M)
    observed: np.ndarray  # (U, M)
    manifest: dict
    #: The trained teacher when it was trained in this run (never stored: the store keeps
    #: rankings only), so that it can be packaged (``export_teachers``).
    model: object = field(default=None, repr=False, compare=False)

    @property
    def teacher(self):
        return self.manifest["teacher"]


class TrajectoryStore:
    """Directory tree of recorded teacher trajectories.

    Parameters
    ----------
    root : str
        Root directory (``trajectory_dir``).
    keep_aside : int
        Set-aside copies (refused or replaced stores) kept per store; older ones are deleted.
    """

    def __init__(self, root, keep_aside=3):
        self.root = root
        self.keep_aside = keep_aside

    def path_for(self, dataset, fingerprint, teacher, settings):
        return os.path.join(self.root, dataset, fingerprint[:16],
                            f"{teacher}-{settings_hash(settings)[:12]}")

    # --- writing -------------------------------------------------------------------------
    def save(self, path, trajectory):
        """Write ``trajectory`` at ``path`` atomically; an existing store there is replaced."""
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        try:
            files = {}
            for name in ARRAYS:
                array = np.ascontiguousarray(getattr(trajectory, name))
                file = os.path.join(tmp, f"{name}.npy")
                np.save(file, array, allow_pickle=False)
                files[f"{name}.npy"] = {"shape": list(array.shape), "dtype": str(array.dtype),
                                        "bytes": os.path.getsize(file), "sha256": file_sha256(file)}
            manifest = dict(trajectory.manifest, format=FORMAT_VERSION, files=files,
                            created=datetime.datetime.now(datetime.timezone.utc).isoformat())
            with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2, sort_keys=True, default=str)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(path):
                self._set_aside(path, "replaced")
            os.replace(tmp, path)
            trajectory.manifest = manifest
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _set_aside(self, path, why):
        """Move an old store out of the way instead of deleting it, keeping the last
        ``keep_aside`` set-aside copies of this store (older ones are deleted)."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        aside = f"{path}.{why}-{stamp}"
        os.replace(path, aside)
        copies = sorted(self.set_aside_copies(path), key=lambda p: p.rsplit("-", 3)[-3:])
        for old in copies[:max(0, len(copies) - self.keep_aside)]:
            shutil.rmtree(old, ignore_errors=True)
        return aside

    def set_aside(self, path, why="corrupt"):
        return self._set_aside(path, why)

    @staticmethod
    def set_aside_copies(path):
        """Set-aside copies of the store at ``path`` (``<path>.<why>-<stamp>``)."""
        parent, base = os.path.split(path)
        if not os.path.isdir(parent):
            return []
        return [os.path.join(parent, n) for n in os.listdir(parent)
                if n.startswith(base + ".") and not n.startswith(".")
                and os.path.isdir(os.path.join(parent, n))]

    @staticmethod
    def remove_leftovers(path):
        """Delete temporary directories that a killed write of ``path`` left; returns them."""
        parent, base = os.path.split(path)
        if not os.path.isdir(parent):
            return []
        left = [os.path.join(parent, n) for n in os.listdir(parent)
                if n.startswith(f".{base}.tmp-")]
        for tmp in left:
            shutil.rmtree(tmp, ignore_errors=True)
        return left

    # --- reading -------------------------------------------------------------------------
    @staticmethod
    def exists(path):
        return os.path.isfile(os.path.join(path, "manifest.json"))

    def load(self, path, fingerprint=None, settings=None):
        """Load and verify the store at ``path``.

        Parameters
        ----------
        fingerprint : str, optional
            Split fingerprint the store must have been recorded on.
        settings : dict, optional
            Teacher settings the store must have been recorded with.

        Raises
        ------
        StoreError
            Missing, truncated or corrupt files, or a different split or settings.
        """
        manifest_path = os.path.join(path, "manifest.json")
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
        except FileNotFoundError:
            raise StoreError(f"no trajectory store at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"corrupt manifest {manifest_path} ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
            raise StoreError(f"{manifest_path} is not a version-{FORMAT_VERSION} manifest")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing or not isinstance(manifest["files"], dict):
            raise StoreError(f"{manifest_path} lacks {', '.join(missing) or 'a files table'}")
        if fingerprint is not None and manifest.get("split_fingerprint") != fingerprint:
            raise StoreError(
                f"store {path} was recorded on another split (fingerprint "
                f"{str(manifest.get('split_fingerprint'))[:12]}, this run "
                f"{fingerprint[:12]})")
        if settings is not None and manifest.get("settings_hash") != settings_hash(settings):
            raise StoreError(f"store {path} was recorded with other teacher settings")
        arrays = {}
        for name in ARRAYS:
            file = os.path.join(path, f"{name}.npy")
            expected = manifest.get("files", {}).get(f"{name}.npy")
            if expected is None or not os.path.isfile(file):
                raise StoreError(f"store {path} lacks {name}.npy")
            if os.path.getsize(file) != expected["bytes"] or file_sha256(file) != expected["sha256"]:
                raise StoreError(f"{file} is truncated or corrupt (size or checksum differs "
                                 "from the manifest)")
            try:
                array = np.load(file, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise StoreError(f"{file} cannot be read ({exc})") from None
            if list(array.shape) != expected["shape"] or str(array.dtype) != expected["dtype"]:
                raise StoreError(f"{file} has shape/dtype {array.shape}/{array.dtype}, the "
                                 f"manifest says {expected['shape']}/{expected['dtype']}")
            arrays[name] = array
        _check_contents(path, manifest, arrays)
        return Trajectory(arrays["rankings"], arrays["observed"], manifest)


def _check_contents(path, manifest, arrays):
    """Shapes and ids that a checksum cannot vouch for: a manifest written by other code (or
    edited) may match its files yet describe arrays the knowledge code would index out of
    range."""
    rankings, observed = arrays["rankings"], arrays["observed"]
    try:
        c, u, m, n_items = (int(manifest[k]) for k in ("C", "n_users", "M", "n_items"))
    except (TypeError, ValueError):
        raise StoreError(f"store {path}: C, n_users, M and n_items must be integers") from None
    if rankings.shape != (c, u, m) or observed.shape != (u, m):
        raise StoreError(f"store {path}: arrays of shape {rankings.shape} and {observed.shape} "
                         f"do not match C={c}, n_users={u}, M={m}")
    for name, array in arrays.items():
        if array.dtype.kind not in "iu":
            raise StoreError(f"store {path}: {name}.npy holds {array.dtype}, not item ids")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= n_items):
            raise StoreError(f"store {path}: {name}.npy holds item ids outside [0, {n_items})")
