"""A simulated accelerator: device-placement bugs caught on a machine without a GPU.

The defects of issue 9 were all of one kind: a tensor made on the CPU (``torch.arange`` without
``device=``, a mask on the parameters' device, a batch never moved) meeting the run's device.
On a real GPU that is ``RuntimeError: Expected all tensors to be on the same device``; on a
CPU-only machine every tensor is on the CPU and nothing fails. This module gives the run a
second device that is not the CPU and computes on the CPU underneath:

- ``SimTensor`` reports ``device='meta'`` and holds a real CPU tensor; every operation on it
  runs on that CPU tensor and wraps the result again, so models train and evaluate for real.
  (``meta`` stands in for ``cuda`` because a CPU-only torch has no CUDA device guard, which
  autograd needs; ``meta`` has one. Code paths keyed on ``device.type == 'cuda'`` -- timers,
  memory budgets -- are therefore not exercised here, only placement.)
- ``SimMode`` sees every operation and applies CUDA's placement rules: a dense CPU tensor
  meeting a device tensor is an error (0-dim CPU tensors are allowed, as on CUDA; index tensors
  may stay on the CPU, as on CUDA; copies between devices are allowed); factories given
  ``device='meta'`` make ``SimTensor``s.
- Host reads follow CUDA: ``.item()`` and ``.tolist()`` work, ``.numpy()`` is refused; a
  random generator must be on the device of its draw; threads started inside obey the same
  rules (torch's modes are per thread).
- Host synchronisations are counted (``count_host_syncs``): every operation on device tensors
  that makes a CUDA host wait for the device (a value read, a copy to the host, a result whose
  size depends on the data), so a per-batch loop's syncs can be held to a budget on the CPU.

Use: ``with simulated_accelerator(): ...`` and put the run on ``SIM_DEVICE``; or, with
``with gpu_runs_on_sim(): ...`` as well, let every Config that would pick CUDA (and serving's
``device='cuda'``) pick ``SIM_DEVICE``. The suite runs whole under both with
``HETCOMP_TEST_DEVICE=sim`` (tests/conftest.py); a script runs under both with
``python tests/sim_accelerator.py SCRIPT|-m MODULE [ARGS...]``.
"""

import collections
import contextlib
import os
import runpy
import sys
import threading

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

SIM_DEVICE = torch.device("meta")
_CPU = torch.device("cpu")

# Operations CUDA allows across devices: copies, and (for indexing) index tensors on the CPU.
_COPIES = {"aten::copy_", "aten::_to_copy", "aten::_copy_from", "aten::_copy_from_and_resize",
           "aten::lift_fresh", "aten::lift_fresh_copy", "aten::lift", "aten::detach",
           "aten::alias", "aten::set_"}
_INDEXING = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_",
             "aten::_unsafe_index", "aten::_unsafe_index_put"}


#: Operations that make a CUDA host wait for the device when their input is on it (what
#: ``torch.cuda.set_sync_debug_mode`` reports): reading a value, copying to the host, and
#: results whose size depends on the data.
_HOST_SYNCS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal", "aten::nonzero",
               "aten::masked_select", "aten::_unique", "aten::_unique2", "aten::unique_dim",
               "aten::unique_consecutive", "aten::bincount", "aten::repeat_interleave"}
_sync_counters = []  # the Counters of the count_host_syncs blocks now open


def _is_sim(device):
    """Is ``device`` (a torch.device or its name) the simulated one?"""
    return torch.device(device).type == SIM_DEVICE.type


def _waits_for_device(name, args, kwargs):
    """Would this operation, with device tensors among its inputs, make a CUDA host wait?"""
    if name == "aten::_to_copy":  # .cpu(), .to('cpu')
        return kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "cpu"
    if name == "aten::copy_":  # into a host tensor
        return not isinstance(args[0], SimTensor)
    if name == "aten::repeat_interleave":  # it must count its output unless given its size
        return kwargs.get("output_size") is None
    if name in _INDEXING:  # a boolean mask as an index is a nonzero() inside
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                   for i in args[1] if i is not None)
    return name in _HOST_SYNCS


#: HETCOMP_SIM_ROUNDING=1: products and sums on the device come out one unit in the last place
#: off for about half their values, deterministically (the same inputs give the same outputs),
#: as CUDA's kernels add in another order than the CPU's: it finds tests that pass only with
#: the CPU's exact floats. Off by default (results are then the CPU's to the bit).
_ROUNDING = os.environ.get("HETCOMP_SIM_ROUNDING", "0") not in ("", "0")
_REDUCTIONS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv",
               "aten::dot", "aten::sum", "aten::_sparse_mm", "aten::_sparse_addmm",
               "aten::logsumexp", "aten::cumsum"}
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _reround(out):
    """Flip the last mantissa bit of the values whose bits hash to 1."""
    if isinstance(out, torch.Tensor) and out.dtype in _BITS and out.layout == torch.strided \
            and out.is_contiguous():
        bits = out.view(_BITS[out.dtype])
        bits.bitwise_xor_(((bits >> 7) ^ (bits >> 13)) & 1)
    return out


def _count_sync(name):
    for counter in _sync_counters:
        counter[name] += 1


@contextlib.contextmanager
def count_host_syncs():
    """``with count_host_syncs() as syncs: ...``: ``syncs`` counts, per operation, the host
    synchronisations a CUDA run of the block would make (inside ``simulated_accelerator``)."""
    counter = collections.Counter()
    _sync_counters.append(counter)
    try:
        yield counter
    finally:
        _sync_counters.remove(counter)


class DevicePlacementError(RuntimeError):
    """What a CUDA run would raise: tensors on two devices met in one operation."""


class SimTensor(torch.Tensor):
    """A tensor on the simulated device: a real CPU tensor inside, ``device`` outside."""

    @staticmethod
    def __new__(cls, data):
        kwargs = dict(dtype=data.dtype, layout=data.layout, device=SIM_DEVICE,
                      requires_grad=False)
        if data.layout == torch.strided:
            kwargs.update(strides=data.stride(), storage_offset=data.storage_offset())
        wrapper = torch.Tensor._make_wrapper_subclass(cls, data.size(), **kwargs)
        wrapper._data = data
        return wrapper

    @property
    def is_meta(self):
        # it holds data: torch's "meta tensors have no storage" shortcuts (nn.init's no-ops,
        # load_state_dict's warning) must not apply
        return False

    def __reduce_ex__(self, protocol):
        # torch.save: stored as its CPU tensor (a real CUDA tensor is stored with its device;
        # loading puts it back with map_location or load_state_dict's copy)
        return self._data.__reduce_ex__(protocol)

    def __repr__(self, *, tensor_contents=None):
        return f"SimTensor({self._data!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _is_dense_cpu(x):
    # CUDA lets a 0-dim CPU tensor (a scalar) meet a device tensor.
    return isinstance(x, torch.Tensor) and not isinstance(x, SimTensor) and x.dim() > 0 \
        and x.device.type == "cpu"


def _check_placement(name, args, kwargs, leaves, on_device):
    """``leaves``: the tensors and values of ``args`` and ``kwargs``; ``on_device``: whether a
    SimTensor is among them."""
    if name in _COPIES:
        return
    if name in _INDEXING:
        # self (and the values put) decide; index tensors may be on the CPU
        leaves = pytree.tree_leaves([args[0]] + list(args[2:]) + list(kwargs.values()))
        on_device = any(isinstance(x, SimTensor) for x in leaves)
    if on_device and any(_is_dense_cpu(x) for x in leaves):
        raise DevicePlacementError(
            f"Expected all tensors to be on the same device, but found at least two devices, "
            f"{SIM_DEVICE.type} and cpu! (simulated accelerator, in {name})")
    if name in _INDEXING and _is_dense_cpu(args[0]):
        if any(isinstance(x, SimTensor) for x in pytree.tree_leaves(args[1])):
            raise DevicePlacementError(
                f"indices should be either on cpu or on the same device as the indexed tensor "
                f"(cpu) (simulated accelerator, in {name})")


def _run(func, args, kwargs):
    name = func._schema.name
    leaves = pytree.tree_leaves((args, kwargs))
    for x in leaves:
        if isinstance(x, torch.Tensor) and not isinstance(x, SimTensor) and \
                x.device.type == SIM_DEVICE.type:
            raise RuntimeError(
                f"simulated accelerator: a {SIM_DEVICE.type} tensor without data reached {name} "
                "(made by a factory the harness does not intercept: see _DATA_FACTORIES)")
    on_device = any(isinstance(x, SimTensor) for x in leaves)
    _check_placement(name, args, kwargs, leaves, on_device)
    wrappers = {}

    def unwrap(x):
        if isinstance(x, SimTensor):
            wrappers[id(x._data)] = x
            return x._data
        return x

    if on_device and _sync_counters and _waits_for_device(name, args, kwargs):
        _count_sync(name)
    args, kwargs = pytree.tree_map(unwrap, (args, kwargs))
    if kwargs.get("device") is not None:
        on_device = _is_sim(kwargs["device"])
        kwargs["device"] = _CPU
    if name == "aten::copy_":
        on_device = isinstance(wrappers.get(id(args[0])), SimTensor)
    out = func(*args, **kwargs)
    if on_device and _ROUNDING and name in _REDUCTIONS:
        out = _reround(out)

    def wrap(x):
        if not isinstance(x, torch.Tensor):
            return x
        if id(x) in wrappers:  # in-place and out= results: the caller's own object
            return wrappers[id(x)]
        return SimTensor(x) if on_device else x

    return pytree.tree_map(wrap, out)


class SimMode(TorchDispatchMode):
    """Sees every operation: placement rules for all, device factories for the simulated one."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


# Factories from data copy the data to the device below the dispatcher, where SimMode cannot
# see it: they are made on the CPU and moved. (new_tensor's device defaults to its tensor's.)
_DATA_FACTORIES = (torch.tensor, torch.as_tensor, torch.asarray, torch.sparse_coo_tensor,
                   torch.sparse_csr_tensor, torch.Tensor.new_tensor)


_REAL_GENERATOR = torch.Generator


class SimGenerator(_REAL_GENERATOR):
    """A generator of the simulated device: draws on the CPU, reports ``SIM_DEVICE``."""

    def __new__(cls, device=None):
        return super().__new__(cls, "cpu")

    @property
    def device(self):
        return SIM_DEVICE


class _Generator(_REAL_GENERATOR):
    """What ``torch.Generator(device)`` makes under the harness."""

    def __new__(cls, device="cpu"):
        if _is_sim(device):
            return SimGenerator()
        return _REAL_GENERATOR(device)


def _check_generator(func, args, kwargs):
    """CUDA refuses a generator of another device than the draw's."""
    generator = kwargs.get("generator")
    if not isinstance(generator, _REAL_GENERATOR):
        return
    if kwargs.get("device") is not None:
        draw_on_device = _is_sim(kwargs["device"])
    else:  # in-place draws and draws from a tensor (multinomial, bernoulli, ...)
        draw_on_device = any(isinstance(x, SimTensor) for x in pytree.tree_leaves(args))
    if draw_on_device != isinstance(generator, SimGenerator):
        wanted = SIM_DEVICE.type if draw_on_device else "cpu"
        raise DevicePlacementError(
            f"Expected a '{wanted}' device type for generator but found "
            f"'{generator.device.type}' (simulated accelerator, in {func.__name__})")


def _index_on_cpu(index):
    if isinstance(index, tuple):
        return tuple(_index_on_cpu(i) for i in index)
    if isinstance(index, list):
        return torch.tensor(index)
    return index


class HostReads(TorchFunctionMode):
    """Factories from data, generators' devices; CUDA's host reads: ``.tolist()`` copies to the
    host, ``.numpy()`` is refused."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        _check_generator(func, args, kwargs)
        if func in _DATA_FACTORIES and (
                _is_sim(kwargs["device"]) if kwargs.get("device") is not None
                else func is torch.Tensor.new_tensor and isinstance(args[0], SimTensor)):
            kwargs["device"] = _CPU
            return func(*args, **kwargs).to(SIM_DEVICE)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and \
                isinstance(args[0], SimTensor):
            raise TypeError(f"can't convert {SIM_DEVICE.type} device type tensor to numpy. "
                            "Use Tensor.cpu() to copy the tensor to host memory first.")
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and \
                isinstance(args[0], SimTensor):
            # torch turns Python lists in an index (and a Python value put) into tensors on
            # the indexed tensor's device below the dispatcher, where SimMode cannot give them
            # data: make them CPU tensors first, which CUDA accepts as the same index/value
            args = (args[0], _index_on_cpu(args[1])) + tuple(
                torch.tensor(v, dtype=args[0].dtype) if isinstance(v, (bool, int, float))
                else v for v in args[2:])
        if func is torch.Tensor.tolist and isinstance(args[0], SimTensor):
            _count_sync("tolist")
            return args[0]._data.tolist()
        return func(*args, **kwargs)


@contextlib.contextmanager
def simulated_accelerator():
    """Every tensor operation inside follows CUDA's placement rules for ``SIM_DEVICE``."""
    # restored as found (harnesses nest)
    autocast, generator, thread_run = torch.autocast, torch.Generator, threading.Thread.run

    def sim_autocast(device_type, *args, **kwargs):
        # torch has no autocast for 'meta'; runs here never enable it (enable_amp is off)
        if device_type == SIM_DEVICE.type:
            device_type, kwargs["enabled"] = "cpu", False
        return autocast(device_type, *args, **kwargs)

    def run_under_harness(thread):
        # torch's modes are per thread: threads started inside (an HTTP server's) get them too
        with HostReads(), SimMode():
            thread_run(thread)

    torch.autocast, torch.Generator = sim_autocast, _Generator
    threading.Thread.run = run_under_harness
    try:
        with HostReads(), SimMode():
            yield
    finally:
        torch.autocast, torch.Generator = autocast, generator
        threading.Thread.run = thread_run


@contextlib.contextmanager
def gpu_runs_on_sim():
    """Configs that would pick CUDA (RecBole's and this package's) and serving's ``cuda``
    devices give ``SIM_DEVICE`` instead: a run configured for a GPU machine runs here."""
    from recbole.config import Config as RecBoleConfig

    from recbole_hetcomp.config import Config as HetCompConfig
    from recbole_hetcomp.serving import recommender

    restore = []
    for cls in (RecBoleConfig, HetCompConfig):
        original = cls.__dict__["_init_device"]

        def init_device(self, _original=original):
            available = torch.cuda.is_available
            torch.cuda.is_available = lambda: True  # the choice a GPU machine would make
            try:
                _original(self)
            finally:
                torch.cuda.is_available = available
            if self.final_config_dict["device"].type == "cuda":
                self.final_config_dict["device"] = SIM_DEVICE

        cls._init_device = init_device
        restore.append((cls, "_init_device", original))
    serving_device = recommender.serving_device

    def sim_serving_device(device, flag="device="):
        if str(device) in ("cuda", "cuda:0"):  # one simulated GPU
            return SIM_DEVICE
        return serving_device(device, flag)

    recommender.serving_device = sim_serving_device
    restore.append((recommender, "serving_device", serving_device))
    try:
        yield
    finally:
        for owner, name, value in restore:
            setattr(owner, name, value)


def main(argv):
    """``python tests/sim_accelerator.py SCRIPT|-m MODULE [ARGS...]``: as ``python`` would run
    it, configured for a GPU, on the simulated accelerator."""
    if not argv or argv[0] == "-m" and len(argv) < 2:
        raise SystemExit("usage: python tests/sim_accelerator.py SCRIPT|-m MODULE [ARGS...]")
    import recbole_hetcomp  # noqa: F401  (RecBole's mends, before RecBole is imported)

    # the script may ask this harness (its counters) by name: it runs as __main__ here
    sys.modules.setdefault("sim_accelerator", sys.modules[__name__])

    with simulated_accelerator(), gpu_runs_on_sim():
        if argv[0] == "-m":
            sys.argv = [argv[1]] + list(argv[2:])
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
