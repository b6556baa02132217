"""The model package: a trained model as a directory that is safe to load and needs no dataset.

    <checkpoint_dir>/<Model>-<dataset>-<YYYYmmdd-HHMMSS>/
        manifest.json       format, version, and the size and sha256 of every other file
        model_card.json     model class, sizes, config to rebuild it, report row, split
                            fingerprint, versions, what each file holds
        weights.pt          the model's state_dict (and tensor-valued other parameters): plain
                            tensors only, read with torch.load(weights_only=True)
        user_tokens.json    internal user id -> the dataset's user token (index 0: [PAD])
        item_tokens.json    internal item id -> the dataset's item token
        known_indptr.npy    CSR of each user's known items (every interaction of the filtered
        known_indices.npy   dataset: train, valid and test), for exclusion at serving time
        user_factors.npy    factorised scorer (``factors.py``), when the model has one:
        item_factors.npy    score(u, i) = user_factors[u] . item_factors[i]
        item_bias.npy         + item_bias[i] + user_bias[u]   (the biases are optional)
        user_bias.npy
        index.faiss         optional exact inner-product index of the items (``index.py``)

Nothing here executes code when loaded: JSON, ``.npy`` read with ``allow_pickle=False``,
tensors read with ``weights_only=True``, and faiss's own index format. The package is staged in
a temporary directory beside its destination and renamed into place, so a reader never sees
half of one (a later write removes what a killed one left: ``remove_stale_stages``);
``read_manifest`` checks every file against the manifest before it is used.
"""

import datetime
import json
import os
import re
import shutil
import socket
import tempfile
import time

import numpy as np
import torch

from recbole_hetcomp.atomic import file_sha256, save_weights
from recbole_hetcomp.errors import HetCompError

FORMAT = "recbole-hetcomp-model-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CARD = "model_card.json"
WEIGHTS = "weights.pt"
FACTOR_FILES = ("user_factors.npy", "item_factors.npy", "item_bias.npy", "user_bias.npy")
INDEX = "index.faiss"

#: Seconds after which a staging folder that cannot be traced to a dead writer is stale.
STALE_AFTER = 24 * 3600
# Host names go in staging folder names: keep only what cannot be mistaken for a separator.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]
_STAGE = re.compile(r"\..+\.(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9-]*)\.[^.]+\.partial")

KNOWN_ITEMS_NOTE = ("every interaction of the filtered dataset (train, valid and test): what a "
                    "user has already seen when the model serves them")


class PackageError(HetCompError):
    """A package that is missing, corrupt, truncated, tampered with or not a model package."""


# --- writing ---------------------------------------------------------------------------------
def package_name(model_name, dataset, when=None):
    when = when or datetime.datetime.now()
    return f"{model_name}-{dataset}-{when.strftime('%Y%m%d-%H%M%S')}"


def write_package(root, model, dataset, card, factors=None, index_bytes=None, name=None):
    """Write a package for ``model`` under ``root``; returns its path.

    Parameters
    ----------
    root : str
        Directory the package goes in (``checkpoint_dir``).
    model : recbole AbstractRecommender
        The trained model (its best state).
    dataset : recbole Dataset
        The whole filtered dataset (tokens and every user's known items).
    card : dict
        The model card's content (``card.model_card``); format fields are added here.
    factors : tuple, optional
        (P, Q, item_bias, user_bias) CPU tensors from ``factors.serving_factors``.
    index_bytes : bytes, optional
        A serialised faiss index of the item factors.
    """
    name = name or package_name(card["model"], card["dataset"])
    os.makedirs(root, exist_ok=True)
    final = _free_path(os.path.join(root, name))
    # The writer's pid and host in the name let a later write tell a killed write's leftover
    # from a live one (``remove_stale_stages``).
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.{os.getpid()}@{_HOST}.",
                             suffix=".partial", dir=root)
    try:
        files = _write_contents(stage, model, dataset, factors, index_bytes)
        card = dict(card, format=FORMAT, format_version=FORMAT_VERSION,
                    package=os.path.basename(final), files=files,
                    known_items=KNOWN_ITEMS_NOTE)
        _write_json(os.path.join(stage, CARD), card)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "files": {f: _file_entry(os.path.join(stage, f))
                              for f in sorted(os.listdir(stage))}}
        _write_json(os.path.join(stage, MANIFEST), manifest)
        for entry in os.listdir(stage):
            with open(os.path.join(stage, entry), "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(stage, 0o755)
        os.rename(stage, final)  # atomic on one filesystem; refuses to replace a directory
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def remove_stale_stages(root):
    """Delete the staging folders (``.<name>.<pid>@<host>.<random>.partial``) that killed
    package writes left in ``root``; returns them.

    A folder is stale when its writer ran on this host and is gone, or, for one from another
    host (or from before the pid was in the name), when it was last changed more than
    ``STALE_AFTER`` seconds ago: a write takes seconds, so a live writer's folder is never
    removed.
    """
    if not os.path.isdir(root):
        return []
    removed = []
    for entry in sorted(os.listdir(root)):
        folder = os.path.join(root, entry)
        if (not (entry.startswith(".") and entry.endswith(".partial"))
                or os.path.islink(folder) or not os.path.isdir(folder)):
            continue
        writer = _STAGE.fullmatch(entry)
        if writer and writer["host"] == _HOST:
            stale = not _running(int(writer["pid"]))
        else:
            try:
                stale = time.time() - os.stat(folder).st_mtime > STALE_AFTER
            except OSError:  # removed meanwhile
                continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's: not ours to judge
        return True
    return True


def _free_path(path):
    # Two packages of one model and dataset in the same second get -2, -3, ...
    candidate, n = path, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def _write_contents(stage, model, dataset, factors, index_bytes):
    """Write everything but the card and manifest; returns {file: what it holds}."""
    files = {}
    save_weights(plain_state(model), os.path.join(stage, WEIGHTS))
    files[WEIGHTS] = "state_dict of the model (torch.load(..., weights_only=True))"
    uid, iid = dataset.uid_field, dataset.iid_field
    _write_json(os.path.join(stage, "user_tokens.json"),
                [str(t) for t in dataset.field2id_token[uid]])
    _write_json(os.path.join(stage, "item_tokens.json"),
                [str(t) for t in dataset.field2id_token[iid]])
    files["user_tokens.json"] = "internal user id -> user token"
    files["item_tokens.json"] = "internal item id -> item token"
    indptr, indices = known_items_csr(dataset)
    np.save(os.path.join(stage, "known_indptr.npy"), indptr)
    np.save(os.path.join(stage, "known_indices.npy"), indices)
    files["known_indptr.npy"] = "CSR row pointers of each user's known items (int64)"
    files["known_indices.npy"] = "CSR item ids of each user's known items (int64, sorted)"
    if factors is not None:
        for filename, tensor in zip(FACTOR_FILES, factors):
            if tensor is not None:
                np.save(os.path.join(stage, filename),
                        tensor.detach().cpu().float().numpy())
                files[filename] = "factorised scorer part (float32)"
    if index_bytes is not None:
        with open(os.path.join(stage, INDEX), "wb") as f:
            f.write(index_bytes)
        files[INDEX] = "faiss IndexFlatIP over [item_factors, item_bias] (exact)"
    return files


def known_items_csr(dataset):
    """(indptr, indices): each user's distinct items over the whole dataset, sorted by id."""
    users = dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64)
    items = dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64)
    pairs = np.unique(users * dataset.item_num + items)
    users, items = pairs // dataset.item_num, pairs % dataset.item_num
    indptr = np.zeros(dataset.user_num + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=dataset.user_num), out=indptr[1:])
    return indptr, items.astype(np.int64)


def plain_state(model):
    """The model's state as a flat dict of tensors (what weights_only=True reads)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    other = model.other_parameter() if hasattr(model, "other_parameter") else None
    for key, value in (other or {}).items():
        # Tensor-valued caches (LightGCN's propagated embeddings, EASE's item similarity) are
        # kept as tensors; anything else (scipy matrices) is rebuilt by the model's __init__.
        if isinstance(value, torch.Tensor) and value.layout == torch.strided:
            state[f"__other__.{key}"] = value.detach().cpu()
        elif isinstance(value, np.ndarray) and value.dtype != object:
            state[f"__other__.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def _write_json(path, value):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=1, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _file_entry(path):
    return {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}


# --- reading ---------------------------------------------------------------------------------
def read_manifest(path):
    """The verified manifest of the package at ``path`` (every file's size and sha256 checked).

    Raises PackageError naming what is wrong: not a directory, no manifest (foreign), another
    format or version, a malformed manifest, a file missing, truncated, or whose content does
    not match its hash.
    """
    if os.path.isfile(path) and path.endswith(".pth"):
        # what run_recbole saves: a pickle (model, optimizer, its Config), never loaded here
        raise PackageError(f"'{path}' is a RecBole checkpoint, not a model package: it is a "
                           "pickle and is never loaded; train with run_hetcomp.py "
                           "(export_model: True) and give the package folder it names")
    if not os.path.isdir(path):
        raise PackageError(f"no model package at '{path}': give the directory the run's report "
                           "names (under checkpoint_dir, e.g. saved/HetCompStudent-ml-100k-...)")
    manifest = _read_json(path, MANIFEST, what="manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageError(f"'{path}' is not a recbole-hetcomp model package (its manifest "
                           "does not name the format)")
    _check_version(path, manifest.get("format_version"))
    files = manifest.get("files")
    if not isinstance(files, dict) or CARD not in files:
        raise PackageError(f"'{path}': the manifest lists no model card; the package is damaged")
    for name, entry in files.items():
        if not isinstance(name, str) or os.path.basename(name) != name or name.startswith("."):
            raise PackageError(f"'{path}': the manifest names a file outside the package "
                               f"({name!r}); refusing it")
        if not (isinstance(entry, dict) and _is_count(entry.get("bytes"))
                and isinstance(entry.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
            raise PackageError(f"'{path}': the manifest is malformed (the entry of {name} needs "
                               "an integer 'bytes' and a hex 'sha256'); the package is damaged")
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise PackageError(f"'{path}' is incomplete: {name} is missing")
        size = os.path.getsize(file)
        if size != entry["bytes"]:
            raise PackageError(f"'{path}' is truncated or altered: {name} has {size} bytes, "
                               f"the manifest says {entry['bytes']}")
        if file_sha256(file) != entry["sha256"]:
            raise PackageError(f"'{path}' is corrupt or was modified: {name} does not match its "
                               "sha256 in the manifest")
    return manifest


def _check_version(path, version):
    if not _is_count(version):
        raise PackageError(f"'{path}': the manifest is malformed (format_version {version!r} is "
                           "not a number); the package is damaged")
    if version == FORMAT_VERSION:
        return
    if version < FORMAT_VERSION:
        raise PackageError(f"'{path}' is a version {version} package, written by an older "
                           f"recbole-hetcomp; this one reads version {FORMAT_VERSION}: export it "
                           "again with this version (rerun the run that wrote it)")
    raise PackageError(f"'{path}' is a version {version} package, newer than this "
                       f"recbole-hetcomp reads (version {FORMAT_VERSION}): upgrade recbole-hetcomp")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_card(path, verify=True):
    """The model card of the package at ``path``.

    With ``verify``, the package is first checked against its manifest (``read_manifest``) and
    every file the card lists must be covered by the manifest: loaders read only files the card
    lists, so none of them is read without its sha256 having been checked.
    """
    manifest = read_manifest(path) if verify else None
    card = _read_json(path, CARD, what="model card")
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise PackageError(f"'{path}': the model card is not a recbole-hetcomp model card")
    files = card.get("files")
    if not isinstance(files, dict) or not all(isinstance(name, str) for name in files):
        raise PackageError(f"'{path}': the model card is malformed (its 'files' is not a "
                           "mapping of file names); the package is damaged")
    if verify:
        unchecked = sorted(set(files) - set(manifest["files"]))
        if unchecked:
            raise PackageError(f"'{path}' is incomplete or was modified: the manifest has no "
                               f"sha256 for {', '.join(unchecked)}; refusing to read it unchecked")
    return card


def require_files(path, card, names):
    """Refuse a package whose card does not list each of ``names`` (what a loader will read)."""
    missing = [name for name in names if name not in card["files"]]
    if missing:
        raise PackageError(f"'{path}' is incomplete: its model card lists no {', '.join(missing)}"
                           "; the package is damaged")


def card_sizes(path, card):
    """(n_users, n_items) of the card, padding ids included, checked to be counts."""
    sizes = card.get("sizes")
    sizes = sizes if isinstance(sizes, dict) else {}
    n_users, n_items = sizes.get("n_users"), sizes.get("n_items")
    if not (_is_count(n_users) and _is_count(n_items) and n_users > 0 and n_items > 0):
        raise PackageError(f"'{path}': the model card is malformed (sizes.n_users and "
                           "sizes.n_items must be positive integers); the package is damaged")
    return n_users, n_items


def read_array(path, name, dtype_kind, ndim):
    """``name`` (.npy) of the package, never unpickled, with its dtype kind and rank checked."""
    try:
        array = np.load(os.path.join(path, name), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PackageError(f"'{path}': {name} is not a valid array file ({exc})") from None
    if array.dtype.kind not in dtype_kind or array.ndim != ndim:
        raise PackageError(f"'{path}': {name} holds {array.dtype} with {array.ndim} dimensions, "
                           f"not what a package holds")
    return array


def read_tokens(path, name, expected):
    tokens = _read_json(path, name, what=name)
    if (not isinstance(tokens, list) or len(tokens) != expected
            or not all(isinstance(t, str) for t in tokens)):
        raise PackageError(f"'{path}': {name} does not hold {expected} tokens")
    return tokens


def read_weights(path):
    """The package's state dict, read with ``weights_only=True`` (tensors, never code)."""
    try:
        state = torch.load(os.path.join(path, WEIGHTS), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing error
        raise PackageError(f"'{path}': {WEIGHTS} cannot be read as plain tensors "
                           f"({type(exc).__name__}); the package is damaged") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PackageError(f"'{path}': {WEIGHTS} is not a state dict of tensors")
    return state


def _read_json(path, name, what):
    file = os.path.join(path, name)
    if not os.path.isfile(file):
        raise PackageError(f"'{path}' is not a recbole-hetcomp model package (no {name})")
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise PackageError(f"'{path}': the {what} ({name}) is not valid JSON; the package is "
                           "damaged") from None
