"""Config layering, plugin-first model lookup and refusal of malformed values."""

import pytest

from recbole_hetcomp.config import Config
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.model import CML, NeuMF


def test_plugin_yaml_and_priorities(tiny, tmp_path):
    _, base = tiny
    config = Config("CML", "tiny", config_dict=base)
    assert config.model_class is CML
    assert "margin" in config.final_config_dict  # from properties/model/CML.yaml
    assert config["topk"] == [10, 20, 50]  # properties/overall.yaml over RecBole's [10]
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("learning_rate: 0.5\nepochs: 7\n")
    config = Config("CML", "tiny", [str(cfg_file)], dict(base, epochs=9),
                    cmd_args=["--learning_rate=0.25"])
    assert config["learning_rate"] == 0.25  # command line > file
    assert config["epochs"] == 9            # dict > file


def test_plugin_first_then_recbole(tiny):
    _, base = tiny
    assert Config("NeuMF", "tiny", config_dict=base).model_class is NeuMF
    assert Config("NeuMF", "tiny", config_dict=base)["mlp_hidden_size"]  # RecBole's NeuMF.yaml
    from recbole.model.general_recommender import BPR

    assert Config("BPR", "tiny", config_dict=base).model_class is BPR


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "NoSuchModel"}, "unknown model 'NoSuchModel'"),
    ({"model": "SASRec"}, "sequential model"),
    ({"cmd_args": ["--learning_rate=abc"]}, "malformed value for 'learning_rate'"),
    ({"cmd_args": ["--epochs=1.5"]}, "malformed value for 'epochs'"),
    ({"cmd_args": ["epochs"]}, "unrecognised argument"),
    ({"config_file_list": ["missing.yaml"]}, "does not exist"),
])
def test_bad_input_is_one_clear_error(tiny, kwargs, message):
    _, base = tiny
    args = {"model": "BPR", "dataset": "tiny", "config_dict": base, **kwargs}
    with pytest.raises(HetCompError, match=message):
        Config(**args)


def test_malformed_yaml(tiny, tmp_path):
    _, base = tiny
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\nlearning_rate: 0.1\n")
    with pytest.raises(HetCompError, match="malformed YAML"):
        Config("BPR", "tiny", [str(bad)], base)
