"""Nothing this plugin reads is unpickled: RecBole's dataset caches are refused or ignored."""

import logging
import os
import pickle

import pytest

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split
from recbole_hetcomp.errors import HetCompError


class _RunsOnLoad:
    """Pickled, it makes unpickling create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_stray_dataset_cache_is_never_unpickled(tiny, tmp_path, caplog):
    _, base = tiny
    config = Config("BPR", "tiny", config_dict=base)
    marker = str(tmp_path / "ran")
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    cache = os.path.join(config["checkpoint_dir"], "tiny-Dataset.pth")
    with open(cache, "wb") as f:
        pickle.dump(_RunsOnLoad(marker), f)
    caplog.set_level(logging.WARNING)
    split = build_split(config)
    assert split.n_users > 1
    assert not os.path.exists(marker)
    assert "ignoring" in caplog.text and "tiny-Dataset.pth" in caplog.text


@pytest.mark.parametrize("key, value", [("dataset_save_path", "x.pth"),
                                        ("dataloaders_save_path", "y.pth"),
                                        ("save_dataset", True), ("save_dataloaders", True)])
def test_pickle_cache_keys_are_refused(tiny, key, value):
    _, base = tiny
    config = Config("BPR", "tiny", config_dict={**base, key: value})
    with pytest.raises(HetCompError, match=key):
        build_split(config)
