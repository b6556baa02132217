"""Model packages and serving: export, safe loading, Recommender, CLI, faiss index, HTTP."""

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

import recbole_hetcomp.pipeline as pipeline
from conftest import TEST_DEVICE, TEST_USE_GPU, write_tiny_dataset
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.quick_start import run_hetcomp
from recbole_hetcomp.serving import PackageError, Recommender, load_data_and_model
from recbole_hetcomp.serving.cli import recommend_main, serve_main
from recbole_hetcomp.serving.http import serve_in_thread
from recbole_hetcomp.atomic import file_sha256
from recbole_hetcomp.serving import package
from recbole_hetcomp.serving.package import MANIFEST, read_weights
from recbole_hetcomp.knowledge import topk_by_id

#: Where the serving tests serve: the CPU, or under HETCOMP_TEST_DEVICE=cuda|sim the GPU (the
#: simulated one under sim), from packages exported by a pipeline run on that device.
SERVE_DEVICE = "cpu" if TEST_DEVICE == "cpu" else "cuda"

try:
    import faiss  # noqa: F401
    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny pipeline run that packages everything, with the models' own scores captured at
    the moment they were exported (the reference every loaded package is held to)."""
    tmp = tmp_path_factory.mktemp("serving")
    cwd = os.getcwd()
    os.chdir(tmp)
    write_tiny_dataset(str(tmp / "data"))
    config = {"data_path": str(tmp / "data"), "use_gpu": TEST_USE_GPU, "show_progress": False,
              "state": "ERROR", "checkpoint_dir": str(tmp / "saved"),
              "trajectory_dir": str(tmp / "traj"), "train_batch_size": 256, "epochs": 3,
              "eval_step": 1, "trajectory_topk": 10, "teachers": ["BPR", "CML", "MultiVAE"],
              "kc_period": 1, "hetcomp_k": 10, "hetcomp_l": 3, "discrepancy_n": 5,
              "embedding_size": 4, "teacher_config": {"default": {"epochs": 2}},
              "export_teachers": True, "export_index": HAVE_FAISS}
    captured = {}
    real = pipeline.export_model

    def spy(model, mconfig, split, logger, **kwargs):
        users = torch.arange(split.n_users, device=model.device)
        with torch.no_grad():
            model.eval()
            scores = model.full_sort_predict(Interaction({model.USER_ID: users}))
        path = real(model, mconfig, split, logger, **kwargs)
        captured[path] = scores.view(split.n_users, -1).cpu().numpy().copy()
        return path

    pipeline.export_model = spy
    try:
        report = run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    finally:
        pipeline.export_model = real
        os.chdir(cwd)
    return {"report": report, "scores": captured, "data": str(tmp / "data"), "tmp": tmp}


def student_path(run):
    return run["report"]["packages"]["student"]


def known_items(data_dir):
    """user token -> item tokens of every interaction in the .inter file (the spec's 'known')."""
    known = {}
    with open(os.path.join(data_dir, "tiny", "tiny.inter")) as f:
        next(f)
        for line in f:
            user, item = line.split("\t")[:2]
            known.setdefault(user, set()).add(item)
    return known


def test_report_names_every_package_and_cards_describe_them(run):
    report = run["report"]
    assert set(report["packages"]) == {"BPR", "CML", "MultiVAE", "baseline", "student"}
    assert os.path.basename(student_path(run)).startswith("HetCompStudent-tiny-")
    assert student_path(run) in open(report["markdown"]).read()
    card = json.load(open(os.path.join(student_path(run), "model_card.json")))
    assert card["model"] == "HetCompStudent" and card["sizes"]["embedding_size"] == 4
    assert card["split_fingerprint"] == report["split_fingerprint"]
    assert card["report_row"]["model"] == "HetCompStudent"
    assert card["serving"]["factorised"] and card["config"]["embedding_size"] == 4
    assert {"recbole", "torch", "recbole_hetcomp"} <= set(card["versions"])
    assert not [p for p in os.listdir(os.path.dirname(student_path(run))) if p.startswith(".")]


def test_loaded_in_a_fresh_process_scores_equal_the_trained_model(run):
    path = student_path(run)
    out = run["tmp"] / "scores.npy"
    probe = textwrap.dedent(f"""
        import numpy as np, sys
        from recbole_hetcomp.serving import Recommender
        rec = Recommender.load({path!r})
        np.save({str(out)!r}, rec.scores(np.arange(rec.n_users + 1)).numpy())
        print("recbole" in sys.modules)
    """)
    printed = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                             text=True).stdout.split()
    assert printed[-1] == "False"  # serving imports no RecBole at all (nor builds a dataset)
    np.testing.assert_allclose(np.load(out), run["scores"][path], rtol=1e-6, atol=1e-6)


def test_recommendations_are_the_brute_force_topk_without_known_items(run):
    rec = Recommender.load(student_path(run), use_index=False, device=SERVE_DEVICE)
    scores = run["scores"][student_path(run)]
    known = known_items(run["data"])
    users = rec.user_tokens[1:]
    got = rec.recommend(users, k=7)
    for user, recs in zip(users, got):
        uid = rec.user_tokens.index(user)
        # the spec: every real item the user has not interacted with, by score, ties by id
        candidates = [i for i in range(1, len(rec.item_tokens))
                      if rec.item_tokens[i] not in known[user]]
        expected = sorted(candidates, key=lambda i: (-scores[uid, i], i))[:7]
        assert [t for t, _ in recs] == [rec.item_tokens[i] for i in expected]
        assert not recs.fallback and not ({t for t, _ in recs} & known[user])
        np.testing.assert_allclose([s for _, s in recs], scores[uid, expected], rtol=1e-6)
    with_known = rec.recommend(users[:1], k=5, exclude_known=False)[0]
    uid = rec.user_tokens.index(users[0])
    assert [t for t, _ in with_known] == [
        rec.item_tokens[i] for i in sorted(range(1, len(rec.item_tokens)),
                                           key=lambda i: (-scores[uid, i], i))[:5]]


def test_topk_breaks_ties_by_lower_id():
    scores = torch.tensor([[1.0, 3.0, 3.0, -0.0, 0.0, -torch.inf, 3.0],
                           [-2.0, -1.0, -1.0, -3.0, -1.0, -2.0, -torch.inf]])
    values, ids = topk_by_id(scores, 5)
    for row, top in zip(scores.tolist(), ids.tolist()):
        assert top == sorted(range(len(row)), key=lambda i: (-row[i], i))[:5]
    assert values[0].tolist() == [3.0, 3.0, 3.0, 1.0, 0.0]
    big = torch.randint(0, 5, (3, 1000)).float() / 4 - 0.5  # many ties, both signs
    _, ids = topk_by_id(big, 100)
    for row, top in zip(big.tolist(), ids.tolist()):
        assert top == sorted(range(1000), key=lambda i: (-row[i], i))[:100]


def test_unknown_user_falls_back_to_popular_items_flagged(run):
    rec = Recommender.load(student_path(run), device=SERVE_DEVICE)
    known, fallback = rec.recommend(["u1", "nobody-knows-me"], k=4)
    assert not known.fallback and fallback.fallback and fallback.user == "nobody-knows-me"
    counts = {}
    for items in known_items(run["data"]).values():
        for item in items:
            counts[item] = counts.get(item, 0) + 1
    expected = sorted(counts, key=lambda t: (-counts[t], rec.item_tokens.index(t)))[:4]
    assert [t for t, _ in fallback] == expected
    assert [s for _, s in fallback] == [counts[t] for t in expected]
    batch = rec.topk(["u1", "nobody-knows-me"], k=4)
    assert batch.fallback.tolist() == [False, True] and batch.items.shape == (2, 4)
    assert batch.lengths.tolist() == [4, 4]  # k each: both have more than 4 items left


def test_k_larger_than_the_catalogue(run):
    rec = Recommender.load(student_path(run), device=SERVE_DEVICE)
    known = known_items(run["data"])
    (got,) = rec.recommend(["u1"], k=10_000)
    assert len(got) == rec.n_items - len(known["u1"])  # every item the user has not seen
    assert {t for t, _ in got} == set(rec.item_tokens[1:]) - known["u1"]
    (everything,) = rec.recommend(["u1"], k=10_000, exclude_known=False)
    assert len(everything) == rec.n_items
    assert {t for t, _ in everything} == set(rec.item_tokens[1:])  # the padding item never
    batch = rec.topk(["u1", "u2"], k=10_000)
    assert batch.items.shape == (2, rec.n_items)
    assert batch.lengths.tolist() == [rec.n_items - len(known[u]) for u in ("u1", "u2")]
    assert (batch.items[0, batch.lengths[0]:] == "").all()
    with pytest.raises(HetCompError, match="k must be a positive integer"):
        rec.recommend(["u1"], k=0)


def test_similar_items(run):
    rec = Recommender.load(student_path(run), device=SERVE_DEVICE)
    (similar,) = rec.similar_items(["i2"], k=5)
    q = rec.factors[1].cpu().numpy()
    unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    i2 = rec.item_tokens.index("i2")
    sims = unit[1:] @ unit[i2]
    expected = sorted((i for i in range(1, len(q)) if i != i2), key=lambda i: (-sims[i - 1], i))
    assert [t for t, _ in similar] == [rec.item_tokens[i] for i in expected[:5]]
    # k past the catalogue: every other real item, itself and the padding item never
    (everything,) = rec.similar_items(["i2"], k=10_000)
    assert [t for t, _ in everything] == [rec.item_tokens[i] for i in expected]
    assert len(everything) == rec.n_items - 1 and np.isfinite([s for _, s in everything]).all()
    with pytest.raises(HetCompError, match="unknown item token 'nope'"):
        rec.similar_items(["nope"])


def test_a_batch_equals_one_user_at_a_time(run, monkeypatch):
    """Unknown users anywhere in a request, and a request ranked in several chunks, give each
    user its own list, in its own row: known users the brute-force top-k by the model's scores
    (ties by id, as in test_recommendations_are_the_brute_force_topk_without_known_items),
    unknown ones the popular items."""
    from recbole_hetcomp.serving import recommender

    rec = Recommender.load(student_path(run), use_index=False, device=SERVE_DEVICE)
    scores = run["scores"][student_path(run)]
    known = known_items(run["data"])
    counts = {}
    for items in known.values():
        for item in items:
            counts[item] = counts.get(item, 0) + 1
    popular = sorted(counts, key=lambda t: (-counts[t], rec.item_tokens.index(t)))[:5]
    users = ["stranger", "u3", "nobody", "u1", "u2", "u3", "u7", "another stranger", "u0"]
    # chunks of 2 users (SCORE_BUDGET holds 2 rows of scores): 6 known users in 3 chunks
    monkeypatch.setattr(recommender, "SCORE_BUDGET", 2 * (rec.n_items + 1))
    batch = rec.recommend(users, k=5)
    assert [r.user for r in batch] == users
    assert [r.fallback for r in batch] == [u not in known for u in users]
    for user, recs in zip(users, batch):
        if user not in known:
            assert [t for t, _ in recs] == popular
            continue
        uid = rec.user_tokens.index(user)
        candidates = [i for i in range(1, len(rec.item_tokens))
                      if rec.item_tokens[i] not in known[user]]
        expected = sorted(candidates, key=lambda i: (-scores[uid, i], i))[:5]
        assert [t for t, _ in recs] == [rec.item_tokens[i] for i in expected], user


def _hand_package(root, user_tokens, item_tokens, known, user_factors, item_factors):
    """A package written by hand (no model, no RecBole): tokens, known items as CSR, factors,
    a card and a manifest with each file's size and sha256 (computed here with hashlib)."""
    import hashlib

    os.makedirs(root)
    indptr = np.zeros(len(user_tokens) + 1, dtype=np.int64)
    indices = []
    for u, token in enumerate(user_tokens):
        items = sorted(item_tokens.index(t) for t in known.get(token, ()))
        indices += items
        indptr[u + 1] = indptr[u] + len(items)
    arrays = {"known_indptr.npy": indptr, "known_indices.npy": np.array(indices, np.int64),
              "user_factors.npy": np.array(user_factors, np.float32),
              "item_factors.npy": np.array(item_factors, np.float32)}
    for name, array in arrays.items():
        np.save(os.path.join(root, name), array)
    json.dump(user_tokens, open(os.path.join(root, "user_tokens.json"), "w"))
    json.dump(item_tokens, open(os.path.join(root, "item_tokens.json"), "w"))
    files = sorted(os.listdir(root))
    card = {"format": package.FORMAT, "format_version": package.FORMAT_VERSION,
            "model": "BPR", "dataset": "hand", "files": {f: "" for f in files},
            "serving": {"factorised": True, "item_bias": False, "user_bias": False},
            "sizes": {"n_users": len(user_tokens), "n_items": len(item_tokens)}}
    json.dump(card, open(os.path.join(root, "model_card.json"), "w"))

    def entry(name):
        data = open(os.path.join(root, name), "rb").read()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    manifest = {"format": package.FORMAT, "format_version": package.FORMAT_VERSION,
                "files": {f: entry(f) for f in sorted(os.listdir(root))}}
    json.dump(manifest, open(os.path.join(root, MANIFEST), "w"))
    return str(root)


def _abcde_package(tmp_path):
    """Items a..e (ids 1..5), users x, y, z; 1-d factors: x and y score a 5, b 4, c 3, d 2,
    e 2, z the opposite; the padding item's factor (9) would top x's and y's lists. Known:
    x {b, d}, y {b, c}, z {d, e}, so counts b 2, d 2, c 1, e 1 and a 0 (an item in the
    catalogue nobody interacted with)."""
    return _hand_package(tmp_path / "hand", ["[PAD]", "x", "y", "z"],
                         ["[PAD]", "a", "b", "c", "d", "e"],
                         {"x": ["b", "d"], "y": ["b", "c"], "z": ["d", "e"]},
                         [[0.0], [1.0], [1.0], [-1.0]],
                         [[9.0], [5.0], [4.0], [3.0], [2.0], [2.0]])


def test_fallback_is_the_popular_real_items_by_count_then_id(tmp_path):
    # Most popular first, ties by the lower id: b, d, c, e, a; the padding item never.
    rec = Recommender.load(_abcde_package(tmp_path))
    (fallback,) = rec.recommend(["stranger"], k=10)
    assert fallback.fallback
    assert fallback == [("b", 2.0), ("d", 2.0), ("c", 1.0), ("e", 1.0), ("a", 0.0)]
    assert [t for t, _ in rec.recommend(["stranger"], k=3)[0]] == ["b", "d", "c"]
    assert rec.topk(["stranger"], k=3).lengths.tolist() == [3]


def test_a_hand_made_package_ranks_by_score_then_id_without_known_items(tmp_path):
    rec = Recommender.load(_abcde_package(tmp_path))
    assert rec.recommend(["x"], k=10)[0] == [("a", 5.0), ("c", 3.0), ("e", 2.0)]
    assert rec.recommend(["y"], k=3)[0] == [("a", 5.0), ("d", 2.0), ("e", 2.0)]  # d, e tie
    assert rec.recommend(["z"], k=2)[0] == [("c", -3.0), ("b", -4.0)]
    assert rec.recommend(["x"], k=10, exclude_known=False)[0] == [
        ("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0), ("e", 2.0)]  # never [PAD]
    # lengths: k, fewer only when the user has fewer unknown items left (Batch)
    assert rec.topk(["x", "y", "z"], k=2).lengths.tolist() == [2, 2, 2]
    assert rec.topk(["x", "y", "z"], k=4).lengths.tolist() == [3, 3, 3]


def test_known_items_are_each_users_distinct_items():
    """The package's known-items CSR: each user's distinct items, sorted by id (a pair logged
    twice is one known item)."""
    import types

    users = [1, 1, 1, 3, 3, 2, 3, 1]
    items = [3, 2, 3, 5, 1, 2, 5, 3]
    dataset = types.SimpleNamespace(
        uid_field="user_id", iid_field="item_id", user_num=5, item_num=6,
        inter_feat={"user_id": torch.tensor(users), "item_id": torch.tensor(items)})
    indptr, indices = package.known_items_csr(dataset)
    # user 0 (padding) none, 1 {2, 3}, 2 {2}, 3 {1, 5}, 4 none
    assert indptr.tolist() == [0, 0, 2, 3, 5, 5]
    assert indices.tolist() == [2, 3, 2, 1, 5]
    assert indptr.dtype == indices.dtype == np.int64


def test_a_factorised_form_that_misses_the_models_scores_is_refused():
    """serving_factors holds the factors to the model's own full_sort_predict: a model whose
    scores are the inner product plus anything (here 0.5 on one item, a quarter of the largest
    score) is refused; an exact one gives its embeddings."""
    from recbole_hetcomp.serving.factors import serving_factors

    class BPR(torch.nn.Module):  # named like the class whose factorised form is used
        USER_ID = "user_id"

        def __init__(self, offset):
            super().__init__()
            self.n_users, self.offset = 4, offset
            self.user_embedding = torch.nn.Embedding(4, 2)
            self.item_embedding = torch.nn.Embedding(5, 2)
            with torch.no_grad():
                self.user_embedding.weight.copy_(torch.tensor([[0., 0], [1, 0], [0, 1], [1, 1]]))
                self.item_embedding.weight.copy_(torch.tensor([[0., 0], [1, 0], [0, 1], [1, 1],
                                                               [-1, 0]]))

        def full_sort_predict(self, interaction):
            p = self.user_embedding(interaction[self.USER_ID])
            scores = p @ self.item_embedding.weight.T  # largest |score|: 2 (user 3, item 3)
            return (scores + torch.tensor([0, 0, 0, self.offset, 0])).view(-1)

    p, q, item_bias, user_bias = serving_factors(BPR(0.0))
    assert p.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]] and item_bias is user_bias is None
    assert q.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1], [-1, 0]]
    with pytest.raises(HetCompError, match="does not reproduce its full_sort_predict scores "
                                           r"\(max difference 0.5\)"):
        serving_factors(BPR(0.5))


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss-cpu not installed (the [serve] extra)")
def test_faiss_index_gives_the_brute_force_lists(run):
    path = student_path(run)
    indexed = Recommender.load(path, device=SERVE_DEVICE)
    brute = Recommender.load(path, use_index=False, device=SERVE_DEVICE)
    assert indexed.index is not None and brute.index is None
    users = indexed.user_tokens[1:] + ["stranger"]
    for k in (1, 5, 25, 10_000):
        for exclude in (True, False):
            a = indexed.topk(users, k, exclude)
            b = brute.topk(users, k, exclude)
            assert (a.items == b.items).all() and (a.lengths == b.lengths).all()
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert indexed.index_redone < len(users)  # the index answered (not only its fallback)


def test_export_index_without_faiss_is_one_clear_line(tiny, monkeypatch):
    _, base = tiny
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(HetCompError, match=r'pip install "recbole-hetcomp\[serve\]"'):
        run_hetcomp("BPR", "tiny", config_dict={**base, "export_index": True})
    assert not os.path.exists(base["checkpoint_dir"]) or not os.listdir(base["checkpoint_dir"])


def test_teacher_packages_rebuild_with_load_data_and_model(run):
    for name in ("BPR", "CML", "MultiVAE", "student"):
        path = run["report"]["packages"][name]
        config, model, dataset, train, valid, test = load_data_and_model(path)
        users = torch.arange(dataset.user_num, device=model.device)
        with torch.no_grad():
            scores = model.full_sort_predict(Interaction({model.USER_ID: users}))
        np.testing.assert_allclose(scores.view(dataset.user_num, -1).cpu().numpy(),
                                   run["scores"][path], rtol=1e-5, atol=1e-5)
        assert len(test.dataset) > 0 and config["model"] == json.load(
            open(os.path.join(path, "model_card.json")))["model"]
    with pytest.raises(PackageError, match="no factorised serving form"):
        Recommender.load(run["report"]["packages"]["MultiVAE"])
    cml = Recommender.load(run["report"]["packages"]["CML"],  # biased factorised form
                           device=SERVE_DEVICE)
    np.testing.assert_allclose(cml.scores(np.arange(cml.n_users + 1)).cpu().numpy(),
                               run["scores"][run["report"]["packages"]["CML"]], rtol=1e-5,
                               atol=1e-5)


def test_one_bare_token_is_refused_and_empty_lists_give_empty_answers(run):
    rec = Recommender.load(student_path(run), device=SERVE_DEVICE)
    for call in (lambda: rec.recommend("u1"), lambda: rec.topk("u1"),
                 lambda: rec.user_ids("u1")):
        with pytest.raises(TypeError, match=r"users must be a list of tokens.*pass \['u1'\]"):
            call()
    with pytest.raises(TypeError, match=r"items must be a list of tokens.*pass \['i2'\]"):
        rec.similar_items("i2")
    assert rec.recommend([]) == [] and rec.similar_items([]) == []
    assert rec.recommend([1], k=1)[0].user == "1"  # ints are tokens, as documented


# --- refusing bad packages --------------------------------------------------------------------
def _copy(run, tmp_path):
    import shutil

    target = tmp_path / "pkg"
    shutil.copytree(student_path(run), target)
    return str(target)


def _cli_error(capsys, *argv):
    assert recommend_main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_corrupt_truncated_tampered_and_foreign_packages_are_refused(run, tmp_path, capsys):
    path = _copy(run, tmp_path)
    factors = os.path.join(path, "item_factors.npy")
    original = open(factors, "rb").read()

    open(factors, "wb").write(original[:-8])  # truncated
    # (the whole phrase: this test's own folder name, in the path, holds "truncated")
    assert "is truncated or altered: item_factors.npy has" in _cli_error(capsys, path, "--user",
                                                                          "u1")
    flipped = bytearray(original)
    flipped[-1] ^= 1
    open(factors, "wb").write(bytes(flipped))  # same size, one bit changed
    assert "does not match its sha256" in _cli_error(capsys, path, "--user", "u1")
    open(factors, "wb").write(original)
    os.remove(os.path.join(path, "user_tokens.json"))
    assert "user_tokens.json is missing" in _cli_error(capsys, path, "--user", "u1")
    os.remove(os.path.join(path, MANIFEST))
    assert "not a recbole-hetcomp model package" in _cli_error(capsys, path, "--user", "u1")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    assert "not a recbole-hetcomp model package" in _cli_error(capsys, str(foreign), "--info")
    assert "no model package at" in _cli_error(capsys, str(tmp_path / "nowhere"), "--user", "1")
    checkpoint = tmp_path / "BPR-Dec-03-2026_12-00-00.pth"  # what run_recbole saves
    checkpoint.write_bytes(b"\x80\x04not unpickled")
    err = _cli_error(capsys, str(checkpoint), "--user", "1")
    assert "is a RecBole checkpoint, not a model package" in err and "never loaded" in err
    assert "--k" in _cli_error(capsys, student_path(run), "--user", "u1", "--k", "ten")
    assert "no users given" in _cli_error(capsys, student_path(run))


def _rewrite(path, name, change):
    """Change the JSON file ``name`` of a package with ``change`` and, unless it is the manifest,
    record its new size and sha256 in the manifest (so only the change itself is refused)."""
    file = os.path.join(path, name)
    value = json.load(open(file))
    change(value)
    json.dump(value, open(file, "w"))
    if name != MANIFEST:
        _rewrite(path, MANIFEST, lambda m: m["files"].update(
            {name: {"bytes": os.path.getsize(file), "sha256": file_sha256(file)}}))


def test_every_file_a_loader_reads_is_covered_by_the_manifest(run, tmp_path, capsys):
    path = _copy(run, tmp_path)
    _rewrite(path, MANIFEST, lambda m: m["files"].pop("user_factors.npy"))
    factors = os.path.join(path, "user_factors.npy")
    np.save(factors, np.ones_like(np.load(factors)))  # replaced, and no hash to catch it
    err = _cli_error(capsys, path, "--user", "u1")
    assert "the manifest has no sha256 for user_factors.npy" in err
    with pytest.raises(PackageError, match="no sha256 for user_factors.npy"):
        Recommender.load(path)
    for name in ("BPR", "student"):  # load_data_and_model reads weights.pt
        path = str(tmp_path / name)
        import shutil

        shutil.copytree(run["report"]["packages"][name], path)
        _rewrite(path, MANIFEST, lambda m: m["files"].pop("weights.pt"))
        with pytest.raises(PackageError, match="no sha256 for weights.pt"):
            load_data_and_model(path)


@pytest.mark.parametrize("name, change, message", [
    (MANIFEST, lambda m: m["files"]["weights.pt"].update(bytes=str(m["files"]["weights.pt"]
                                                                   ["bytes"])),
     r"the manifest is malformed \(the entry of weights.pt"),
    (MANIFEST, lambda m: m["files"]["weights.pt"].update(sha256=None),
     "the manifest is malformed"),
    (MANIFEST, lambda m: m.update(format_version=0),
     "version 0 package, written by an older recbole-hetcomp.*export it again"),
    (MANIFEST, lambda m: m.update(format_version=2), "newer .*: upgrade recbole-hetcomp"),
    (MANIFEST, lambda m: m.update(format_version="1"), "format_version '1' is not a number"),
    ("model_card.json", lambda c: c.pop("sizes"), r"model card is malformed \(sizes.n_users"),
    ("model_card.json", lambda c: c["sizes"].update(n_items="9"), "model card is malformed"),
    ("model_card.json", lambda c: c["files"].pop("user_factors.npy"),
     "is incomplete: its model card lists no user_factors.npy"),
    ("model_card.json", lambda c: c["files"].pop("known_indptr.npy"),
     "is incomplete: its model card lists no known_indptr.npy"),
    ("model_card.json", lambda c: c.update(files=None), "model card is malformed"),
])
def test_malformed_manifests_and_cards_are_named_as_such(run, tmp_path, capsys, name, change,
                                                         message):
    path = _copy(run, tmp_path)
    _rewrite(path, name, change)
    err = _cli_error(capsys, path, "--user", "u1")
    assert re.search(message, err), err


def test_a_moved_dataset_is_found_with_the_data_path_parameter(run, tmp_path):
    path = _copy(run, tmp_path)
    _rewrite(path, "model_card.json",
             lambda c: c["config"].update(data_path=str(tmp_path / "moved-away")))
    with pytest.raises(PackageError, match=r"not at .*moved-away.*data_path=DIR"):
        load_data_and_model(path)
    config, model, dataset, *_ = load_data_and_model(path, data_path=run["data"])
    assert config["data_path"].startswith(run["data"]) and dataset.user_num > 1


def test_a_pickle_in_the_weights_never_runs_even_with_a_matching_manifest(run, tmp_path):
    path = _copy(run, tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    weights = os.path.join(path, "weights.pt")
    with open(weights, "wb") as f:
        pickle.dump({"user_embedding.weight": Payload()}, f)
    manifest = json.load(open(os.path.join(path, MANIFEST)))
    manifest["files"]["weights.pt"] = {"bytes": os.path.getsize(weights),
                                       "sha256": file_sha256(weights)}
    json.dump(manifest, open(os.path.join(path, MANIFEST), "w"))
    with pytest.raises(PackageError, match="cannot be read as plain tensors"):
        read_weights(path)
    with pytest.raises(PackageError):
        load_data_and_model(path)
    assert not marker.exists()


def test_a_manifest_cannot_point_outside_the_package(run, tmp_path):
    path = _copy(run, tmp_path)
    manifest = json.load(open(os.path.join(path, MANIFEST)))
    manifest["files"]["../elsewhere.json"] = {"bytes": 1, "sha256": "0"}
    json.dump(manifest, open(os.path.join(path, MANIFEST), "w"))
    with pytest.raises(PackageError, match="outside the package"):
        Recommender.load(path)


def test_a_later_export_removes_the_staging_folders_of_killed_writes(tiny):
    _, base = tiny
    root = base["checkpoint_dir"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    host = package._HOST
    old = time.time() - package.STALE_AFTER - 60
    folders = {  # name -> removed?
        f".BPR-tiny-20260101-000000.{dead.pid}@{host}.ab_1.partial": True,   # writer dead
        f".BPR-tiny-20260101-000001.{os.getpid()}@{host}.cd_2.partial": False,  # writer alive
        ".BPR-tiny-20260101-000002.1@another-host.ef_3.partial": False,  # can't tell: recent
        ".BPR-tiny-20260101-000003.1@another-host.gh_4.partial": True,   # ... and old
        ".BPR-tiny-20260101-000004.ij_5.partial": True,  # before pids were in the name, old
        ".BPR-tiny-20260101-000005.kl_6.partial": False,  # ... recent
        "BPR-tiny-20260101-000006": False,  # a package
        ".not-a-stage": False,
    }
    for name in folders:
        os.makedirs(os.path.join(root, name))
    for name in (".BPR-tiny-20260101-000003.1@another-host.gh_4.partial",
                 ".BPR-tiny-20260101-000004.ij_5.partial", ".not-a-stage"):
        os.utime(os.path.join(root, name), (old, old))
    result = run_hetcomp("BPR", "tiny", config_dict={**base, "record_trajectory": False})
    left = set(os.listdir(root))
    assert {n for n, removed in folders.items() if not removed} <= left
    assert not {n for n, removed in folders.items() if removed} & left
    assert os.path.basename(result["package"]) in left
    assert package.remove_stale_stages(root) == []


def test_a_failed_export_leaves_nothing_behind(tiny, monkeypatch):
    _, base = tiny
    import recbole_hetcomp.serving.package as package

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(package.np, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        run_hetcomp("BPR", "tiny", config_dict={**base, "record_trajectory": False})
    assert os.listdir(base["checkpoint_dir"]) == []  # no package, no staging directory


# --- command line and HTTP --------------------------------------------------------------------
def test_cli_prints_one_line_per_user(run, capsys, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("u2\nu3\n")
    assert recommend_main([student_path(run), "--user", "u1", "--users-file", str(users),
                           "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["user"] for line in lines] == ["u1", "u2", "u3"]
    assert all(len(json.loads(line)["items"]) == 3 for line in lines)
    assert recommend_main([student_path(run), "--user", "u1", "--format", "tsv"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split("\t")[0] == "u1" and len(line.split("\t")) == 11
    assert recommend_main([student_path(run), "--info"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "HetCompStudent"


def test_cli_reports_unknown_users_and_marks_them_in_tsv(run, capsys):
    path = student_path(run)
    assert recommend_main([path, "--user", "u1", "--user", "stranger", "--user", " u1",
                           "--format", "tsv", "--k", "3"]) == 0
    captured = capsys.readouterr()
    known, stranger, spaced = [line.split("\t") for line in captured.out.splitlines()]
    assert known[0] == "u1" and len(known) == 4 and "" not in known  # the normal form
    assert stranger[:2] == ["stranger", ""] and len(stranger) == 5   # empty field: fallback
    assert spaced[:2] == [" u1", ""]  # a token is taken as given, spaces included
    popular = [t for t, _ in Recommender.load(path).recommend(["stranger"], k=3)[0]]
    assert stranger[2:] == popular
    assert captured.err == ("note: 2 of 3 users are not in the package's catalogue "
                            "('stranger', ' u1'): they got the most popular items (fallback)\n")
    assert recommend_main([path, "--user", "u1", "--user", "stranger", "--unknown-users",
                           "skip"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["user"] for line in captured.out.splitlines()] == ["u1"]
    assert "1 of 2 users" in captured.err and "skipped" in captured.err
    err = _cli_error(capsys, path, "--user", "u1", "--user", "stranger", "--unknown-users",
                     "error")
    assert "1 of 2 users are not in the package's catalogue ('stranger')" in err
    assert "empty" in _cli_error(capsys, path, "--user", "")
    assert recommend_main([path, "--user", "u1"]) == 0
    assert capsys.readouterr().err == ""  # nothing to report when every user is known


def test_users_file_is_utf8_lines_with_only_the_line_ending_stripped(run, capsys, tmp_path):
    users = tmp_path / "users.txt"
    users.write_bytes(b"\xef\xbb\xbfu1\r\n\nu2 \n\n u3\nu4")  # BOM, CRLF, spaces, no last \n
    assert recommend_main([student_path(run), "--users-file", str(users), "--k", "1"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["user"] for line in captured.out.splitlines()] == [
        "u1", "u2 ", " u3", "u4"]
    assert "2 of 4 users" in captured.err  # 'u2 ' and ' u3' are other tokens
    users.write_bytes(b"u1\n\xe9t\xe9\n")  # Latin-1
    err = _cli_error(capsys, student_path(run), "--users-file", str(users))
    assert f"--users-file {users} is not UTF-8 text (line 2)" in err and "save it as UTF-8" in err
    users.write_bytes("u1\n".encode("utf-16"))
    assert "is not UTF-8 text (line 1)" in _cli_error(capsys, student_path(run),
                                                       "--users-file", str(users))


@pytest.mark.parametrize("device, message", [
    ("foo", "--device foo is not a torch device"),
    ("meta", "--device meta: serving runs on --device cpu or --device cuda"),
    ("cuda:99", "--device cuda:99: torch"),
])
def test_a_device_this_torch_cannot_serve_on_is_one_line(run, capsys, device, message):
    assert message in _cli_error(capsys, student_path(run), "--user", "u1", "--device", device)
    assert serve_main([student_path(run), "--device", device]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(HetCompError, match="device="):
        Recommender.load(student_path(run), device=device)


@pytest.mark.skipif(torch.cuda.is_available() or TEST_DEVICE == "sim",
                    reason="needs a torch without CUDA (and not a simulated GPU)")
def test_cuda_without_cuda_says_to_use_cpu(run, capsys):
    err = _cli_error(capsys, student_path(run), "--user", "u1", "--device", "cuda")
    assert "--device cuda: torch here has no CUDA" in err and "use --device cpu" in err


def test_serve_refuses_a_port_out_of_range(run, capsys):
    for port in ("70000", "-1", "http"):
        assert serve_main([student_path(run), f"--port={port}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "must be from 0 to 65535" in err


def test_cli_ctrl_c_exits_130_quietly(run, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Recommender, "load", interrupted)
    for main, argv in ((recommend_main, ["--user", "u1"]), (serve_main, ["--port", "0"])):
        try:
            assert main([student_path(run)] + argv) == 130
        except KeyboardInterrupt:  # would stop pytest itself
            pytest.fail(f"Ctrl-C escaped {main.__name__}")
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_output_to_a_full_disk_is_one_line(run):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "recbole_hetcomp.serving.cli",
                               student_path(run), "--user", "u1"], stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output: No space left on device\n"


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss-cpu not installed (the [serve] extra)")
def test_a_package_with_an_index_serves_without_faiss_with_no_index(run, capsys, monkeypatch):
    path = student_path(run)
    assert "index.faiss" in os.listdir(path)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    err = _cli_error(capsys, path, "--user", "u1")
    assert "has a faiss index" in err and "--no-index" in err and "export_index" not in err
    assert recommend_main([path, "--user", "u1", "--no-index"]) == 0
    assert json.loads(capsys.readouterr().out)["user"] == "u1"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_answers_every_bad_request_in_json_and_keeps_the_connection(run):
    import http.client
    import socket

    server, url = serve_in_thread(Recommender.load(student_path(run), device=SERVE_DEVICE))
    try:
        for bad in ("k=%C2%B2", "k=%D9%A3", "k=1" + "0" * 5000, "k=+3", "k=%203"):
            status, body = _get(f"{url}/recommend?user=u1&{bad}")
            assert status == 400 and "must be an integer from 1 to 1000" in body["error"], bad
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1],
                                                timeout=10)
        for method in ("HEAD", "OPTIONS", "FOO", "DELETE"):
            connection.request(method, "/recommend?user=u1")
            response = connection.getresponse()
            body = response.read()
            assert response.status == 405 and response.getheader("Allow") == "GET", method
            assert response.getheader("Content-Type") == "application/json"
            assert body == b"" if method == "HEAD" else "use GET" in json.loads(body)["error"]
        connection.request("GET", "/recommend?user=u1&k=2")  # the same connection still works
        assert json.loads(connection.getresponse().read())["user"] == "u1"
        connection.close()
        with socket.create_connection(("127.0.0.1", server.server_address[1]), 10) as raw:
            raw.sendall(b"GET /a b HTTP/1.1\r\n\r\n")  # a malformed request line
            answer = raw.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
        assert json.loads(body)["error"]
        assert _get(f"{url}/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_http_endpoint_answers_rejects_bad_input_and_keeps_serving(run):
    rec = Recommender.load(student_path(run), device=SERVE_DEVICE)
    server, url = serve_in_thread(rec)
    try:
        status, body = _get(f"{url}/healthz")
        assert status == 200 and body["status"] == "ok" and body["items"] == rec.n_items
        status, body = _get(f"{url}/recommend?user=u1&k=3")
        assert status == 200 and body == rec.recommend(["u1"], k=3)[0].as_dict()
        # k from 1 to 1000, both ends included (README); 1000 is past the tiny catalogue
        status, body = _get(f"{url}/recommend?user=u1&k=1000&exclude_known=false")
        assert status == 200 and len(body["items"]) == rec.n_items
        status, body = _get(f"{url}/similar?item=i2&k=1000")
        assert status == 200 and len(body["items"]) == rec.n_items - 1
        for bad in ("/recommend?user=u1&k=1001", "/similar?item=i2&k=1001"):
            status, body = _get(url + bad)
            assert status == 400 and "must be an integer from 1 to 1000" in body["error"], bad
        for bad in ("/recommend", "/recommend?user=u1&k=0", "/recommend?user=u1&k=abc",
                    "/recommend?user=u1&user=u2", "/recommend?user=u1&exclude_known=maybe",
                    "/similar?item=not-an-item", "/recommend?user=u1&k=99999999999999999999"):
            status, body = _get(url + bad)
            assert status == 400 and body["error"], bad
        assert _get(f"{url}/nowhere")[0] == 404
        request = urllib.request.Request(f"{url}/recommend", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        status, body = _get(f"{url}/recommend?user=stranger&k=2")
        assert status == 200 and body["fallback"] is True  # still serving, fallback flagged
        status, body = _get(f"{url}/similar?item=i2&k=2")
        assert status == 200 and len(body["items"]) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_a_package_the_commands_cannot_serve_says_so_when_written(tiny, caplog):
    # export_model's comment promised every package to hetcomp-recommend and hetcomp-serve,
    # which refuse the models without a factorised form (NeuMF, MultiVAE, ItemVAE, EASE...).
    _, base = tiny
    with caplog.at_level("INFO"):
        result = run_hetcomp("MultiVAE", "tiny", config_dict={**base, "epochs": 1,
                                                               "state": "INFO"})
    line = [r.getMessage() for r in caplog.records if "model package written" in r.getMessage()]
    assert line and "hetcomp-recommend and hetcomp-serve do not serve it" in line[0]
    assert "load_data_and_model" in line[0]
    with pytest.raises(PackageError, match="no factorised serving form"):
        Recommender.load(result["package"])
