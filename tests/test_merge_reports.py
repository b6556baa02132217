"""Merging per-seed reports: means and stds against a hand computation, refusals, the command."""

import errno
import json
import os
import tempfile

import numpy as np
import pytest

import recbole_hetcomp.merge_reports as merge_module
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.merge_reports import main, merge_reports


def fake_report(seed, student, baseline, fingerprint="f" * 64, teacher_recall=0.3):
    def row(model, kind, recall, **extra):
        return {"model": model, "kind": kind, "test_result": {"recall@50": recall,
                                                              "ndcg@50": recall / 2},
                "n_params": 10 if kind in ("student", "baseline") else 1000,
                "inference_ms_per_1000_users": 1.0 + seed % 10, "train_seconds": float(seed),
                **extra}
    history = [{"epoch": 9, "score": 0.1}, {"epoch": 19, "score": 0.2}]
    return {"dataset": "toy", "dataset_stats": {"users": 3, "items": 4, "train": 5, "valid": 1,
                                                "test": 1},
            "device": "cpu", "machine": "test", "split_fingerprint": fingerprint,
            "rows": [row("BPR", "teacher", teacher_recall), row("Ensemble", "ensemble", 0.4),
                     row("BPR (same size)", "baseline", baseline, seeds=1),
                     row("HetCompStudent", "student", student, seeds=1)],
            "runs": [{"seed": seed, "valid_history": history, "kc_history": [],
                      "baseline_valid_history": history}]}


def test_merge_gives_mean_and_std_over_seeds():
    merged = merge_reports([fake_report(1, 0.30, 0.10), fake_report(2, 0.34, 0.14),
                            fake_report(3, 0.35, 0.12)])
    student = merged["rows"][-1]
    assert [r["kind"] for r in merged["rows"]] == ["teacher", "ensemble", "baseline", "student"]
    assert student["seeds"] == 3 and merged["seeds"] == [1, 2, 3]
    assert student["test_result"]["recall@50"] == pytest.approx(0.33)
    assert student["test_std"]["recall@50"] == pytest.approx(np.std([0.30, 0.34, 0.35]))
    assert student["train_seconds"] == pytest.approx(2.0)
    assert student["inference_ms_per_1000_users"] == pytest.approx(3.0)  # median of 2, 3, 4
    baseline = merged["rows"][-2]["test_result"]["recall@50"]
    assert baseline == pytest.approx(0.12)
    # gap share: (0.33 - 0.12) / (0.4 - 0.12)
    assert merged["summary"]["recall@50 share of gap recovered"] == pytest.approx(0.75)


def test_merge_refuses_other_splits_teachers_and_repeated_seeds():
    with pytest.raises(HetCompError, match="split_fingerprint"):
        merge_reports([fake_report(1, .3, .1), fake_report(2, .3, .1, fingerprint="e" * 64)])
    with pytest.raises(HetCompError, match="teacher or ensemble rows differ"):
        merge_reports([fake_report(1, .3, .1), fake_report(2, .3, .1, teacher_recall=0.2)])
    with pytest.raises(HetCompError, match="seed 1 differs between the reports"):
        merge_reports([fake_report(1, .3, .1), fake_report(1, .31, .1)])


def test_rows_of_one_seed_split_over_runs_are_joined():
    # One process trained the student, baseline and an ablation of seed 1, another the student
    # (identical: seeded) and a distillation baseline of the same seed.
    first, second = fake_report(1, .3, .1), fake_report(1, .3, .1)
    second["rows"] = [r for r in second["rows"] if r["kind"] != "baseline"]
    second["rows"].append(dict(second["rows"][-1], model="RRD (same ensemble)",
                               kind="distillation", test_result={"recall@50": .25,
                                                                 "ndcg@50": .1}))
    merged = merge_reports([first, second, fake_report(2, .34, .14)])
    rows = {r["model"]: r for r in merged["rows"]}
    assert merged["seeds"] == [1, 2]
    assert rows["HetCompStudent"]["seeds"] == 2  # seed 1 counted once
    assert rows["HetCompStudent"]["test_result"]["recall@50"] == pytest.approx(0.32)
    assert rows["RRD (same ensemble)"]["seeds"] == 1
    assert rows["BPR (same size)"]["test_result"]["recall@50"] == pytest.approx(0.12)


def test_command_writes_report_files_and_rejects_bad_input(tmp_path, capsys):
    paths = []
    for seed, student in ((1, 0.3), (2, 0.32)):
        paths.append(str(tmp_path / f"r{seed}.report.json"))
        with open(paths[-1], "w") as f:
            json.dump(fake_report(seed, student, 0.1), f)
    stem = str(tmp_path / "merged")
    assert main(paths + ["--output", stem]) == 0
    written = json.load(open(stem + ".report.json"))
    assert written["rows"][-1]["test_result"]["recall@50"] == pytest.approx(0.31)
    assert "0.3100 ± 0.0100" in open(stem + ".report.md").read()
    assert (tmp_path / "merged.png").stat().st_size > 0

    bad = tmp_path / "bad.json"
    bad.write_text("{\"rows\": []}")
    assert main([paths[0], str(bad), "--output", str(tmp_path / "x")]) == 2
    assert "not a recbole-hetcomp report" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json"), "--output", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x.report.json").exists()


def test_rows_of_some_runs_are_merged_over_their_seeds():
    with_ablation = fake_report(1, 0.30, 0.10)
    with_ablation["rows"].append({"model": "HetComp w/o adaptive transfer", "kind": "ablation",
                                  "test_result": {"recall@50": 0.2, "ndcg@50": 0.1},
                                  "n_params": 10, "inference_ms_per_1000_users": 1.0,
                                  "train_seconds": 1.0, "seeds": 1})
    merged = merge_reports([with_ablation, fake_report(2, 0.34, 0.14),
                            fake_report(3, 0.35, 0.12)])
    kinds = [r["kind"] for r in merged["rows"]]
    assert kinds == ["teacher", "ensemble", "baseline", "student", "ablation"]
    assert merged["rows"][3]["seeds"] == 3 and merged["rows"][4]["seeds"] == 1
    assert merged["rows"][4]["test_result"]["recall@50"] == pytest.approx(0.2)


def test_a_row_no_run_timed_has_no_inference_time(tmp_path):
    # A row rebuilt from a log has no inference timing: the merged row says so ("-" in the
    # table, null in the JSON) instead of a NaN median that strict JSON readers reject.
    untimed = fake_report(1, 0.30, 0.10)
    untimed["rows"].append({"model": "RRD (same ensemble)", "kind": "distillation",
                            "test_result": {"recall@50": 0.2, "ndcg@50": 0.1}, "n_params": 10,
                            "inference_ms_per_1000_users": None, "train_seconds": 1.0,
                            "seeds": 1})
    merged = merge_reports([untimed, fake_report(2, 0.34, 0.14)])
    rrd = next(r for r in merged["rows"] if r["model"] == "RRD (same ensemble)")
    assert rrd["inference_ms_per_1000_users"] is None
    paths = [tmp_path / "a.report.json", tmp_path / "b.report.json"]
    for path, report in zip(paths, (untimed, fake_report(2, 0.34, 0.14))):
        path.write_text(json.dumps(report))
    assert main([str(p) for p in paths] + ["--output", str(tmp_path / "m")]) in (0, None)
    text = (tmp_path / "m.report.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("| RRD (same ensemble)"))
    assert "nan" not in line and "| - |" in line
    json.loads((tmp_path / "m.report.json").read_text(), parse_constant=pytest.fail)


def one_line(capsys, argv, code, *texts):
    assert main(argv) == code
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err and "usage:" not in out.err and out.out == ""
    for text in texts:
        assert text in lines[0], lines[0]


@pytest.fixture
def a_report(tmp_path):
    path = tmp_path / "r1.report.json"
    path.write_text(json.dumps(fake_report(1, 0.3, 0.1)))
    return str(path)


def test_usage_mistakes_are_one_line(capsys, a_report):
    one_line(capsys, [], 2, "required: reports, --output", "--help")
    one_line(capsys, [a_report], 2, "required: --output")
    one_line(capsys, [a_report, "--output"], 2, "--output", "expected one argument")


def test_a_folder_is_no_output_stem(tmp_path, capsys, a_report):
    folder = tmp_path / "merged"
    folder.mkdir()
    for output in (str(folder) + "/", str(folder)):
        one_line(capsys, [a_report, "--output", output], 2, "is a folder",
                 os.path.join(str(folder), "merged"))
    assert os.listdir(folder) == []  # no hidden .report.md / .report.json / .png


def test_an_unwritable_output_is_refused_before_anything_is_written(tmp_path, capsys,
                                                                    a_report, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line(capsys, [a_report, "--output", str(a_file / "merged")], 2,
             f"{a_file} is a file")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # a read-only mount (root ignores chmod)
        if dir is not None and os.path.abspath(dir).startswith(str(read_only)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    one_line(capsys, [a_report, "--output", str(read_only / "merged")], 2,
             "Read-only file system", "choose a folder you can write to")
    assert a_file.read_text() == "x" and os.listdir(read_only) == []


def test_a_write_that_fails_late_is_one_line(tmp_path, capsys, a_report, monkeypatch):
    def disk_full(report, stem, note=""):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), stem + ".png")

    monkeypatch.setattr(merge_module, "write_files", disk_full)
    one_line(capsys, [a_report, "--output", str(tmp_path / "m")], 1,
             "cannot write the merged report: No space left on device", "m.png")
