"""The run's device: naming it, timing work on it, and sizing batches for it.

On CUDA, work is queued and the host runs ahead: a wall-clock timer around queued work measures
the queueing, and every ``.item()`` or host copy inside a loop stalls the queue. Timers here
synchronise only at coarse boundaries (``synchronize``) or use CUDA events (``Stopwatch``), and
batch sizes come from element budgets (how many scores one dense users x items tensor may hold)
rather than user counts, so a 1M-item catalogue gets small batches and a GPU gets big ones.
"""

import platform
import time

import torch

# --- element budgets -------------------------------------------------------------------------
#: Scores per dense (users x items) float tensor, per purpose, on the CPU: measured best there
#: (loss: chunks of ~8 MB stay in cache, see HetCompTrainer.distillation_backward; eval:
#: RecBole's eval_batch_size, 409,600; ranking: recorder and knowledge batches, 64 MB each).
CPU_ELEMENTS = {"loss": 1 << 21, "ranking": 1 << 24, "eval": 409600}
#: Upper bounds on CUDA: beyond these a batch no longer runs faster, it only holds memory.
CUDA_ELEMENTS = {"loss": 1 << 26, "ranking": 1 << 26, "eval": 1 << 25}
#: Dense float tensors of that size alive at once at the peak (forward and backward of a loss
#: chunk; scores, masks and top-k of a ranking batch; RecBole's full-sort batch).
LIVE_TENSORS = {"loss": 12, "ranking": 6, "eval": 4}


def is_cuda(device):
    return torch.device(device).type == "cuda"


def synchronize(device):
    """Wait for the device's queued work (a no-op on the CPU): call before reading a timer."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def describe(device):
    """'cuda (NVIDIA H200, 139.8 GiB)' or 'cpu (x86_64, 2 threads)'."""
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2 ** 30:.1f} GiB)"
    if torch.device(device).type == "cpu":
        return (f"cpu ({platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} threads)")
    return str(device)  # another accelerator torch supports: named as torch names it


def memory_budget_bytes(config):
    """Bytes a run may hold in dense batch tensors on its GPU: ``gpu_memory_budget`` GiB, or by
    default half the GPU's free memory when the run starts."""
    budget = config["gpu_memory_budget"]
    if budget is not None:
        return int(budget * 2 ** 30)
    free, _ = torch.cuda.mem_get_info(config["device"])
    return free // 2


def dense_elements(config, purpose):
    """Scores one dense (users x items) float tensor may hold for ``purpose`` ('loss',
    'ranking' or 'eval') on the run's device."""
    if not is_cuda(config["device"]):
        return CPU_ELEMENTS[purpose]
    fit = memory_budget_bytes(config) // (4 * LIVE_TENSORS[purpose])
    return max(1, min(CUDA_ELEMENTS[purpose], fit))


def batch_users(config, key, purpose, n_items):
    """Users per batch: ``config[key]`` when set, else as many as ``dense_elements`` allows."""
    if config[key] is not None:
        return config[key]
    return max(1, dense_elements(config, purpose) // n_items)


# --- timing ----------------------------------------------------------------------------------
class Stopwatch:
    """Total time of many timed sections on ``device`` without a host sync per section.

    ``with stopwatch: ...`` times a section; on CUDA each section records a pair of events
    (the device's time between them) and ``seconds`` synchronises once, when read.
    """

    def __init__(self, device):
        self.cuda = is_cuda(device)
        self._host = 0.0
        self._events = []
        self._start = None

    def __enter__(self):
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._start, end))
        else:
            self._host += time.perf_counter() - self._start
        return False

    @property
    def seconds(self):
        if self._events:
            self._events[-1][1].synchronize()
            self._host += sum(s.elapsed_time(e) for s, e in self._events) / 1000.0
            self._events = []
        return self._host
