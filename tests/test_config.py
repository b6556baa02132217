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
    ({"cmd_args": ["--=3"]}, "unrecognised argument '--=3'"),  # no key: not a key ''
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


# --- one meaning per key, whatever channel it arrives by -----------------------------------
ROUTED = {"embedding_size": 6, "eval_batch_size": 12345, "trajectory_dir": "100-1",
          "topk": [5, 10]}


def _run_config(base, tmp_path, channel):
    """The student's run Config with ROUTED set through one channel (file, dict or command)."""
    if channel == "file":
        path = tmp_path / "mine.yaml"
        path.write_text("embedding_size: 6\neval_batch_size: 12345\ntrajectory_dir: '100-1'\n"
                        "topk: [5, 10]\n")
        return Config("HetCompStudent", "tiny", [str(path)], base)
    if channel == "dict":
        return Config("HetCompStudent", "tiny", config_dict={**base, **ROUTED})
    return Config("HetCompStudent", "tiny", config_dict=base, cmd_args=[
        "--embedding_size=6", "--eval_batch_size=12345", "--trajectory_dir=100-1",
        "--topk=[5,10]"])


@pytest.mark.parametrize("channel", ["file", "dict", "cmd"])
def test_keys_reach_the_same_models_whatever_the_channel(tiny, tmp_path, channel):
    from recbole_hetcomp.pipeline import baseline_config
    from recbole_hetcomp.teachers import teacher_config

    _, base = tiny
    base = {k: v for k, v in base.items() if k not in ROUTED}  # the channel alone sets them
    base["teachers"] = ["BPR", "CML"]
    run = _run_config(base, tmp_path, channel)
    # The student (the model being run) takes every key.
    assert run["embedding_size"] == 6 and run["eval_batch_size"] == 12345
    assert run["trajectory_dir"] == "100-1"  # a string stays a string (not the number 99)
    for name in ("BPR", "CML"):
        own = Config(name, "tiny", config_dict=base)["embedding_size"]
        teacher = teacher_config(run, name)
        assert teacher["embedding_size"] == own != 6  # teachers keep their own size
        # Shared keys (evaluation, store, data) reach every teacher.
        assert teacher["eval_batch_size"] == 12345
        assert teacher["trajectory_dir"] == "100-1"
        assert teacher["topk"] == [5, 10]
        assert teacher["data_path"] == run["data_path"]
    baseline = baseline_config(run, seed=7, learning_rate=0.002)
    assert baseline["embedding_size"] == 6  # the student's size, by design
    assert baseline["eval_batch_size"] == 12345 and baseline["topk"] == [5, 10]
    assert baseline["seed"] == 7 and baseline["learning_rate"] == 0.002


def test_teacher_config_overrides_only_its_teacher(tiny):
    from recbole_hetcomp.teachers import teacher_config

    _, base = tiny
    run = Config("HetCompStudent", "tiny", config_dict={
        **base, "teachers": ["BPR", "CML"],
        "teacher_config": {"default": {"epochs": 3}, "CML": {"embedding_size": 8}}})
    assert teacher_config(run, "CML")["embedding_size"] == 8
    assert teacher_config(run, "CML")["epochs"] == 3
    assert teacher_config(run, "BPR")["embedding_size"] == Config(
        "BPR", "tiny", config_dict=base)["embedding_size"]
    cmd = Config("HetCompStudent", "tiny", config_dict={**base, "teachers": ["BPR", "CML"]},
                 cmd_args=["--teacher_config={CML: {embedding_size: 8}}"])
    assert teacher_config(cmd, "CML")["embedding_size"] == 8


@pytest.mark.parametrize("channel", ["file", "dict", "cmd"])
def test_config_values_never_run_code(tiny, tmp_path, channel):
    from recbole_hetcomp.teachers import teacher_config

    _, base = tiny
    base = {k: v for k, v in base.items() if k != "checkpoint_dir"}
    marker = tmp_path / "ran"
    code = f"__import__('os').system('touch {marker}') or 2"
    if channel == "file":
        path = tmp_path / "evil.yaml"
        path.write_text(f'teacher_config: {{default: {{epochs: "{code}"}}}}\n'
                        f'checkpoint_dir: "{code}"\n')
        run = Config("HetCompStudent", "tiny", [str(path)], {**base, "teachers": ["BPR"]})
    elif channel == "dict":
        run = Config("HetCompStudent", "tiny", config_dict={
            **base, "teachers": ["BPR"], "teacher_config": {"default": {"epochs": code}},
            "checkpoint_dir": code})
    else:
        run = Config("HetCompStudent", "tiny", config_dict={**base, "teachers": ["BPR"]},
                     cmd_args=[f"--checkpoint_dir={code}"])
        with pytest.raises(HetCompError, match="malformed value for 'epochs'"):
            Config("BPR", "tiny", config_dict=base, cmd_args=[f"--epochs={code}"])
    assert run["checkpoint_dir"] == code  # kept as the string it is, never evaluated
    if channel != "cmd":
        with pytest.raises(HetCompError, match="malformed value for 'epochs'"):
            teacher_config(run, "BPR")
    else:
        assert teacher_config(run, "BPR")["checkpoint_dir"] == code
    assert not marker.exists()


def test_config_files_are_read_safely(tiny, tmp_path):
    _, base = tiny
    path = tmp_path / "tagged.yaml"
    path.write_text("learner: !!python/name:os.system\n")
    with pytest.raises(HetCompError, match="malformed YAML"):
        Config("BPR", "tiny", [str(path)], base)
    path.write_text("learning_rate: 1e-3\n")  # RecBole's float notation still reads as a float
    assert Config("BPR", "tiny", [str(path)], base)["learning_rate"] == 0.001


def test_torch_threads_default_leaves_a_core_free(monkeypatch):
    import torch

    from recbole_hetcomp import quick_start

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(quick_start, "_usable_cores", lambda: 4)
        assert quick_start.set_torch_threads(None) == 3
        monkeypatch.setattr(quick_start, "_usable_cores", lambda: 1)
        assert quick_start.set_torch_threads(None) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert quick_start.set_torch_threads(None) == 2  # the user's environment wins
        assert quick_start.set_torch_threads(1) == 1
        for bad in (0, -2, "two", 1.5, True):
            with pytest.raises(HetCompError, match="torch_threads"):
                quick_start.set_torch_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_yaml_null_on_the_command_line_is_none():
    from recbole_hetcomp.config import parse_literal

    assert parse_literal("~") is None and parse_literal("null") is None
    assert parse_literal("None") is None and parse_literal("~x") == "~x"


def test_bare_word_lists_on_the_command_line(tiny):
    # RecBole checks the metric names while the Config is built: the list must be read first.
    _, base = tiny
    config = Config("BPR", "tiny", config_dict=base, cmd_args=[
        "--metrics=[Recall,NDCG,ItemCoverage]", "--teachers=[BPR,CML]"])
    assert config["metrics"] == ["Recall", "NDCG", "ItemCoverage"]
    assert config["teachers"] == ["BPR", "CML"]


@pytest.mark.parametrize("arg, key", [
    ("--teacher_config={default:{epochs:2}}", "'epochs:2'"),
    ("--teacher_config={default: {epochs:2}, CML: {epochs: 3}}", "'epochs:2'"),
    ("--teacher_config={CML: {eval_step: 1, epochs:2}}", "'epochs:2'"),
])
def test_mapping_without_space_after_colon_is_refused(tiny, tmp_path, arg, key):
    # YAML reads {epochs:2} as the key 'epochs:2' with no value: the teachers trained at
    # their full default budgets, after a warning about an unknown key.
    _, base = tiny
    with pytest.raises(HetCompError, match=f"{key} in .* reads as one key without a value"):
        Config("HetCompStudent", "tiny", config_dict=base, cmd_args=[arg])
    config = Config("HetCompStudent", "tiny", config_dict=base,
                    cmd_args=["--teacher_config={default: {epochs: 2}}"])
    assert config["teacher_config"] == {"default": {"epochs": 2}}
    path = tmp_path / "mine.yaml"
    path.write_text(arg[2:].replace("=", ": ", 1) + "\n")
    with pytest.raises(HetCompError, match=f"{key} in config file .* reads as one key"):
        Config("HetCompStudent", "tiny", [str(path)], config_dict=base)


def test_a_refused_model_name_leaves_autograd_anomaly_detection_off():
    """RecBole's SINE module switches autograd's anomaly detection on, for the whole process,
    when its package is imported, which RecBole's lookup of any non-general name does. A user
    whose first try named such a model must not train everything after at anomaly-mode speed.
    In a fresh process: the import happens once per process."""
    import subprocess
    import sys

    probe = ("import torch\n"
             "from recbole_hetcomp.errors import HetCompError\n"
             "from recbole_hetcomp.registry import get_model\n"
             "for name in ('NoSuchModel', 'SASRec'):\n"
             "    try:\n"
             "        get_model(name)\n"
             "    except HetCompError:\n"
             "        pass\n"
             "import sys\n"
             "print('recbole.model.sequential_recommender.sine' in sys.modules, "
             "torch.is_anomaly_enabled())\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False"]  # SINE was imported, and its switch undone
