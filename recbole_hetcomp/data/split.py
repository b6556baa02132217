"""One train/valid/test split shared by every model of a run, and its fingerprint.

RecBole shuffles with the model's ``seed`` while splitting, so two teachers with different seeds
would see different splits. Here the split is built once under ``split_seed`` and every model
gets its own data loaders over the same split datasets; the global seed is then reset to the
model's ``seed``.
"""

import hashlib
import importlib
import json
import logging
import os

import numpy as np
from recbole.data.dataloader import TrainDataLoader
from recbole.data.utils import create_samplers, get_dataloader
from recbole.sampler import Sampler
from recbole.utils import init_seed

from recbole_hetcomp.data.availability import ensure_dataset
from recbole_hetcomp.data.sampling import VectorisedSampler, VectorisedTrainDataLoader
from recbole_hetcomp.errors import HetCompError


class Split:
    """A dataset and its three split parts, with a fingerprint of what the models see.

    Attributes
    ----------
    dataset : recbole.data.dataset.Dataset
        The whole (filtered) dataset.
    train, valid, test : Dataset
        The split parts (RecBole's ``dataset.build()``).
    fingerprint : str
        SHA-256 of the split's interactions, id vocabularies and evaluation settings.
    """

    def __init__(self, dataset, parts, eval_settings):
        self.dataset = dataset
        self.train, self.valid, self.test = parts
        self.fingerprint = split_fingerprint(dataset, parts, eval_settings)

    @property
    def n_users(self):
        return self.dataset.user_num

    @property
    def n_items(self):
        return self.dataset.item_num


def eval_settings(config):
    """The settings that shape the split and its evaluation."""
    return {
        "dataset": config["dataset"],
        "eval_args": config["eval_args"],
        "split_seed": config["split_seed"],
        "filters": {k: config[k] for k in ("user_inter_num_interval", "item_inter_num_interval",
                                           "val_interval", "load_col", "rm_dup_inter")},
    }


def split_fingerprint(dataset, parts, settings):
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for field in (dataset.uid_field, dataset.iid_field):
        digest.update("\x1f".join(map(str, dataset.field2id_token[field])).encode())
    for part in parts:
        users = part.inter_feat[dataset.uid_field].numpy().astype(np.int64)
        items = part.inter_feat[dataset.iid_field].numpy().astype(np.int64)
        # Order-free: the same interactions in any order give the same fingerprint.
        order = np.lexsort((items, users))
        digest.update(b"|part|")
        digest.update(users[order].tobytes())
        digest.update(items[order].tobytes())
    return digest.hexdigest()


def build_split(config, logger=None):
    """Load the dataset and split it under ``config['split_seed']``.

    Raises HetCompError when the dataset is not on disk (with the path to put it at).
    """
    ensure_dataset(config, logger)
    init_seed(config["split_seed"], config["reproducibility"])
    try:
        dataset = load_dataset(config, logger)
    except (ValueError, FileNotFoundError) as exc:
        raise HetCompError(f"cannot load dataset '{config['dataset']}': {exc}") from None
    if dataset.inter_num == 0:
        raise HetCompError(f"dataset '{config['dataset']}' has no interactions left after "
                           "filtering: check its .inter file and the *_inter_num_interval keys")
    _warn_repeated_pairs(dataset, logger)
    order = (config["eval_args"] or {}).get("order")
    if order == "TO" and dataset.time_field not in dataset.field2type:
        # RecBole's sort would fail with a ValueError printing a whole batch
        raise HetCompError(f"eval_args order TO sorts by time, but '{dataset.time_field}' "
                           "(TIME_FIELD) is not loaded: add it to load_col, e.g. --load_col="
                           f"\"{{inter: [{dataset.uid_field}, {dataset.iid_field}, "
                           f"{dataset.time_field}]}}\", or use order RO")
    parts = dataset.build()
    sizes = [len(part) if part is not None else 0 for part in parts]
    if len(parts) != 3 or 0 in sizes:
        # RecBole's 'RS' with two ratios builds two parts, 'LS: test_only' an empty validation
        # part; every model here selects its best epoch on validation
        raise HetCompError(f"eval_args split {config['eval_args']['split']} gives "
                           f"{len(parts)} parts of {sizes} interactions: a run needs non-empty "
                           "train, valid and test parts, e.g. split: {RS: [0.8, 0.1, 0.1]} or "
                           "{LS: valid_and_test}")
    if config["drop_unseen_eval_items"]:
        parts = _drop_unseen_items(dataset, parts, logger)
    init_seed(config["seed"], config["reproducibility"])
    if logger:
        logger.info(dataset)
    return Split(dataset, parts, eval_settings(config))


# RecBole's dataset and dataloader caches are pickles: loading one runs whatever code it holds.
_PICKLE_KEYS = ("dataset_save_path", "dataloaders_save_path", "save_dataset",
                "save_dataloaders")


def load_dataset(config, logger=None):
    """RecBole's dataset for ``config``, always built from its atomic files.

    RecBole's ``create_dataset`` first unpickles ``dataset_save_path`` or
    ``<checkpoint_dir>/<dataset>-<Class>.pth`` when such a file exists, so a file dropped there
    would run code. This builds the same dataset class without ever reading a cache: the keys
    that read or write those pickles are refused, and a stray cache file is ignored, saying so.
    """
    for key in _PICKLE_KEYS:
        if config[key]:
            raise HetCompError(f"{key} is not supported: RecBole's dataset and dataloader caches "
                               "are pickles, which recbole-hetcomp never writes or loads; remove "
                               f"{key} (the dataset is rebuilt from its atomic files)")
    module = importlib.import_module("recbole.data.dataset")
    dataset_class = getattr(module, config["model"] + "Dataset", module.Dataset)
    cache = os.path.join(config["checkpoint_dir"],
                         f"{config['dataset']}-{dataset_class.__name__}.pth")
    if os.path.exists(cache):
        (logger or logging.getLogger()).warning(f"ignoring {cache}: RecBole dataset caches are pickles and are never "
                       "loaded by recbole-hetcomp")
    return dataset_class(config)


def _warn_repeated_pairs(dataset, logger):
    """Say when (user, item) pairs occur more than once: the split can then put one pair in
    training and in evaluation, and RecBole's evaluators count such a training item as a hit.
    (Recorded lists and the student's lists leave training items out either way.)"""
    users = np.asarray(dataset.inter_feat[dataset.uid_field], dtype=np.int64)
    items = np.asarray(dataset.inter_feat[dataset.iid_field], dtype=np.int64)
    repeated = len(users) - len(np.unique(users * dataset.item_num + items))
    if repeated:
        (logger or logging.getLogger()).warning(
            f"{repeated} interactions of '{dataset.dataset_name}' repeat a (user, item) pair "
            "already seen: a pair can then be in training and in evaluation at once, and "
            "RecBole counts it as a hit; set rm_dup_inter: first to keep one of each")


def _drop_unseen_items(dataset, parts, logger):
    """Remove valid/test interactions whose item never occurs in training (the paper's protocol)."""
    train, valid, test = parts
    seen = np.zeros(dataset.item_num, dtype=bool)
    seen[train.inter_feat[dataset.iid_field].numpy()] = True
    kept = [train]
    for part in (valid, test):
        mask = seen[part.inter_feat[dataset.iid_field].numpy()]
        if logger:
            logger.info(f"dropping {int((~mask).sum())} evaluation interactions with items "
                        "never seen in training")
        kept.append(part.copy(part.inter_feat[np.flatnonzero(mask)]))
    return kept


def make_loaders(config, split):
    """RecBole train/valid/test data loaders for ``config``'s model over ``split``."""
    parts = [split.train, split.valid, split.test]
    train_sampler, valid_sampler, test_sampler = create_samplers(config, split.dataset, parts)
    train_class = get_dataloader(config, "train")
    if (config["vectorised_loader"] and train_class is TrainDataLoader
            and config["single_spec"] and not config["worker"]):
        # RecBole's batching and negative sampling without their per-item Python loops, same
        # distributions (data/sampling.py). Other loaders (autoencoders' user batches,
        # repeatable or KG samplers, distributed or multi-worker loading) stay RecBole's.
        train_class = VectorisedTrainDataLoader
        if type(train_sampler) is Sampler:
            train_sampler = VectorisedSampler(train_sampler)
    train = train_class(config, split.train, train_sampler, shuffle=config["shuffle"])
    valid = get_dataloader(config, "valid")(config, split.valid, valid_sampler, shuffle=False)
    test = get_dataloader(config, "test")(config, split.test, test_sampler, shuffle=False)
    return train, valid, test
