"""The citeulike-t converter (recbole_hetcomp.data.citeulike) and properties/dataset/citeulike.yaml."""

import os
import subprocess
import sys

import pytest

import recbole_hetcomp.compat  # noqa: F401  (before RecBole)
from recbole_hetcomp.data import citeulike
from recbole_hetcomp.data.citeulike import (
    INTER_HEADER,
    ConversionError,
    convert_citeulike,
    main,
    parse_users_dat,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML = os.path.join(ROOT, "properties", "dataset", "citeulike.yaml")
REAL_USERS_DAT = os.environ.get(
    "HETCOMP_CITEULIKE_USERS_DAT",
    os.path.join(os.path.dirname(ROOT), "shared", "datasets", "citeulike-t", "users.dat"),
)

# user 0: 5 items, user 1: 3 (below 5), user 2: 6, user 3: none, user 4: 5, user 5: 4 (below 5;
# items 14..17 occur only here). No trailing newline, as in the published file.
SYNTHETIC = "5 0 1 2 3 4\n3 1 2 5\n6 4 5 6 7 8 9\n0\n5 10 0 11 12 13\n4 14 15 16 17"
SYNTHETIC_ROWS = (
    [(0, i) for i in (0, 1, 2, 3, 4)]
    + [(1, i) for i in (1, 2, 5)]
    + [(2, i) for i in (4, 5, 6, 7, 8, 9)]
    + [(4, i) for i in (10, 0, 11, 12, 13)]
    + [(5, i) for i in (14, 15, 16, 17)]
)


def _inter_text(rows):
    return INTER_HEADER + "\n" + "".join(f"{u}\t{i}\n" for u, i in rows)


def _write(tmp_path, text, name="users.dat"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _files_under(path):
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs
    )


# ----------------------------------------------------------------------------- conversion


def test_converts_all_interactions_exactly(tmp_path):
    src = _write(tmp_path, SYNTHETIC)
    summary = convert_citeulike(src, tmp_path / "out")
    path = tmp_path / "out" / "citeulike" / "citeulike.inter"
    assert summary.path == str(path)
    assert path.read_text() == _inter_text(SYNTHETIC_ROWS)
    assert (summary.users, summary.items, summary.interactions) == (5, 18, 23)
    assert (summary.input_users, summary.input_interactions) == (6, 23)
    assert (summary.dropped_users, summary.dropped_duplicates) == (0, 0)
    assert _files_under(tmp_path / "out") == [os.path.join("citeulike", "citeulike.inter")]


def test_min_user_items_filters_in_the_converter(tmp_path):
    src = _write(tmp_path, SYNTHETIC + "\n")
    summary = convert_citeulike(src, tmp_path, name="cu5", min_user_items=5)
    kept = [(u, i) for u, i in SYNTHETIC_ROWS if u in (0, 2, 4)]
    assert (tmp_path / "cu5" / "cu5.inter").read_text() == _inter_text(kept)
    assert (summary.users, summary.items, summary.interactions) == (3, 14, 16)
    assert summary.dropped_users == 2  # users 1 and 5; user 3 had no item at all


def test_tolerates_crlf_tabs_and_trailing_blank_lines():
    users, dropped = parse_users_dat("2 7 8\r\n1\t9\r\n0\n\n  \n")
    assert users == [[7, 8], [9], []] and dropped == 0
    assert parse_users_dat("2 7 8\r\r\n1 9\n")[0] == [[7, 8], [9]]  # a stray trailing \r


def test_reads_a_byte_order_mark_and_old_mac_line_endings(tmp_path):
    expected = _inter_text(SYNTHETIC_ROWS)
    for name, data in (("bom.dat", b"\xef\xbb\xbf" + SYNTHETIC.encode()),
                       ("mac.dat", SYNTHETIC.replace("\n", "\r").encode() + b"\r"),
                       ("both.dat", b"\xef\xbb\xbf" + SYNTHETIC.replace("\n", "\r").encode())):
        (tmp_path / name).write_bytes(data)
        summary = convert_citeulike(tmp_path / name, tmp_path / name.split(".")[0])
        assert open(summary.path).read() == expected, name


def test_mixed_line_endings_name_the_line_instead_of_merging_users():
    # '\r' inside a '\n' file: str.split() would read users 1 and 2 as one line
    with pytest.raises(ConversionError, match=r"line 2 \(user 1\) holds a carriage return "
                                              r"\(\\r\).*mixes"):
        parse_users_dat("1 3\n1 4\r1 5\n")


def test_overwrites_an_existing_inter_file(tmp_path, capsys):
    out = tmp_path / "citeulike" / "citeulike.inter"
    out.parent.mkdir()
    out.write_text("stale")
    assert convert_citeulike(_write(tmp_path, "1 3\n"), tmp_path).replaced
    assert out.read_text() == _inter_text([(0, 3)])
    assert _files_under(tmp_path / "citeulike") == ["citeulike.inter"]
    # the CLI replaces too (a rerun is expected), but says so
    assert main(["--input", str(tmp_path / "users.dat"), "--output-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().err == f"note: replaced the existing {out}\n"


def test_a_folder_at_the_target_path_is_named(tmp_path):
    target = tmp_path / "citeulike" / "citeulike.inter"
    target.mkdir(parents=True)
    with pytest.raises(ConversionError) as info:
        convert_citeulike(_write(tmp_path, "1 3\n"), tmp_path)
    assert str(info.value).startswith(f"cannot write {target}: it is a directory")
    assert _files_under(tmp_path / "citeulike") == []  # no temporary file left either


def test_duplicates_are_an_error_unless_dropped(tmp_path):
    src = _write(tmp_path, "2 1 2\n3 4 5 4\n")
    with pytest.raises(ConversionError, match=r"line 2 \(user 1\): item 4 is listed twice"):
        convert_citeulike(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    summary = convert_citeulike(src, tmp_path / "out", drop_duplicates=True)
    assert summary.dropped_duplicates == 1 and summary.interactions == 4
    assert (tmp_path / "out/citeulike/citeulike.inter").read_text() == _inter_text(
        [(0, 1), (0, 2), (1, 4), (1, 5)]
    )


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, message",
    [
        ("2 1 2\n3 1 2\n", r"users\.dat line 2 \(user 1\): count says 3 items but the line lists 2"),
        ("2 1 2\n1 1 2\n", r"line 2 \(user 1\): count says 1 items but the line lists 2"),
        ("2 1 x\n", r"line 1 \(user 0\): item 2 'x' is not a non-negative integer"),
        ("1 -3\n", r"line 1 \(user 0\): item 1 '-3' is not a non-negative integer"),
        ("1.0 3\n", r"line 1 \(user 0\): count '1.0' is not a non-negative integer"),
        ("", r"users\.dat is empty"),
        ("\n \n\n", r"users\.dat is empty"),
        ("1 1\n\n1 2\n", r"line 2 \(user 1\) is blank"),
        ("0\n0\n", r"lists no interaction"),
    ],
)
def test_invalid_input_raises_one_line_error_and_writes_nothing(tmp_path, text, message):
    src = _write(tmp_path, text)
    with pytest.raises(ConversionError, match=message) as info:
        convert_citeulike(src, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists()


def test_other_errors(tmp_path):
    with pytest.raises(ConversionError, match="input file not found"):
        convert_citeulike(tmp_path / "missing.dat", tmp_path)
    with pytest.raises(ConversionError, match="is a directory"):
        convert_citeulike(tmp_path, tmp_path)
    src = tmp_path / "bin.dat"
    src.write_bytes(b"1 \xff\n")
    with pytest.raises(ConversionError, match="not a text file"):
        convert_citeulike(src, tmp_path)
    src = _write(tmp_path, SYNTHETIC)
    with pytest.raises(ConversionError, match="invalid dataset name"):
        convert_citeulike(src, tmp_path, name="../x")
    with pytest.raises(ConversionError, match="min_user_items"):
        convert_citeulike(src, tmp_path, min_user_items=-1)
    with pytest.raises(ConversionError, match="no user of .* has at least 7 items"):
        convert_citeulike(src, tmp_path / "out", min_user_items=7)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConversionError, match="cannot write"):
        convert_citeulike(src, tmp_path / "file")  # the output dir is a file
    assert not (tmp_path / "out").exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    src = _write(tmp_path, SYNTHETIC)
    convert_citeulike(src, tmp_path, min_user_items=5)
    out = tmp_path / "citeulike" / "citeulike.inter"
    before = out.read_text()

    def failing_replace(a, b):
        raise OSError(28, "No space left on device", str(b))

    monkeypatch.setattr(citeulike.os, "replace", failing_replace)
    with pytest.raises(ConversionError, match="cannot write .*No space left on device"):
        convert_citeulike(src, tmp_path)
    assert out.read_text() == before
    assert _files_under(tmp_path / "citeulike") == ["citeulike.inter"]


# ----------------------------------------------------------------------------- CLI


def test_cli_success(tmp_path, capsys):
    src = _write(tmp_path, SYNTHETIC)
    rc = main(["--input", str(src), "--output-dir", str(tmp_path / "d"), "--name", "cu"])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.strip() == (
        f"wrote {tmp_path / 'd' / 'cu' / 'cu.inter'}: 5 users, 18 items, 23 interactions"
    )
    assert out.err == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--input", "{src}", "--output-dir", "{out}"], "error: users.dat line 1 (user 0): count says 3"),
        (["--input", "{tmp}/nope.dat", "--output-dir", "{out}"], "error: input file not found"),
        (["--input", "{src}", "--output-dir", "{out}", "--min-user-items", "x"], "error: argument --min-user-items"),
        (["--output-dir", "{out}"], "error: the following arguments are required: --input"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, argv, message):
    src = _write(tmp_path, "3 1 2\n")
    fill = {"src": str(src), "out": str(tmp_path / "out"), "tmp": str(tmp_path)}
    rc = main([a.format(**fill) for a in argv])
    out = capsys.readouterr()
    assert rc == 2
    assert out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith(message)
    assert not (tmp_path / "out").exists()


def test_cli_as_a_module_exits_2_without_traceback(tmp_path):
    src = _write(tmp_path, "2 1 2\n2 5 z\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "recbole_hetcomp.data.citeulike",
         "--input", str(src), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == (
        "error: users.dat line 2 (user 1): item 2 'z' is not a non-negative integer"
    )
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- RecBole


def _recbole_dataset(monkeypatch, tmp_path, data_path, name="citeulike"):
    monkeypatch.setattr(sys, "argv", ["x"])  # RecBole's Config parses sys.argv
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(
        model="BPR",
        dataset=name,
        config_file_list=[YAML],
        config_dict={
            "data_path": str(data_path),
            "checkpoint_dir": str(tmp_path / "saved"),  # never pick up a pickled dataset
            "use_gpu": False,
            "show_progress": False,
            "state": "ERROR",
        },
    )
    return config, create_dataset(config)


def test_yaml_holds_the_paper_protocol(monkeypatch, tmp_path):
    convert_citeulike(_write(tmp_path, SYNTHETIC), tmp_path / "data")
    config, _ = _recbole_dataset(monkeypatch, tmp_path, tmp_path / "data")
    assert config["user_inter_num_interval"] == "[5,inf)"
    assert config["eval_args"]["split"] == {"RS": [0.6, 0.2, 0.2]}
    assert config["eval_args"]["order"] == "RO"
    assert config["eval_args"]["group_by"] == "user"
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["metrics"][:2] == ["Recall", "NDCG"]  # then popularity and coverage
    assert config["topk"] == [10, 20, 50]
    assert config["valid_metric"] == "Recall@50"
    assert (config["eval_step"], config["stopping_step"]) == (10, 5)
    assert config["load_col"] == {"inter": ["user_id", "item_id"]}


def test_recbole_loads_the_converted_data_and_drops_users_below_5(monkeypatch, tmp_path):
    from recbole.data import data_preparation

    convert_citeulike(_write(tmp_path, SYNTHETIC), tmp_path / "data")
    config, ds = _recbole_dataset(monkeypatch, tmp_path, tmp_path / "data")
    # users 1 (3 items), 3 (none) and 5 (4 items) are gone, and with them items 14..17;
    # RecBole's counts include the padding id 0.
    assert (ds.user_num, ds.item_num, ds.inter_num) == (4, 15, 16)
    assert sorted(ds.field2id_token["user_id"][1:].tolist(), key=int) == ["0", "2", "4"]
    assert sorted(ds.field2id_token["item_id"][1:].tolist(), key=int) == [str(i) for i in range(14)]

    train, valid, test = data_preparation(config, ds)
    # per user 5 -> 3/1/1, 6 -> 4/1/1, 5 -> 3/1/1
    sizes = (train.dataset.inter_num, valid.dataset.inter_num, test.dataset.inter_num)
    assert sizes == (10, 3, 3)


@pytest.mark.skipif(not os.path.isfile(REAL_USERS_DAT), reason="citeulike-t users.dat not found")
def test_real_file_gives_the_papers_counts(monkeypatch, tmp_path):
    summary = convert_citeulike(REAL_USERS_DAT, tmp_path)
    assert (summary.users, summary.items, summary.interactions) == (7947, 25584, 134860)
    _, ds = _recbole_dataset(monkeypatch, tmp_path, tmp_path)
    assert (ds.user_num - 1, ds.item_num - 1, ds.inter_num) == (5219, 25181, 125580)
