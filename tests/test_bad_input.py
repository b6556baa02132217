"""Hostile and bad inputs (issue 13): each is refused with one line naming the problem and the
fix, exit status 2, no traceback, before any model trains; hostile values never run code."""

import json
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import recbole_hetcomp.pipeline as pipeline
import recbole_hetcomp.quick_start as quick_start
import recbole_hetcomp.teachers as teachers
from recbole_hetcomp.atomic import file_sha256
from recbole_hetcomp.cli import main
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.report import summary
from recbole_hetcomp.trajectory import Trajectory, TrajectoryStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any model would be trained."""
    def forbidden(config, *args, **kwargs):
        raise AssertionError(f"{config['model']} was trained before the mistake was found")

    for module in (quick_start, teachers, pipeline):
        monkeypatch.setattr(module, "train_model", forbidden)


def common(tiny):
    data_path, base = tiny
    return [f"--data_path={data_path}", "--state=ERROR", "--show_progress=False",
            "--use_gpu=False", f"--trajectory_dir={base['trajectory_dir']}",
            f"--checkpoint_dir={base['checkpoint_dir']}", "--trajectory_topk=10",
            "--teacher_config={'default': {'epochs': 1}}", "--teachers=[BPR,CML]",
            "--hetcomp_k=10", "--hetcomp_l=5", "--rank_top=[10,5]", "--discrepancy_n=10",
            "--epochs=1", "--eval_step=1", "--valid_metric=Recall@10"]


def merged(argv):
    """``argv`` with a later --key=value replacing an earlier one (the CLI refuses repeats)."""
    out = {}
    for arg in argv:
        out[arg.split("=", 1)[0]] = arg
    return list(out.values())


def refused(capsys, argv, *texts):
    """Run the CLI; assert exit 2, one stderr line that contains ``texts``, no traceback."""
    code = main(merged(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


# --- 1-3: hostile values never run code ---------------------------------------------------
MARKER_CODE = "__import__('os').system('touch {marker}') or 2"


@pytest.mark.parametrize("channel", ["cmd", "file"])
def test_1_injected_values_never_run(tiny, tmp_path, capsys, no_training, channel):
    marker = tmp_path / "ran"
    code = MARKER_CODE.format(marker=marker)
    argv = ["--model=HetCompStudent", "--dataset=tiny", *common(tiny)]
    if channel == "cmd":
        argv.append(f"--epochs={code}")
    else:
        cfg = tmp_path / "evil.yaml"
        cfg.write_text(f'teacher_config: {{default: {{epochs: "{code}"}}}}\n'
                       f'checkpoint_dir: "{code}"\n')
        argv = [a for a in argv if not a.startswith(("--teacher_config", "--checkpoint_dir",
                                                     "--epochs"))]
        argv.append(f"--config_files={cfg}")
    refused(capsys, argv, "epochs")
    assert not marker.exists()


def test_2_dataset_pickles_never_load(tiny, tmp_path, capsys, no_training):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                     f"--dataset_save_path={tmp_path / 'evil.pth'}"],
            "dataset_save_path is not supported")
    # a stray cache is ignored (saying so) even when the run goes on to load the dataset
    saved = tiny[1]["checkpoint_dir"]
    os.makedirs(saved, exist_ok=True)
    with open(os.path.join(saved, "tiny-Dataset.pth"), "wb") as f:
        pickle.dump(Evil(), f)
    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                     "--hetcomp_k=5000"], "hetcomp_k=5000")
    assert not marker.exists()


def test_3_yaml_tags_never_build_objects(tiny, tmp_path, capsys, no_training):
    marker = tmp_path / "ran"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f'epochs: !!python/object/apply:os.system ["touch {marker}"]\n')
    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                     f"--config_files={cfg}"], str(cfg))
    assert not marker.exists()


# --- 4-5: everything checkable is checked before any training ------------------------------
@pytest.mark.parametrize("args, texts", [
    # 4: names, list lengths, paths, choices
    (["--teachers=[BPR,Nope]"], ["unknown model 'Nope'"]),
    (["--teachers=[BPR,SASRec]"], ["SASRec", "sequential", "general"]),
    (["--teachers=[BPR,BPR]"], ["listed twice"]),
    (["--baseline=Nope"], ["baseline", "unknown model 'Nope'"]),
    (["--trajectory_topk=0"], ["trajectory_topk must be a positive integer, got 0"]),
    (["--trajectory_topk=5000", "--hetcomp_k=10"], ["trajectory_topk=5000", "catalogue"]),
    (["--hetcomp_k=100", "--trajectory_topk=59"], ["hetcomp_k=100", "catalogue"]),
    (["--hetcomp_k=25"], ["hetcomp_k=25", "2 teachers' top-10", "trajectory_topk"]),
    (["--hetcomp_l=11"], ["hetcomp_l=11", "lower hetcomp_l"]),
    (["--discrepancy_n=11"], ["discrepancy_n=11"]),
    (["--rank_top=[50]"], ["rank_top must be two positive prefix lengths"]),
    (["--rank_top=[0,5]"], ["rank_top must be two positive prefix lengths"]),
    (["--trajectory_on_error=maybe"], ["trajectory_on_error", "rebuild, raise"]),
    # 5: numbers outside their domain
    (["--epochs=0"], ["epochs must be a positive integer, got 0", "--epochs="]),
    (["--learning_rate=-1"], ["learning_rate must be a number > 0, got -1"]),
    (["--embedding_size=0"], ["embedding_size must be a positive integer"]),
    (["--train_batch_size=0"], ["train_batch_size must be a positive integer"]),
    (["--kc_period=0"], ["kc_period must be a positive integer"]),
    (["--hetcomp_k=0"], ["hetcomp_k must be a positive integer"]),
    (["--hetcomp_l=-2"], ["hetcomp_l must be a positive integer"]),
    (["--temperature=0"], ["temperature must be a number > 0"]),
    (["--switch_share=1.5"], ["switch_share must be a number in (0, 1]"]),
    (["--seeds=3"], ["seeds must be a list", "--seeds=[2020,2021,2022]"]),
    (["--seeds=[1,1]"], ["distinct integers"]),
    (["--seeds=[1,2.5]"], ["distinct integers"]),
    (["--teacher_config={'CML': {'epochs': 0}}"], ["teacher CML: epochs", "teacher_config"]),
    (["--teacher_config={'BPR': {'learning_rate': -0.1}}"], ["teacher BPR: learning_rate"]),
    (["--teacher_config={'CML': {'trajectory_topk': 20}}"], ["same trajectory_snapshots"]),
    (["--trajectory_fractions=[0.9,0.5,0.7]"], ["trajectory_fractions", "ascending"]),
    (["--baseline_learning_rates=[0.01,-1]"], ["baseline_learning_rates"]),
    # valid_metric outside metrics x topk: RecBole's KeyError after the first validation
    (["--topk=[5]"], ["valid_metric Recall@10 is not among the metrics computed",
                      "recall@5"]),
    (["--valid_metric=MRR@10"], ["valid_metric MRR@10", "--valid_metric"]),
    (["--teacher_config={'default': {'epochs': 1}, 'CML': {'valid_metric': 'NDCG@5'}}"],
     ["teacher CML: valid_metric NDCG@5 "]),
])
def test_4_5_pipeline_mistakes_before_any_training(tiny, capsys, no_training, args, texts):
    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny), *args], *texts)


def test_4_5_single_model_mistakes(tiny, capsys, no_training):
    argv = ["--model=BPR", "--dataset=tiny", *common(tiny)]
    refused(capsys, argv + ["--epochs=-3"], "epochs must be a positive integer, got -3")
    refused(capsys, argv + ["--trajectory_topk=500"], "trajectory_topk=500", "catalogue")
    refused(capsys, argv + ["--metrics=['Recall','NDCG','Hit']", "--topk=[10,20]",
                            "--valid_metric=NDCG@50"], "valid_metric NDCG@50",
            "recall@10, recall@20, ndcg@10, ndcg@20, hit@10, hit@20")


@pytest.mark.parametrize("args, texts", [
    # RecBole's own Config checks raise ValueError / TypeError / RuntimeError
    (["--topk=0"], ["bad configuration: topk must be a positive integer"]),
    # RecBole's log level: anything else was INFO without a word, a number a traceback
    (["--state=foo"], ["state must be one of INFO, DEBUG", "'foo'"]),
    (["--state=1"], ["state must be one of INFO, DEBUG", "got 1"]),
    (["--metrics=['Recall','MAE']", "--valid_metric=Recall@10"],
     ["bad configuration: Ranking metrics and value metrics"]),
    (["--train_neg_sample_args={'distribution': 'pop', 'sample_num': 1}"],
     ["bad configuration: The distribution [pop]"]),
    # splits without a validation part: the best epoch is chosen on validation
    (["--eval_args={'split': {'RS': [0.8, 0.2]}, 'order': 'RO', 'group_by': 'user', "
      "'mode': 'full'}"], ["gives 2 parts", "{RS: [0.8, 0.1, 0.1]}"]),
    (["--eval_args={'split': {'LS': 'test_only'}, 'order': 'TO', 'group_by': 'user', "
      "'mode': 'full'}", "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}"],
     ["gives 3 parts of [", ", 0, ", "non-empty"]),
    # RecBole loads only user_id and item_id of a dataset without a yaml: no time to sort by
    (["--eval_args={'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'group_by': 'user', "
      "'mode': 'full'}"], ["order TO", "'timestamp' (TIME_FIELD) is not loaded", "load_col"]),
])
def test_4_5_recbole_config_and_split_mistakes(tiny, capsys, no_training, args, texts):
    refused(capsys, ["--model=BPR", "--dataset=tiny", *common(tiny), *args], *texts)


@pytest.mark.parametrize("mode", ["uni100", "{'valid': 'full', 'test': 'pop100'}"])
def test_4_pipeline_refuses_a_sampled_evaluation(tiny, capsys, no_training, mode):
    # Under uni100 the ensemble rows (only the recorded lists are scored) tie every unlisted
    # candidate: on the tiny data its Recall@10 read 1.000 against 0.963 for each teacher.
    eval_args = ("{'split': {'RS': [0.8, 0.1, 0.1]}, 'order': 'RO', 'group_by': 'user', "
                 f"'mode': {mode if mode.startswith('{') else repr(mode)}}}")
    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                     f"--eval_args={eval_args}"], "full ranking", "mode: full")


def test_4_without_recording_trajectory_topk_is_not_held_against_the_catalogue(
        tiny, capsys, monkeypatch):
    class Trained(Exception):
        pass

    def reached(config, *args, **kwargs):
        raise Trained

    monkeypatch.setattr(quick_start, "train_model", reached)
    argv = ["--model=BPR", "--dataset=tiny", *common(tiny), "--trajectory_topk=500",
            "--record_trajectory=False"]
    with pytest.raises(Trained):  # past every check: nothing is recorded, so no top-500 lists
        main(merged(argv))
    assert capsys.readouterr().err == ""


def test_4_paths_that_cannot_be_directories(tiny, tmp_path, capsys, no_training):
    argv = ["--model=HetCompStudent", "--dataset=tiny", *common(tiny)]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    refused(capsys, argv + [f"--trajectory_dir={a_file}"], "trajectory_dir", "is a file")
    refused(capsys, argv + [f"--checkpoint_dir={a_file}"], "checkpoint_dir", "is a file")
    refused(capsys, argv + [f"--trajectory_dir={dangling}"], "link to nothing")
    refused(capsys, argv + ["--dataset=../../x"], "not a path", "--data_path")
    assert a_file.read_text() == "x"  # nothing overwritten


def test_5_config_files(tiny, tmp_path, capsys, no_training):
    argv = ["--model=HetCompStudent", "--dataset=tiny", *common(tiny)]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("embedding_size: 6 # taille \xe9\n".encode("latin-1"))
    refused(capsys, argv + [f"--config_files={latin}"], str(latin), "not UTF-8")
    refused(capsys, argv + [f"--config_files={tmp_path}"], str(tmp_path), "is a directory")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: 3\nteachers: [BPR, CML\nseed: 1\n")
    line = refused(capsys, argv + [f"--config_files={broken}"], str(broken), "line ")
    assert "line 3" in line or "line 4" in line


@pytest.mark.parametrize("content, texts", [
    ("", ["is empty", "user_id:token"]),
    ("user_id\titem_id\n1\t2\n", ["malformed header", "user_id:token"]),
    ("user_id:token\tproduct:token\n1\t2\n", ["no item_id field"]),
    ("user_id:token\titem_id:token\n", ["header but no interactions"]),
    # RecBole would read the mark into the first field's name and fail on a KeyError
    ("\ufeffuser_id:token\titem_id:token\n1\t2\n",
     ["byte-order mark", "without BOM", "--encoding=utf-8-sig"]),
])
def test_5_malformed_inter_file(tiny, tmp_path, capsys, no_training, content, texts):
    os.makedirs(tmp_path / "bad" / "shop")
    inter = tmp_path / "bad" / "shop" / "shop.inter"
    inter.write_text(content)
    argv = ["--model=HetCompStudent", "--dataset=shop", *common(tiny),
            f"--data_path={tmp_path / 'bad'}"]
    refused(capsys, argv, str(inter), *texts)


@pytest.mark.parametrize("suffix", ["user", "item"])
def test_5_side_file_with_a_byte_order_mark_is_refused(tiny, tmp_path, capsys, no_training,
                                                        suffix):
    # The .inter file is fine; the .user / .item file beside it was saved by a Windows editor.
    os.makedirs(tmp_path / "bad" / "shop")
    (tmp_path / "bad" / "shop" / "shop.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    side = tmp_path / "bad" / "shop" / f"shop.{suffix}"
    side.write_text(f"\ufeff{suffix}_id:token\tage:float\n1\t3\n", encoding="utf-8")
    argv = ["--model=HetCompStudent", "--dataset=shop", *common(tiny),
            f"--data_path={tmp_path / 'bad'}"]
    refused(capsys, argv, str(side), "byte-order mark", "--encoding=utf-8-sig")


def test_5_utf8_sig_encoding_reads_a_file_with_a_byte_order_mark(tmp_path):
    from recbole_hetcomp.data.availability import check_inter_header

    inter = tmp_path / "shop.inter"
    inter.write_text("\ufeffuser_id:token\titem_id:token\n1\t2\n", encoding="utf-8")
    config = {"field_separator": "\t", "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
              "encoding": "utf-8-sig"}
    check_inter_header(str(inter), config)  # the fix the refusal names is accepted
    with pytest.raises(HetCompError, match="byte-order mark"):
        check_inter_header(str(inter), dict(config, encoding="utf-8"))


def test_5_misspelt_key_is_warned_with_the_closest_name(tiny, caplog, monkeypatch):
    from recbole_hetcomp.checks import check_unknown_keys
    from recbole_hetcomp.config import Config

    _, base = tiny
    config = Config("HetCompStudent", "tiny", config_dict={**base, "learnin_rate": 0.1,
                                                             "zzqqxx": 1})
    with caplog.at_level(logging.WARNING):
        check_unknown_keys(config, logging.getLogger("t"))
    text = caplog.text
    assert "'learnin_rate'" in text and "did you mean 'learning_rate'" in text
    assert "'zzqqxx'" in text and "check its spelling" in text
    assert "'embedding_size'" not in text and "'data_path'" not in text  # known keys are quiet


def test_5_a_data_path_for_ml_100k_is_said_to_be_ignored(tmp_path, caplog):
    from recbole_hetcomp.checks import warn_bundled_dataset_path
    from recbole_hetcomp.config import Config

    config = Config("BPR", "ml-100k", config_dict={"data_path": str(tmp_path)})
    assert str(tmp_path) not in config["data_path"]  # RecBole's rule: its own copy
    with caplog.at_level(logging.WARNING):
        warn_bundled_dataset_path(config, logging.getLogger("t"))
        warn_bundled_dataset_path(Config("BPR", "ml-100k"), logging.getLogger("t"))
    assert caplog.text.count("is ignored for ml-100k") == 1 and "--dataset=my-ml-100k" in \
        caplog.text


def test_5_pipeline_keys_given_to_a_single_model_are_warned_about(tiny, caplog):
    from recbole_hetcomp.checks import warn_pipeline_keys
    from recbole_hetcomp.config import Config

    _, base = tiny
    config = Config("BPR", "tiny", config_dict={**base, "seeds": [1, 2], "teachers": ["BPR"],
                                                "hetcomp_k": 10, "embedding_size": 6})
    with caplog.at_level(logging.WARNING):
        warn_pipeline_keys(config, logging.getLogger("t"))
    assert "hetcomp_k, seeds, teachers: read by a HetCompStudent run (the pipeline) only; " \
           "BPR ignores them" in caplog.text
    assert "embedding_size" not in caplog.text  # BPR reads it
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # none given: nothing said
        warn_pipeline_keys(Config("BPR", "tiny", config_dict=base), logging.getLogger("t"))
    assert caplog.text == ""


@pytest.mark.parametrize("typo, meant", [
    ("--modle=BPR", "model"), ("--datset=tiny", "dataset"),
    ("--configfiles=x.yaml", "config_files"), ("--data_pth=elsewhere", "data_path"),
    ("--teacher=[BPR]", "teachers"), ("--seds=[1,2]", "seeds"), ("--epoch=2", "epochs"),
    # abbreviations: argparse must not read --data as --dataset, and difflib finds no match
    ("--data=elsewhere", "dataset"), ("--mod=BPR", "model"), ("--teach=[BPR]", "teachers")])
def test_5_a_misspelt_key_that_decides_what_runs_is_refused(tiny, capsys, no_training,
                                                            typo, meant):
    # Ignored, each would start another run than the one meant (--modle=BPR: the default
    # pipeline), so a warning scrolling past is not enough.
    refused(capsys, ["--dataset=tiny", *common(tiny), typo], f"'{typo[2:].split('=')[0]}'",
            f"did you mean '{meant}'?", "fix the spelling")


def test_5_config_file_is_refused_not_ignored(tiny, no_training):
    # RecBole lists config_file among its keys but never reads it (argparse already takes
    # --config_file on the command line for --config_files; a config dict or file does not).
    with pytest.raises(HetCompError, match="config_file is not read.*--config_files"):
        quick_start.run_hetcomp("BPR", "tiny", config_dict={"config_file": "x.yaml"},
                                cmd_args=merged(["--dataset=tiny", *common(tiny)]))


def test_5_misspelt_teacher_config_key_that_decides_what_runs(tiny, capsys, no_training):
    refused(capsys, ["--dataset=tiny", *common(tiny),
                     "--teacher_config={'default': {'epochs': 1}, 'BPR': {'datset': 'x'}}"],
            "teacher_config BPR: 'datset'", "did you mean 'dataset'?")


def test_subprocess_bad_value_has_no_traceback(tiny):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run_hetcomp.py"),
                           *merged(["--dataset=tiny", *common(tiny), "--kc_period=0"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: kc_period must be")


# --- 10: unwritable output folders are found before training; a late failure loses nothing
@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: files cannot be made under ``folder`` (EROFS), as on a read-only
    mount. Root ignores chmod, so the tests (run as root in CI) make it so this way."""
    import errno
    import tempfile

    folders = []
    real = {name: getattr(tempfile, name) for name in ("mkstemp", "mkdtemp")}

    def guarded(name):
        def make(*args, dir=None, **kwargs):
            if dir is not None and any(os.path.abspath(dir).startswith(f) for f in folders):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
            return real[name](*args, dir=dir, **kwargs)
        return make

    for name in real:
        monkeypatch.setattr(tempfile, name, guarded(name))
    return lambda folder: folders.append(os.path.abspath(str(folder)))


@pytest.mark.parametrize("model", ["BPR", "HetCompStudent"])
@pytest.mark.parametrize("key", ["checkpoint_dir", "trajectory_dir"])
def test_10_unwritable_dirs_are_refused_before_training(tiny, tmp_path, capsys, no_training,
                                                        read_only, model, key):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    argv = [f"--model={model}", "--dataset=tiny", *common(tiny), "--teachers=[BPR]"]
    refused(capsys, argv + [f"--{key}={ro}"], key, str(ro), "cannot be written",
            "Read-only file system", f"set --{key} to a directory you can write")
    refused(capsys, argv + [f"--{key}={ro / 'new' / 'sub'}"], key, "Read-only file system")
    assert os.listdir(ro) == []  # the probe leaves nothing behind
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(capsys, argv + [f"--{key}={a_file / 'sub'}"], key, f"{a_file} is a file")


def test_10_teachers_own_trajectory_dir_and_the_log_folder(tiny, tmp_path, capsys,
                                                           no_training, read_only):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    argv = ["--model=HetCompStudent", "--dataset=tiny", *common(tiny), "--teachers=[BPR]"]
    refused(capsys, argv + [f"--teacher_config={{'BPR': {{'trajectory_dir': '{ro}'}}}}"],
            "teacher BPR: trajectory_dir", "teacher_config")
    os.chdir(ro)  # RecBole's logger writes ./log/<model>/ here
    refused(capsys, argv, "log folder", str(ro / "log" / "HetCompStudent"))


def test_10_without_recording_the_trajectory_dir_is_not_written(tiny, tmp_path, capsys,
                                                                read_only, monkeypatch):
    monkeypatch.setattr(quick_start, "export_model", lambda *a, **k: "package")
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    argv = ["--model=BPR", "--dataset=tiny", *common(tiny), f"--trajectory_dir={ro}",
            "--record_trajectory=False"]
    assert main(merged(argv)) == 0, capsys.readouterr().err


def test_10_a_late_write_failure_is_one_line_and_loses_nothing(tiny, capsys, monkeypatch):
    import errno

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "saved/BPR-tiny-x")

    real_export = quick_start.export_model
    monkeypatch.setattr(quick_start, "export_model", disk_full)
    argv = merged(["--model=BPR", "--dataset=tiny", *common(tiny)])
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No space left on device: saved/BPR")
    assert "run the same command again" in err[0]
    # The trajectory is stored only after the package: the rerun trains again and packages
    # the model, instead of reusing a store that keeps no weights.
    assert not os.path.exists(tiny[1]["trajectory_dir"]) or not any(
        "manifest.json" in files for _, _, files in os.walk(tiny[1]["trajectory_dir"]))
    monkeypatch.setattr(quick_start, "export_model", real_export)
    result = quick_start.run_hetcomp(cmd_args=argv)
    assert result["package"] and os.path.isdir(result["package"])
    assert result["trajectory"] is not None


def test_10_a_single_model_run_again_says_it_was_not_trained_again(tiny, caplog):
    # run_recbole would train again; a recorded single model is reused: the log says so and
    # names the switch that trains it anew.
    argv = merged(["--model=BPR", "--dataset=tiny", *common(tiny), "--state=INFO"])
    first = quick_start.run_hetcomp(cmd_args=argv)
    with caplog.at_level(logging.INFO):
        again = quick_start.run_hetcomp(cmd_args=argv)
    assert first["package"] and again["package"] is None
    assert again["test_result"] == first["test_result"]
    assert "BPR is not trained again" in caplog.text
    assert caplog.text.count("--record_trajectory=False trains it anew") == 2  # + no package


def test_10_torch_save_failing_on_a_full_disk_is_a_failed_write(tiny, capsys, monkeypatch):
    # torch's zip writer reports a full disk as a RuntimeError ("unexpected pos"), not an
    # OSError: the package writer must still end in the one-line failed-write message.
    import torch

    def zip_writer_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", zip_writer_full)
    assert main(merged(["--model=BPR", "--dataset=tiny", *common(tiny)])) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write the weights"), err
    assert "unexpected pos" in err[0] and "is the disk full?" in err[0]


def test_10_a_run_state_that_cannot_be_written_does_not_stop_the_run(tiny, monkeypatch,
                                                                      caplog):
    import errno

    from recbole_hetcomp.run_state import SeedStore

    def disk_full(self, outcome):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "saved/run-state/x.json")

    monkeypatch.setattr(SeedStore, "save", disk_full)
    argv = merged(["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                   "--teachers=[BPR]", "--hetcomp_k=8", "--rank_top=[8,4]",
                   "--discrepancy_n=8", "--baseline=~", "--state=WARNING"])
    with caplog.at_level(logging.WARNING):
        result = quick_start.run_hetcomp(cmd_args=argv)
    assert os.path.isfile(result["json"])
    assert "could not be kept in the run state (No space left on device" in caplog.text


# --- 6-8: stores: nothing lost, nothing stale ---------------------------------------------
def teacher_store(tiny):
    """Record BPR on tiny as a teacher of a one-teacher pipeline would; returns its path."""
    argv = ["--model=BPR", "--dataset=tiny", *common(tiny)]
    assert main(merged(argv)) == 0
    (manifest,) = [os.path.join(d, f) for d, _, files in os.walk(tiny[1]["trajectory_dir"])
                   for f in files if f == "manifest.json"]
    return argv, os.path.dirname(manifest)


def test_10_a_read_only_store_holding_every_trajectory_is_only_read(tiny, capsys, read_only):
    # A team's shared store, read-only: a run that needs nothing new from it must work; one
    # that would add a trajectory is refused before anything trains.
    argv, _ = teacher_store(tiny)
    read_only(tiny[1]["trajectory_dir"])  # any temporary file there (every write) now fails
    pipeline = merged([*argv, "--model=HetCompStudent", "--teachers=[BPR]", "--baseline=~"])
    assert main(pipeline) == 0, capsys.readouterr().err
    refused(capsys, [*pipeline, "--teachers=[BPR,CML]"], "trajectory_dir",
            "Read-only file system", "CML's trajectory is not stored there yet")


def rewrite_manifest(path, change):
    file = os.path.join(path, "manifest.json")
    with open(file) as f:
        manifest = json.load(f)
    change(manifest)
    with open(file, "w") as f:
        json.dump(manifest, f)


def test_6_manifest_missing_key_is_set_aside_and_rebuilt(tiny, capsys, caplog):
    argv, path = teacher_store(tiny)
    rewrite_manifest(path, lambda m: m.pop("snapshot_epochs"))
    with caplog.at_level(logging.WARNING):
        assert main(merged(argv + ["--state=WARNING"])) == 0
    assert "lacks snapshot_epochs" in caplog.text and "moved to" in caplog.text
    assert TrajectoryStore.exists(path)
    (aside,) = TrajectoryStore.set_aside_copies(path)
    assert ".refused-" in aside and os.path.isfile(os.path.join(aside, "manifest.json"))


def test_6_out_of_range_ids_with_valid_checksums_are_refused(tiny, caplog):
    argv, path = teacher_store(tiny)
    file = os.path.join(path, "rankings.npy")
    rankings = np.load(file)
    rankings[0, 0, 0] = 60000  # the tiny catalogue has 61 ids
    np.save(file, rankings)

    def fix_checksum(m):
        m["files"]["rankings.npy"].update(bytes=os.path.getsize(file), sha256=file_sha256(file))

    rewrite_manifest(path, fix_checksum)
    with caplog.at_level(logging.WARNING):
        assert main(merged(argv + ["--state=WARNING"])) == 0
    assert "item ids outside [0, 61)" in caplog.text
    assert int(np.load(file).max()) < 61  # rebuilt


def test_6_deleted_manifest_is_the_logged_reason(tiny, caplog):
    argv, path = teacher_store(tiny)
    os.unlink(os.path.join(path, "manifest.json"))
    with caplog.at_level(logging.WARNING):
        assert main(merged(argv + ["--state=WARNING"])) == 0
    assert "has no manifest.json" in caplog.text and "moved to" in caplog.text
    assert TrajectoryStore.exists(path)


def test_7_raise_reaches_the_pipelines_teachers(tiny, capsys):
    argv, path = teacher_store(tiny)
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write("{ not json")
    refused(capsys, ["--model=HetCompStudent", "--dataset=tiny", *common(tiny),
                     "--teachers=[BPR]", "--hetcomp_k=8", "--rank_top=[8,4]",
                     "--discrepancy_n=8", "--trajectory_on_error=raise"], "corrupt manifest")
    assert os.path.isfile(os.path.join(path, "manifest.json"))  # left for inspection


def test_8_leftovers_removed_and_set_aside_copies_bounded(tiny, caplog):
    argv, path = teacher_store(tiny)
    leftover = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-killed")
    os.makedirs(leftover)
    store = TrajectoryStore(os.path.dirname(path), keep_aside=2)
    loaded = Trajectory(np.load(os.path.join(path, "rankings.npy")),
                        np.load(os.path.join(path, "observed.npy")), {})
    with caplog.at_level(logging.WARNING):
        assert main(merged(argv + ["--state=WARNING"])) == 0
    assert not os.path.exists(leftover) and "interrupted write" in caplog.text
    for _ in range(4):
        store.save(path, Trajectory(loaded.rankings, loaded.observed, {}))
    assert len(TrajectoryStore.set_aside_copies(path)) == 2


# --- 9: the report's share of the gap -------------------------------------------------------
def rows(student, baseline, ensemble):
    return [{"kind": k, "test_result": {"recall@50": v}, "n_params": 1,
             "inference_ms_per_1000_users": 1.0}
            for k, v in (("student", student), ("baseline", baseline), ("ensemble", ensemble))]


@pytest.mark.parametrize("values, text", [
    ((0.30, 0.32, 0.31), "baseline (0.3200) matched or beat the ensemble"),
    ((0.35, 0.20, 0.30), "the student beat the ensemble"),
    ((0.10, 0.20, 0.30), "the student is below the baseline"),
])
def test_9_gap_share_outside_0_1_says_why(values, text):
    share = summary(rows(*values), "Recall@50", ["recall@50"])["recall@50 share of gap recovered"]
    assert isinstance(share, str) and text in share
    assert summary(rows(0.25, 0.20, 0.30), "Recall@50",
                   ["recall@50"])["recall@50 share of gap recovered"] == pytest.approx(0.5)
