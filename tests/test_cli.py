"""User mistakes end in one clear line and a non-zero exit, never a traceback."""

import os
import subprocess
import sys

import pytest

from recbole_hetcomp.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, cwd):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run_hetcomp.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_unknown_model_subprocess(tmp_path):
    code, err = run_cli(["--model=NoSuchModel", "--dataset=ml-100k"], tmp_path)
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: unknown model 'NoSuchModel'")


def test_offline_dataset_says_where_to_put_it(tmp_path, monkeypatch, capsys):
    import urllib.error

    import recbole_hetcomp.data.availability as availability

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(availability.urllib.request, "urlopen", offline)
    monkeypatch.chdir(tmp_path)
    code = main(["--model=BPR", "--dataset=ml-1m", f"--data_path={tmp_path}/data",
                 "--state=ERROR"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "ml-1m.inter" in err[0] and "--data_path" in err[0] and "network" in err[0]
    assert not os.path.exists(tmp_path / "data" / "ml-1m")  # nothing half-written


def test_unknown_dataset_not_downloadable(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["--model=BPR", "--dataset=my-shop", f"--data_path={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "my-shop.inter" in err and "not on disk" in err


@pytest.mark.parametrize("args, text", [
    (["--learning_rate=fast"], "malformed value for 'learning_rate'"),
    (["--teachers=[BPR,Nope]", "--epochs=1"], "unknown model 'Nope'"),
    (["--hetcomp_k=5000", "--teachers=[BPR]"], "hetcomp_k=5000"),
])
def test_bad_values(tiny, capsys, args, text):
    data_path, base = tiny
    common = [f"--data_path={data_path}", "--state=ERROR", "--show_progress=False",
              f"--trajectory_dir={base['trajectory_dir']}", "--teacher_config={'default': "
              "{'epochs': 1, 'trajectory_topk': 10}}", "--trajectory_topk=10"]
    code = main(["--model=HetCompStudent", "--dataset=tiny", *common, *args])
    assert code == 2
    assert text in capsys.readouterr().err


def test_corrupt_store_with_raise_is_one_clear_error(tiny, capsys):
    data_path, base = tiny
    args = ["--model=BPR", "--dataset=tiny", f"--data_path={data_path}", "--state=ERROR",
            f"--trajectory_dir={base['trajectory_dir']}", "--epochs=1", "--trajectory_topk=10",
            "--show_progress=False"]
    assert main(args) == 0
    capsys.readouterr()
    (manifest,) = [os.path.join(d, f) for d, _, files in os.walk(base["trajectory_dir"])
                   for f in files if f == "manifest.json"]
    with open(manifest, "w") as f:
        f.write("{ not json")
    assert main(args + ["--trajectory_on_error=raise"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt manifest" in err[0]
    assert os.path.exists(manifest)  # nothing lost: the corrupt store is left for inspection


@pytest.mark.parametrize("argv, text", [
    (["--model"], "argument --model/-m: expected one argument (see --help)"),
    (["--dataset=ml-100k", "-m"], "argument --model/-m: expected one argument"),
    (["--=3"], "unrecognised argument '--=3': use --key=value"),
])
def test_command_line_mistakes_are_one_line(capsys, argv, text):
    assert main(argv) == 2  # argparse would print its usage block and exit
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {text}"), lines


def test_a_refused_configuration_prints_only_its_error(tiny):
    # RecBole's settings printout (some 120 lines) comes after the checks, so a refused run
    # shows its error alone, at the default log level.
    data_path, base = tiny
    code, err = run_cli(["--model=BPR", "--dataset=tiny", f"--data_path={data_path}",
                         f"--trajectory_dir={base['trajectory_dir']}", "--epochs=0"],
                        os.getcwd())
    assert code == 2
    assert err.strip().splitlines() == [
        "error: epochs must be a positive integer, got 0: set --epochs=<value>"], err


def test_config_files_are_split_on_any_whitespace(tiny, tmp_path, capsys):
    from recbole_hetcomp.cli import parse

    assert parse(["--config_files= a.yaml  b.yaml\tc.yaml "])[1] == ["a.yaml", "b.yaml",
                                                                      "c.yaml"]
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("embedding_size: 8\n")
    second.write_text("epochs: 0\n")  # refused: shows that the second file was read
    data_path, base = tiny
    assert main(["--model=BPR", "--dataset=tiny", f"--data_path={data_path}", "--state=ERROR",
                 f"--config_files={first}  {second}"]) == 2
    assert "epochs must be a positive integer" in capsys.readouterr().err


def test_model_and_dataset_from_a_config_file_are_not_overridden(tiny, tmp_path, monkeypatch):
    # run_recbole.py's argparse defaults would replace a config file's model and dataset: with
    # model: BPR in the file the whole HetCompStudent pipeline started, on ml-100k.
    import recbole_hetcomp.quick_start as quick_start
    from recbole_hetcomp.config import Config

    data_path, base = tiny
    seen = []

    def fake_run(model, dataset, files, cmd_args):
        config = Config(model, dataset, files, cmd_args=cmd_args)
        seen.append((config["model"], config["dataset"]))

    monkeypatch.setattr(quick_start, "run_hetcomp", fake_run)
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"model: BPR\ndataset: tiny\ndata_path: {data_path}\n"
                    "valid_metric: Recall@10\n")
    other = tmp_path / "other.yaml"
    other.write_text("model: CML\n")
    assert main([f"--config_files={mine}"]) == 0
    assert main([f"--config_files={mine} {other}"]) == 0  # the later file wins
    assert main([f"--config_files={mine}", "--model=NeuMF"]) == 0  # command line > files
    empty = tmp_path / "empty.yaml"
    empty.write_text("epochs: 3\n")
    assert main([f"--config_files={empty}"]) == 0  # nothing named: the documented defaults
    assert seen == [("BPR", "tiny"), ("CML", "tiny"), ("NeuMF", "tiny"),
                    ("HetCompStudent", "ml-100k")]


@pytest.mark.parametrize("argv, text", [
    (["--model=BPR"], "interrupted: BPR was not finished (a single model's training does not "
                      "resume); run the same command again to train it from the start"),
    ([], "interrupted: finished teachers stay in the trajectory store and finished seeds in "
         "the run state; run the same command again to resume"),
])
def test_ctrl_c_says_what_a_rerun_does(monkeypatch, capsys, argv, text):
    # A single model was told it would "resume" from teachers and seeds it does not have.
    import recbole_hetcomp.quick_start as quick_start

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quick_start, "run_hetcomp", stopped)
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == text


@pytest.mark.parametrize("argv0, usage", [("/usr/local/bin/hetcomp", "usage: hetcomp "),
                                          ("run_hetcomp.py", "usage: run_hetcomp.py ")])
def test_help_names_the_command_it_was_started_by(monkeypatch, capsys, argv0, usage):
    # `hetcomp --help` printed "usage: run_hetcomp.py", a file the installed command lacks.
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


def test_run_hetcomp_takes_no_fifth_positional_argument():
    # run_recbole(model, dataset, files, config_dict, saved): a True meant as `saved` must not
    # be read as cmd_args
    from recbole_hetcomp.quick_start import run_hetcomp

    with pytest.raises(TypeError, match="positional"):
        run_hetcomp("BPR", "ml-100k", None, None, True)
