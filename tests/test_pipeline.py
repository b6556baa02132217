"""The HetComp pipeline end to end on a tiny dataset, resume, report, and the student trainer."""

import json
import logging
import os

import pytest

import recbole_hetcomp.teachers as teachers
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.quick_start import run_hetcomp


def pipeline_config(base, **extra):
    settings = dict(teachers=["BPR", "CML"], epochs=4, kc_period=1, eval_step=1, hetcomp_k=10,
                    hetcomp_l=3, discrepancy_n=5, embedding_size=4,
                    teacher_config={"default": {"epochs": 3, "eval_step": 1}})
    return {**base, **settings, **extra}


def test_pipeline_end_to_end_and_resume(tiny, monkeypatch, caplog):
    _, base = tiny
    config = pipeline_config(base, state="INFO")  # the reuse message is logged at INFO
    real = teachers.record_teacher

    def interrupted(tconfig, split, logger):
        if tconfig["model"] == "CML":
            raise KeyboardInterrupt  # the run dies while training the second teacher
        return real(tconfig, split, logger)

    monkeypatch.setattr(teachers, "record_teacher", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    monkeypatch.setattr(teachers, "record_teacher", real)

    trained = []
    monkeypatch.setattr(teachers, "record_teacher",
                        lambda c, s, l: trained.append(c["model"]) or real(c, s, l))
    caplog.set_level(logging.INFO)
    report = run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    assert trained == ["CML"]  # BPR came from the store
    assert "[BPR] reusing recorded trajectory" in caplog.text
    # each teacher's stage line shows its own budget (teacher_config's 3), not the student's 4
    assert "teacher 2/2: CML (up to 3 epochs, learning rate" in caplog.text

    # metrics x topk of properties/overall.yaml: accuracy, then popularity bias and coverage
    assert report["columns"] == [f"{m}@{k}" for m in ("recall", "ndcg", "itemcoverage",
                                                       "averagepopularity", "giniindex",
                                                       "tailpercentage") for k in (10, 20, 50)]
    assert report["test_result"] == report["rows"][-1]["test_result"]
    names = [row["model"] for row in report["rows"]]
    assert names == ["BPR", "CML", "Ensemble (2 teachers, uniform)",
                     "Ensemble (2 teachers, validation-weighted)", "BPR (same size)",
                     "HetCompStudent"]
    weights = report["ensemble_weights"]
    assert weights["setting"] == "validation" and set(weights["weights"]) == {"BPR", "CML"}
    assert sum(weights["weights"].values()) == pytest.approx(1.0)
    assert report["rows"][3]["weights"] == weights["weights"]
    # never worse than the uniform ensemble or the best teacher on validation
    assert weights["chosen_valid"] >= max(weights["uniform_valid"],
                                          *weights["single_valid"].values())
    for row in report["rows"]:
        assert set(report["columns"]) <= set(row["test_result"])
        assert row["n_params"] > 0 and row["inference_ms_per_1000_users"] > 0
    student = report["rows"][-1]
    assert student["n_params"] == report["rows"][-2]["n_params"]  # same size as the baseline
    assert report["runs"][0]["kc_history"], "knowledge construction never ran"
    for path in (report["markdown"], report["json"], report["plot"]):
        assert os.path.getsize(path) > 0
    assert "| HetCompStudent |" in open(report["markdown"]).read()
    assert json.load(open(report["json"]))["rows"][-1]["model"] == "HetCompStudent"

    # a second run reuses every teacher
    trained.clear()
    run_hetcomp("HetCompStudent", "tiny", config_dict=config)
    assert trained == []


def test_seeds_give_mean_and_std(tiny):
    _, base = tiny
    report = run_hetcomp("HetCompStudent", "tiny",
                         config_dict=pipeline_config(base, seeds=[1, 2], baseline=None))
    student = report["rows"][-1]
    assert student["seeds"] == 2 and len(student["per_seed"]) == 2
    assert "recall@50" in student["test_std"]
    assert [r["kind"] for r in report["rows"]] == ["teacher", "teacher", "ensemble",
                                                   "weighted_ensemble", "student"]


def test_student_switches_to_rank_loss(tiny):
    _, base = tiny
    report = run_hetcomp("HetCompStudent", "tiny", config_dict=pipeline_config(
        base, epochs=30, stopping_step=100, baseline=None, alpha=0.9))
    kc = report["runs"][0]["kc_history"]
    # threshold below 1 from the start: every pair advances by one snapshot per step
    assert [round(h["share_at_last"], 3) for h in kc[:4]] == [0.0, 0.0, 0.0, 1.0]
    assert kc[3]["loss"] == "rank" and all(h["loss"] == "rank" for h in kc[3:4])
    assert len(kc) == 4  # no construction after the switch


@pytest.mark.parametrize("repeats", [0, 4])
def test_student_lists_from_validation_equal_direct_scoring(tiny, repeats):
    """The knowledge step reuses the student's top lists read off the validation pass, also
    when pairs logged twice put training items among the validation positives (which RecBole's
    mask then leaves unmasked)."""
    import torch

    from conftest import write_tiny_dataset

    data_path, base = tiny
    write_tiny_dataset(data_path, repeats=repeats)
    trainer, train, valid = _student_trainer(base)
    model = trainer.model
    trainer.eval_collector.data_collect(train)
    trainer._epoch = 9
    trainer._valid_epoch(valid)
    captured = trainer._valid_top
    direct = trainer.knowledge.student_top(model.user_scores, 7)
    seen = captured[:, 0] >= 0
    assert seen.sum() > 0.8 * trainer.knowledge.n_users
    assert torch.equal(captured[seen], direct[seen])
    merged = trainer.knowledge.student_top(model.user_scores, 7, known=captured)
    assert torch.equal(merged, direct)


def test_baseline_keeps_the_best_learning_rate_on_validation(tiny):
    _, base = tiny
    report = run_hetcomp("HetCompStudent", "tiny", config_dict=pipeline_config(
        base, baseline_learning_rates=[1e-6, 0.05], epochs=10, valid_metric="NDCG@10"))
    run = report["runs"][0]
    search = run["baseline_learning_rate_search"]
    assert [s["learning_rate"] for s in search] == [1e-6, 0.05]
    best = max(search, key=lambda s: s["best_valid_score"])
    assert run["baseline_learning_rate"] == best["learning_rate"]
    # a rate of 1e-6 leaves the random start: the search must not keep it
    assert search[1]["best_valid_score"] > search[0]["best_valid_score"]
    assert "baseline learning rate (best on validation, per seed): [0.05]" in open(
        report["markdown"]).read()


def test_bad_baseline_learning_rates_is_a_clear_error(tiny):
    _, base = tiny
    with pytest.raises(HetCompError, match="baseline_learning_rates"):
        run_hetcomp("HetCompStudent", "tiny", config_dict=pipeline_config(
            base, baseline_learning_rates=["fast"]))


def _student_trainer(base, **extra):
    """A HetCompTrainer on the tiny dataset with random one-teacher knowledge (K=5, L=3, n=7);
    returns (trainer, train loader, valid loader)."""
    import numpy as np

    from recbole_hetcomp.config import Config
    from recbole_hetcomp.data.split import build_split, make_loaders
    from recbole_hetcomp.model import HetCompStudent
    from recbole_hetcomp.registry import get_trainer
    from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet
    from recbole_hetcomp.trajectory import Trajectory

    config = Config("HetCompStudent", "tiny", config_dict=dict(
        base, hetcomp_k=5, hetcomp_l=3, discrepancy_n=7, embedding_size=4, **extra))
    split = build_split(config)
    train, valid, _ = make_loaders(config, split)
    history = split.train.history_item_matrix()[0]
    rng = np.random.default_rng(0)
    rankings = np.zeros((2, split.n_users, 10), dtype=np.uint16)
    for u in range(1, split.n_users):
        free = sorted(set(range(1, split.n_items)) - set(history[u].tolist()))
        rankings[:, u] = rng.choice(free, size=10, replace=False)
    trainer_class = get_trainer(config["MODEL_TYPE"], "HetCompStudent")
    trainer = trainer_class(config, HetCompStudent(config, split.train).to(config["device"]))
    trainer.set_knowledge(KnowledgeSet([Trajectory(rankings, rankings[0], {"teacher": "T"})],
                                       history, split.n_items, 5, 3, device=config["device"]))
    return trainer, train, valid


def test_student_trainer_honours_clip_grad_norm(tiny):
    import torch

    _, base = tiny
    for max_norm in (1e-3, None):
        extra = {"clip_grad_norm": {"max_norm": max_norm}} if max_norm else {}
        trainer, train, _ = _student_trainer(base, **extra)
        assert type(trainer).__name__ == "HetCompTrainer"  # found by name in the registry
        # SGD with lr 1 moves the weights by exactly the gradient: clipping bounds the step.
        trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer._train_epoch([next(iter(train))], 1)
        step = torch.cat([(p - q).flatten() for p, q in zip(trainer.model.parameters(), before)])
        if max_norm:
            assert step.norm() <= max_norm * (1 + 1e-4)
        else:
            assert step.norm() > 1e-2  # unclipped, the same step is far larger


@pytest.mark.parametrize("key", ["enable_amp", "enable_scaler"])
def test_student_trainer_refuses_keys_it_cannot_honour(tiny, key):
    _, base = tiny
    with pytest.raises(HetCompError, match=key):
        _student_trainer(base, **{key: True})
    trainer, train, _ = _student_trainer(base)
    with pytest.raises(HetCompError, match="loss_func"):
        trainer._train_epoch(train, 1, loss_func=lambda interaction: 0)


def _loss_calls(monkeypatch):
    """Record which distillation loss each chunk of the student's training used."""
    import recbole_hetcomp.trainer.hetcomp as hetcomp

    calls = []
    for name in ("overall_loss", "rank_loss"):
        real = getattr(hetcomp, name)
        monkeypatch.setattr(hetcomp, name, lambda *a, _real=real, _name=name, **k:
                            calls.append(_name) or _real(*a, **k))
    return calls


@pytest.mark.parametrize("dynamic, transfer, expected", [
    (True, "adaptive", ["overall_loss", "overall_loss"]),  # C = 2: one step reaches the end
    (False, "adaptive", ["overall_loss", "rank_loss"]),    # the rule fires at the first check
    (True, "overall", ["overall_loss", "overall_loss"]),
    (True, "rank", ["rank_loss", "rank_loss"]),
])
def test_ablation_switches_change_what_they_name(tiny, monkeypatch, dynamic, transfer,
                                                 expected):
    import torch

    _, base = tiny
    trainer, train, _ = _student_trainer(base, kc_period=1, alpha=1.05,
                                         dynamic_construction=dynamic,
                                         knowledge_transfer=transfer)
    knowledge = trainer.knowledge
    last = knowledge.n_snapshots - 1
    # without dynamic construction every pair starts at the converged teachers' snapshot
    assert bool((knowledge.state.choice == last).all()) == (not dynamic)
    converged = knowledge.targets.clone()
    calls = _loss_calls(monkeypatch)
    batch = [next(iter(train))]
    trainer._train_epoch(batch, 0)
    first = set(calls)
    calls.clear()
    trainer._train_epoch(batch, 1)  # epoch p = 1: construction (dynamic) and the switch check
    assert [first.pop(), set(calls).pop()] == expected
    assert len(trainer.kc_history) == 1
    # the easy-to-hard step ran (its first call measures the discrepancies) only if dynamic
    assert knowledge.state.initialised == dynamic
    if not dynamic:
        assert torch.equal(knowledge.targets, converged)  # nothing moved: already converged
        assert trainer.switched and trainer.kc_history[0]["loss"] == "rank"


def test_variants_plan_and_best_teacher(tiny):
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.trajectory import Trajectory
    from recbole_hetcomp.variants import plan_variants

    _, base = tiny
    config = Config("HetCompStudent", "tiny", config_dict=dict(
        base, ablations=["best_teacher_only", "no_dynamic_construction",
                         "no_adaptive_transfer"], ablation_transfer_loss="rank"))
    scores = {"A": 0.2, "B": 0.5, "C": 0.3}
    trajectories = [Trajectory(None, None, {"teacher": t, "best_valid_result": {"recall@10": s},
                                            "snapshot_valid_scores": [0, s]})
                    for t, s in scores.items()]
    plan = {v.key: v for v in plan_variants(config, trajectories)}
    assert [t.teacher for t in plan["best_teacher_only"].trajectories] == ["B"]
    assert plan["best_teacher_only"].row_name == "HetComp from B only"
    assert plan["best_teacher_only"].overrides == {}
    assert plan["no_dynamic_construction"].overrides == {"dynamic_construction": False}
    assert plan["no_adaptive_transfer"].overrides == {"knowledge_transfer": "rank"}
    for key in ("no_dynamic_construction", "no_adaptive_transfer"):
        assert plan[key].trajectories is trajectories  # the same teachers as the student


@pytest.mark.parametrize("extra, message", [
    ({"ablations": ["no_dkc"]}, "ablations: no_dkc is not one of"),
    ({"distillation_baselines": ["MTD"]}, "distillation_baselines: MTD is not one of"),
    ({"ensemble_weights": [1, 2, 3]}, "ensemble_weights lists 3 weights for 2 teachers"),
    ({"ensemble_weights": [0, 0]}, "must be non-negative numbers, not all 0"),
    ({"ensemble_weights": "best"}, "ensemble_weights must be uniform, validation or a list"),
    ({"valid_metric": "AUC"}, "valid_metric AUC is not among the metrics computed"),
    # computed (a default metric), but no ranking metric the ensemble weights can be fitted on
    ({"valid_metric": "GiniIndex@10"}, "must be one of Recall, NDCG, Hit, Precision, MRR"),
    ({"knowledge_transfer": "listwise"}, "knowledge_transfer must be one of"),
    ({"distillation_baselines": ["RRD"]}, "RRD: kd_teacher_n=100 must be an integer in 1..20"),
    ({"distillation_baselines": ["DCD"], "kd_teacher_n": 10, "dcd_epsilon": 0},
     "dcd_epsilon must be a number > 0"),
])
def test_distillation_settings_refused_before_training(tiny, extra, message):
    _, base = tiny
    with pytest.raises(HetCompError, match=message):
        run_hetcomp("HetCompStudent", "tiny", config_dict=pipeline_config(base, **extra))


def test_ablations_and_distillation_baselines_are_rows(tiny):
    _, base = tiny
    report = run_hetcomp("HetCompStudent", "tiny", config_dict=pipeline_config(
        base, baseline=None, seeds=[1, 2], ensemble_weights="uniform",
        ablations=["no_dynamic_construction", "no_adaptive_transfer", "best_teacher_only"],
        distillation_baselines=["RRD", "DCD"], kd_teacher_n=10, kd_interesting=4,
        kd_uninteresting=5, dcd_student_n=8, dcd_samples=3))
    rows = {r["model"]: r for r in report["rows"]}
    kinds = [r["kind"] for r in report["rows"]]
    assert kinds == ["teacher", "teacher", "ensemble", "student"] + ["ablation"] * 3 + \
        ["distillation"] * 2  # uniform: no weighted row
    for name in ("HetComp w/o dynamic construction", "HetComp w/o adaptive transfer",
                 "RRD (same ensemble)", "DCD (same ensemble)"):
        assert rows[name]["seeds"] == 2 and rows[name]["n_params"] == rows["HetCompStudent"][
            "n_params"]  # the same size
        assert "recall@10" in rows[name]["test_result"]
    assert any(n.startswith("HetComp from ") and n.endswith(" only") for n in rows)
    text = open(report["markdown"]).read()
    assert "| RRD (same ensemble) |" in text and "Popularity bias and coverage" in text
    assert "recall@10 gain over DCD (same ensemble)" in report["summary"]


def test_knowledge_construction_runs_every_period_from_epoch_p_until_the_switch(tiny):
    """Spec, section 4: construction every p epochs, the first at epoch p (0-based epochs, as
    RecBole counts them), none after the switch; each call is told the epoch and p."""
    _, base = tiny
    trainer, train, _ = _student_trainer(base, kc_period=3)
    calls = []
    trainer.knowledge.construct = lambda score_fn, epoch, period, *rest: calls.append(
        (epoch, period))  # records only: no pair moves, so the switch never comes by itself
    batch = [next(iter(train))]
    for epoch in range(14):
        trainer._train_epoch(batch, epoch)
    assert calls == [(3, 3), (6, 3), (9, 3), (12, 3)]
    assert [h["epoch"] for h in trainer.kc_history] == [3, 6, 9, 12]
    trainer.switched = True
    for epoch in range(14, 19):
        trainer._train_epoch(batch, epoch)
    assert len(calls) == 4


@pytest.mark.parametrize("share, at_last, switches", [
    (0.995, 1.0, True),   # every real user there; the padding user 0 is no user
    (0.5, 0.5, True),     # exactly the configured share
    (0.5, 0.45, False),   # just short of it
])
def test_switch_rule_counts_real_users_at_the_configured_share(tiny, share, at_last, switches):
    """Spec, section 4: the rank loss takes over once (almost) every (user, teacher) pair reached
    the last snapshot, 'almost' being the configured share (switch_share); user 0 is RecBole's
    padding user, whose empty lists never move it, and is not one of the pairs."""
    _, base = tiny
    trainer, _, _ = _student_trainer(base, kc_period=1, switch_share=share)
    knowledge = trainer.knowledge
    knowledge.construct = lambda *args, **kwargs: None  # the pairs stay where they are put
    last = knowledge.n_snapshots - 1
    users = knowledge.n_users - 1                        # real users 1..U-1, one teacher
    moved = round(at_last * users)
    assert moved / users == pytest.approx(at_last)       # the share under test is met exactly
    knowledge.state.choice.zero_()
    knowledge.state.choice[1:1 + moved] = last           # user 0 stays at snapshot 0
    trainer._before_epoch(1)                             # epoch p = 1: construction, switch check
    assert trainer.switched == switches
    assert trainer.kc_history[-1]["loss"] == ("rank" if switches else "overall")


def test_construction_rebuilds_the_targets_from_the_new_choices():
    """Spec, section 4: after the pairs move, T_u is rebuilt from the new snapshot choices. With
    one teacher, T_u is that teacher's chosen snapshot list cut to K (importance exp(-r/T)
    falls with the rank); a threshold below 1 moves every pair one snapshot per call."""
    import numpy as np
    import torch

    from recbole_hetcomp.trainer.knowledge_set import KnowledgeSet
    from recbole_hetcomp.trajectory import Trajectory

    n_users, c, m, n_items, k = 7, 3, 6, 40, 4
    rng = np.random.default_rng(0)
    rankings = np.zeros((c, n_users, m), dtype=np.uint16)
    for snapshot in range(c):
        for user in range(1, n_users):  # items 1 and 2 are everyone's training items
            rankings[snapshot, user] = rng.choice(np.arange(3, n_items), size=m, replace=False)
    observed = np.zeros((n_users, m), dtype=np.uint16)
    observed[1:, :2] = [1, 2]
    history = torch.zeros(n_users, 2, dtype=torch.long)
    history[1:] = torch.tensor([1, 2])
    knowledge = KnowledgeSet([Trajectory(rankings, observed, {"teacher": "T"})], history,
                             n_items, k=k, l=2)
    gen = torch.Generator().manual_seed(0)
    scores = lambda users: torch.randn(len(users), n_items, generator=gen)

    def expect(snapshot):
        assert knowledge.state.choice[1:].eq(snapshot).all()
        for user in range(1, n_users):
            assert knowledge.targets[user].tolist() == rankings[snapshot, user, :k].tolist()
            assert knowledge.target_mask[user].all()

    expect(0)
    knowledge.construct(scores, 10, 10, 0.9, 0.995, n=5)  # first call: only remembers
    expect(0)
    knowledge.construct(scores, 20, 10, 0.9, 0.995, n=5)  # th = 0.9 * 0.995^2 < 1: all move
    expect(1)
    knowledge.construct(scores, 30, 10, 0.9, 0.995, n=5)
    expect(2)


@pytest.mark.parametrize("switched", [False, True])
def test_student_loss_is_the_weighted_sum_over_the_batch_distinct_users(tiny, switched):
    """Spec, section 3: each user of a batch counts once (a batch holds interactions, so users
    repeat), the loss is summed over users and weighted 0.01 (overall) or 0.005 (rank). The
    per-user references are the loss tests' loops written from the spec."""
    import torch
    from test_knowledge_losses import reference_overall, reference_rank

    _, base = tiny
    trainer, train, _ = _student_trainer(base)
    trainer.switched = switched
    batch = next(iter(train))  # as the loader gives it (on the CPU): the loop moves it
    interaction = batch.to(trainer.device)
    rows = interaction[trainer.config["USER_ID_FIELD"]]
    users = sorted(set(rows.tolist()))
    assert len(users) < len(rows)  # the case under test: users repeat in the batch
    knowledge = trainer.knowledge
    with torch.no_grad():
        scores = trainer.model.user_scores(torch.tensor(users, device=trainer.device)).double()
        exclude = torch.zeros_like(scores, dtype=torch.bool)
        for row, user in enumerate(users):
            exclude[row, knowledge.history[user].tolist()] = True
            exclude[row, 0] = True
        index = torch.tensor(users, device=trainer.device)
        args = (knowledge.targets[index], knowledge.target_mask[index],
                knowledge.observed[index], knowledge.observed_mask[index])
        if switched:
            expected = 0.005 * reference_rank(scores, exclude, *args, top=(5, 3)).sum()
        else:
            expected = 0.01 * reference_overall(scores, exclude, *args).sum()
    trainer.rank_top = (5, 3)  # T_u has K = 5 items here
    got = trainer._train_epoch([batch], 1)
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_single_model_result_has_run_recboles_keys_in_metric_order(tiny):
    # run_recbole returns best_valid_score and valid_score_bigger; a model taken from the
    # trajectory store (the second run) lacked best_valid_score, and its results came back in
    # sorted key order from the manifest.
    _, base = tiny
    config = {**base, "metrics": ["Recall", "NDCG", "Hit"], "topk": [10, 5],
              "export_model": False}
    for record in (False, True, True):  # trained; trained and recorded; taken from the store
        result = run_hetcomp("BPR", "tiny", config_dict={**config, "record_trajectory": record})
        columns = ["recall@10", "recall@5", "ndcg@10", "ndcg@5", "hit@10", "hit@5"]
        assert result["columns"] == columns
        assert list(result["test_result"]) == columns
        assert list(result["best_valid_result"]) == columns
        assert result["best_valid_score"] == result["best_valid_result"]["recall@10"]
        assert result["valid_score_bigger"] is True
    assert "trajectory" in result  # the last one came from the store
