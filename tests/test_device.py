"""The GPU path, checked on the CPU (issue 9): which device a Config resolves, that a GPU
scheduler's choice is kept, recording when scores and parameters live on different devices,
ties broken by item id, and batch sizes from element budgets."""

import os

import numpy as np
import pytest
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import get_model

from recbole_hetcomp.config import Config
from recbole_hetcomp.data.split import build_split
from recbole_hetcomp.device import Stopwatch, batch_users, dense_elements, memory_budget_bytes
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.knowledge import masked_topk, topk_by_id
from recbole_hetcomp.trajectory import TrajectoryRecorder

from conftest import TEST_DEVICE
from sim_accelerator import SIM_DEVICE, count_host_syncs, gpu_runs_on_sim, simulated_accelerator

#: These read CUDA's own device choice and budgets, or use the meta device themselves: the
#: simulated accelerator (HETCOMP_TEST_DEVICE=sim) stands in for that choice.
not_under_sim = pytest.mark.skipif(TEST_DEVICE == "sim", reason="reads the CUDA choice that "
                                   "the simulated accelerator replaces")


@pytest.fixture
def cuda_present(monkeypatch):
    """Pretend CUDA is available (nothing is run on it: only the Config's choice is read)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored after the test


def config_of(base, **keys):
    base = {k: v for k, v in base.items() if k != "use_gpu"}
    return Config("BPR", "tiny", config_dict={**base, **keys})


# --- defect 1: use_gpu False means the CPU ------------------------------------------------
@not_under_sim
def test_use_gpu_false_means_cpu_even_with_cuda(tiny, cuda_present):
    _, base = tiny
    assert config_of(base, use_gpu=False)["device"] == torch.device("cpu")
    cuda = config_of(base, gpu_memory_budget=4)  # RecBole's default use_gpu: True
    assert cuda["device"] == torch.device("cuda")
    # a GPU run's full-sort batches come from the GPU budget unless eval_batch_size is set
    assert cuda["eval_batch_size"] == 1 << 25
    assert config_of(base, gpu_memory_budget=4, eval_batch_size=1000)["eval_batch_size"] == 1000


# --- defect 2: CUDA_VISIBLE_DEVICES and a GPU that is not there ---------------------------
def test_scheduler_gpu_is_kept_unless_gpu_id_is_given(tiny, cuda_present, monkeypatch):
    _, base = tiny
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    config_of(base, gpu_memory_budget=4)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"  # RecBole would set its default '0'
    config_of(base, gpu_memory_budget=4, gpu_id="1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_unset_visible_devices_is_set_from_gpu_id(tiny, monkeypatch):
    _, base = tiny
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config_of(base)
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "0"  # as RecBole does


@not_under_sim
def test_gpu_asked_for_but_missing_is_one_clear_error(tiny, monkeypatch):
    _, base = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # e.g. gpu_id of no GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for keys in ({"use_gpu": True}, {"gpu_id": "7"}):
        with pytest.raises(HetCompError, match="no GPU is usable.*--use_gpu=False"):
            config_of(base, **keys)
    # not asked for explicitly (RecBole's default use_gpu: True): the CPU, as before
    assert config_of(base)["device"] == torch.device("cpu")


# --- defect 3: scores on another device than the parameters -------------------------------
class CPUScorer(GeneralRecommender):
    """Parameters on the meta device (as a model sharded elsewhere), scores computed on the CPU
    from the user ids, as RecBole's EASE / ADMMSLIM return them."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))
        rng = np.random.default_rng(0)
        self.table = torch.from_numpy(rng.standard_normal((self.n_users, self.n_items)))

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        assert users.device.type == "cpu"  # the run's device, not the parameters'
        return self.table[users].float().view(-1)


@not_under_sim
def test_recorder_scores_on_another_device_than_the_parameters(tiny):
    _, base = tiny
    config = Config("BPR", "tiny", config_dict=base)
    split = build_split(config)
    model = CPUScorer(config, split.train)
    recorder = TrajectoryRecorder(model, split.train, top_m=10, batch_size=7,
                                  device=config["device"])
    lists = recorder.rank_all()
    history, _, lengths = split.train.history_item_matrix()
    for user in range(1, split.n_users):
        seen = set(history[user, :lengths[user]].tolist()) | {0}
        row = model.table[user].float()
        allowed = [i for i in range(split.n_items) if i not in seen]
        expected = sorted(allowed, key=lambda i: (-row[i].item(), i))[:10]
        assert lists[user].tolist() == expected


# --- defect 6: no host syncs inside per-batch loops -----------------------------------------
# Counted on the simulated accelerator (tests/sim_accelerator.py), which counts every operation
# that would make a CUDA host wait for the device: a value read, a copy to the host, a result
# whose size depends on the data.
def test_a_student_epoch_waits_for_the_device_once_per_batch(tiny):
    """The NaN check is the one host sync per batch, and reading the epoch's loss one more;
    both losses, and the RRD/DCD loop shares the same code."""
    from test_pipeline import _student_trainer

    _, base = tiny
    with simulated_accelerator(), gpu_runs_on_sim():
        trainer, train, _ = _student_trainer({**base, "use_gpu": True, "train_batch_size": 64})
        batches = list(train)  # as the loader gives them: on the host
        assert trainer.device == SIM_DEVICE and len(batches) > 4
        for switched in (False, True):  # overall loss, then rank loss
            trainer.switched = switched
            with count_host_syncs() as syncs:
                trainer._train_epoch(batches, 1)  # epoch 1: no knowledge step due
            assert dict(syncs) == {"aten::_local_scalar_dense": len(batches) + 1}


def test_recording_waits_for_the_device_once_per_list_kind_not_per_batch(tiny):
    _, base = tiny
    with simulated_accelerator(), gpu_runs_on_sim():
        config = Config("BPR", "tiny", config_dict={**base, "use_gpu": True})
        split = build_split(config)
        model = get_model("BPR")(config, split.train).to(config["device"])
        for batch_size in (7, 1000):  # 6 batches of users, then one
            recorder = TrajectoryRecorder(model, split.train, top_m=5, batch_size=batch_size,
                                          device=config["device"])
            with count_host_syncs() as syncs:
                recorder.rank_users_both(recorder.all_users())
            assert dict(syncs) == {"aten::_to_copy": 2}  # the two lists, copied once each


# --- defect 7: ties broken by item id -----------------------------------------------------
def test_ties_are_broken_by_the_lower_item_id():
    rng = np.random.default_rng(1)
    # few distinct values: many ties, also across the cut
    scores = torch.from_numpy(rng.integers(0, 4, size=(64, 300)).astype(np.float32))
    exclude = torch.from_numpy(rng.random((64, 300)) < 0.2)
    exclude[:, 0] = True
    got = masked_topk(scores, exclude, 40)
    for row in range(64):
        allowed = [i for i in range(300) if not exclude[row, i]]
        expected = sorted(allowed, key=lambda i: (-scores[row, i].item(), i))[:40]
        assert got[row].tolist() == expected
    # the accelerator path (every row exact) gives the same lists on the same scores
    for exact in (True, False):
        values, ids = topk_by_id(scores.masked_fill(exclude, float("-inf")), 40, exact=exact)
        assert torch.equal(ids, got)


def test_a_tie_only_across_the_cut_is_broken_by_the_lower_item_id():
    # The first k - 1 places hold distinct scores and the k-th place is a tie among hundreds of
    # zero-scored items: the top-k values alone show no tie, only the (k+1)-th one does. By the
    # spec's rule (score, then the smaller item id) the k-th item is the smallest allowed zero.
    gen = torch.Generator().manual_seed(3)
    rows, n, k = 32, 500, 10
    scores = torch.zeros(rows, n)
    for row in range(rows):
        scores[row, torch.randperm(n, generator=gen)[:k - 1]] = torch.arange(
            k - 1, 0, -1, dtype=torch.float32)
    exclude = torch.zeros(rows, n, dtype=torch.bool)
    exclude[:, 0] = True
    got = masked_topk(scores, exclude, k)
    for row in range(rows):
        expected = sorted(range(1, n), key=lambda i: (-scores[row, i].item(), i))[:k]
        assert got[row].tolist() == expected
    for exact in (True, False):
        assert torch.equal(topk_by_id(scores.masked_fill(exclude, float("-inf")), k,
                                      exact=exact)[1], got)


def test_recorder_lists_break_ties_by_id(tiny):
    _, base = tiny
    config = Config("BPR", "tiny", config_dict=base)
    split = build_split(config)
    model = CPUScorer(config, split.train)
    model.table = torch.zeros_like(model.table)  # every item ties
    lists = TrajectoryRecorder(model, split.train, top_m=5, device="cpu").rank_all()
    history, _, lengths = split.train.history_item_matrix()
    for user in range(1, split.n_users):
        seen = set(history[user, :lengths[user]].tolist())
        assert lists[user].tolist() == [i for i in range(1, split.n_items) if i not in seen][:5]


# --- defect 5: element budgets --------------------------------------------------------------
@pytest.mark.parametrize("n_items, users", [(3706, 565), (25181, 83), (40981, 51),
                                            (1_000_000, 2)])
def test_cpu_loss_chunks_keep_the_measured_budget(tiny, n_items, users):
    _, base = tiny
    config = Config("HetCompStudent", "tiny", config_dict=base)
    assert batch_users(config, "loss_chunk_users", "loss", n_items) == users
    assert batch_users(config, "knowledge_batch_size", "ranking", n_items) == max(
        1, (1 << 24) // n_items)
    config["loss_chunk_users"] = 9  # a value set by the user wins
    assert batch_users(config, "loss_chunk_users", "loss", n_items) == 9


@not_under_sim
def test_cuda_budgets_fit_the_memory_budget(tiny, cuda_present):
    _, base = tiny
    big = config_of(base, gpu_memory_budget=80)
    assert dense_elements(big, "loss") == 1 << 26  # capped: bigger batches only hold memory
    small = config_of(base, gpu_memory_budget=0.5)
    assert dense_elements(small, "loss") == (1 << 29) // (4 * 12)  # 0.5 GiB over 12 tensors
    assert dense_elements(small, "loss") * 4 * 12 <= 0.5 * 2 ** 30


@not_under_sim
def test_default_gpu_budget_is_half_the_free_memory(tiny, cuda_present, monkeypatch):
    """Without gpu_memory_budget a run may hold half the GPU's free memory at its start in
    dense batch tensors (properties/overall.yaml); the budget then sizes the batches."""
    _, base = tiny
    asked = []

    def mem_get_info(device=None):
        asked.append(device)
        return 2 ** 30, 80 * 2 ** 30  # (free, total): 1 GiB free of 80

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    config = config_of(base)
    assert config["gpu_memory_budget"] is None and asked == [torch.device("cuda")]
    assert memory_budget_bytes(config) == 2 ** 29
    assert dense_elements(config, "loss") == 2 ** 29 // (4 * 12)  # 12 live tensors of float32
    assert config["eval_batch_size"] == 2 ** 29 // (4 * 4)  # RecBole's full sort: 4 of them


def test_stopwatch_on_cuda_reads_device_time_and_waits_once(monkeypatch):
    """On CUDA each section records a pair of events (no host wait); reading ``seconds``
    waits once, for the last event, and adds the device's times between the pairs."""
    log = []

    class Event:  # torch.cuda.Event's interface; elapsed_time is in milliseconds
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = len(log)
            log.append("record")

        def synchronize(self):
            log.append("synchronize")

        def elapsed_time(self, end):
            return 250.0 * (end.at - self.at)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    watch = Stopwatch("cuda")
    for _ in range(3):
        with watch:
            pass
    assert log == ["record"] * 6  # nothing waited for the device yet
    assert watch.seconds == pytest.approx(3 * 0.25)
    assert log.count("synchronize") == 1
    assert watch.seconds == pytest.approx(0.75) and log.count("synchronize") == 1


def test_stopwatch_on_cpu_adds_sections():
    watch = Stopwatch("cpu")
    for _ in range(3):
        with watch:
            sum(range(10000))
    assert 0 < watch.seconds < 1
