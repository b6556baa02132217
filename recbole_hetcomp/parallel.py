"""Teachers and seeds as Ray tasks: ``teacher_workers`` / ``seed_workers`` > 1.

Ray is an optional extra (``pip install "recbole-hetcomp[ray]"``) imported only here, and only
when a run asks for more than one worker. For each phase (the teachers, then the seeds) an
embedded local Ray is started with room for that many tasks, or the cluster at ``ray_address``
is joined (or a Ray this process already started is used as it is). At most ``*_workers``
tasks run at once, each with the driver's torch threads divided among them.

A task loads the dataset itself, rebuilds the split and checks its fingerprint against the
driver's, trains, and hands its results back through Ray's object transport (a trajectory; a
seed's rows and best-state weights). Only the driver writes the trajectory store and the run
state, as soon as each task returns, so workers need no shared filesystem (only the dataset
at the same path) and a stopped run keeps everything that had finished. The first task that
fails stops the run: the tasks still running are cancelled and the error is one line naming
the teacher or seed and the worker's message.
"""

import os
import time
import traceback
from logging import getLogger

import torch

from recbole_hetcomp.errors import HetCompError

RAY_EXTRA = 'pip install "recbole-hetcomp[ray]"'


def require_ray(key, workers):
    """The ray module, or one line naming the extra that provides it."""
    try:
        import ray
    except ImportError:
        raise HetCompError(f"{key}: {workers} runs on Ray, which is not installed: "
                           f"{RAY_EXTRA} (or set {key}: 1)") from None
    return ray


def task_gpus(config, key):
    """GPUs per task (``teacher_gpus`` / ``seed_gpus``); ~ = 1 when the run uses CUDA."""
    gpus = config[key]
    if gpus is None:
        return 1 if config["device"].type == "cuda" else 0
    return gpus


def check_parallel(config):
    """Refuse, before anything trains, worker settings that cannot be honoured: the settings'
    own contradictions first (they need no install to fix), then a missing Ray."""
    for key, gpus_key in (("teacher_workers", "teacher_gpus"), ("seed_workers", "seed_gpus")):
        gpus = config[gpus_key]
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise HetCompError(f"{gpus_key} must be a fraction of one GPU or a whole number "
                               f"of GPUs (Ray's rule), got {gpus}")
        if gpus and config[key] > 1 and config["use_gpu"] is False:
            raise HetCompError(f"{gpus_key}: {gpus} asks for GPUs but use_gpu is False: set "
                               f"--{gpus_key}=0 or drop --use_gpu=False")
        if config[key] > 1:
            require_ray(key, config[key])
    address = config["ray_address"]
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise HetCompError(f"ray_address must be a Ray address such as auto or "
                           f"ray://head:10001 (or ~ for a local Ray), got {address!r}")


# --- the driver's side -----------------------------------------------------------------------
class RayPool:
    """Ray tasks of one phase, at most ``workers`` at once, their results handed to the driver
    as each finishes.

    Parameters
    ----------
    config : Config
        The run's Config (``ray_address``).
    what : str
        ``teachers`` or ``seeds``, for the log.
    workers : int
        Tasks in flight at once (already capped at the number of tasks).
    gpus : float
        GPUs per task (Ray's ``num_gpus``).
    stage : callable
        The pipeline's logger of stages.
    """

    def __init__(self, config, what, workers, gpus, stage, logger):
        self.config, self.what, self.workers, self.gpus = config, what, workers, gpus
        self.stage, self.logger = stage, logger
        # Identical results need the same threads per model as a sequential run (README).
        self.threads = max(1, torch.get_num_threads() // workers)
        self.ray, self.own = None, False

    def __enter__(self):
        ray = self.ray = require_ray(f"{self.what[:-1]}_workers", self.workers)
        address = self.config["ray_address"]
        if ray.is_initialized():
            where = "the Ray this process had started"
        elif address:
            try:
                ray.init(address=address)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise HetCompError(f"cannot join the Ray cluster at ray_address={address}: "
                                   f"{_one_line(exc)}") from None
            self.own, where = True, f"the Ray cluster at {address}"
        else:
            try:
                # Room for exactly the phase's tasks; GPUs are those Ray finds
                # (CUDA_VISIBLE_DEVICES).
                ray.init(num_cpus=self.workers * self.threads, include_dashboard=False)
            except (OSError, RuntimeError, ValueError) as exc:
                raise HetCompError(f"cannot start a local Ray for {self.what[:-1]}_workers="
                                   f"{self.workers}: {_one_line(exc)}") from None
            self.own, where = True, "a local Ray"
        # A task asking for more than the cluster has would wait for ever: say so instead.
        resources = ray.cluster_resources()
        for name, wanted, key in (("CPU", self.threads, "torch_threads"),
                                  ("GPU", self.gpus, f"{self.what[:-1]}_gpus")):
            if wanted and resources.get(name, 0) < wanted:
                self.__exit__(None, None, None)
                raise HetCompError(f"each {self.what[:-1]} task needs {wanted:g} {name} "
                                   f"({key}), but {where} has {resources.get(name, 0):g}: "
                                   f"lower --{key}"
                                   + (" (0 trains on the CPU)" if name == "GPU" else ""))
        self.stage(f"{self.what} on {where}: {self.workers} at once, {self.threads} torch "
                   f"thread(s) and {self.gpus:g} GPU each")
        return self

    def __exit__(self, *exc):
        if self.own:
            self.ray.shutdown()
            self.own = False
        return False

    def run(self, jobs, shared, done):
        """Run ``jobs``, ``[(label, work, payload)]``: ``work(**payload, shared=shared)`` in a
        worker, then ``done(label, its value)`` in the driver as each finishes.

        ``shared`` (the trajectories) goes to Ray's object store once, for every task.
        """
        ray = self.ray
        # A fresh process per GPU task: CUDA is initialised for the GPU Ray assigned it, and
        # its memory goes back when the task ends. CPU tasks may reuse a warm worker.
        remote = ray.remote(num_cpus=self.threads, num_gpus=self.gpus,
                            max_calls=1 if self.gpus else 0,
                            max_retries=0)(_task)  # a crashed task is an error, not a retry
        shared_ref = ray.put(shared)
        queue, pending = list(jobs), {}
        try:
            while queue or pending:
                while queue and len(pending) < self.workers:
                    label, work, payload = queue.pop(0)
                    ref = remote.remote(work, payload, self.threads, self.gpus, shared_ref)
                    pending[ref] = label
                    self.stage(f"{label}: started as a Ray task")
                ready, _ = ray.wait(list(pending), num_returns=1)
                label = pending.pop(ready[0])
                try:
                    answer = ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # the worker died, or could not start
                    # Ray's message carries a traceback: its first line says what happened
                    first = next((line for line in str(exc).splitlines() if line.strip()),
                                 type(exc).__name__)
                    raise HetCompError(f"{label} failed: its Ray task did not complete "
                                       f"({type(exc).__name__}: {first.strip()})") from None
                if "error" in answer:
                    self.logger.debug(f"{label}: the worker's traceback:\n{answer['traceback']}")
                    raise HetCompError(f"{label} failed on Ray worker {answer['worker']}: "
                                       f"{answer['error']}")
                self.stage(f"{label}: finished on Ray worker {answer['worker']} in "
                           f"{answer['seconds']:.1f}s ({answer['split_seconds']:.1f}s of it "
                           f"rebuilding the split; worker's peak memory so far "
                           f"{answer['peak_rss_gb']:.2f} GB)")
                done(label, answer["value"])
        finally:
            for ref in pending:  # stopped by a failure or Ctrl-C: what still runs is dropped
                ray.cancel(ref, force=True)


def parallel_teachers(config, split, logger, stage):
    """The run's teachers (stored ones taken from the store, the others trained as Ray tasks);
    returns (trajectories in ``teachers`` order, packages of those trained, with
    ``export_teachers``)."""
    from recbole_hetcomp.pipeline import _export_teacher, restore_model
    from recbole_hetcomp.teachers import load_teacher, store_trajectory, teacher_config

    names = list(config["teachers"])
    tconfigs = {name: teacher_config(config, name) for name in names}
    trajectories, packages = {}, {}
    for name in names:
        trajectory = load_teacher(tconfigs[name], split, logger)
        if trajectory is not None:
            trajectories[name] = trajectory
            if config["export_teachers"]:
                packages[name] = _export_teacher(tconfigs[name], split, trajectory, logger)
    missing = [name for name in names if name not in trajectories]

    labels = {f"teacher {name}": name for name in missing}

    def done(label, value):
        name = labels[label]
        trajectory, state = value
        store_trajectory(tconfigs[name], split, trajectory, logger)
        if config["export_teachers"]:
            trajectory.model = restore_model(tconfigs[name], split, state)
            packages[name] = _export_teacher(tconfigs[name], split, trajectory, logger)
            trajectory.model = None  # teachers are not kept in memory
        trajectories[name] = trajectory

    if missing:
        workers = min(config["teacher_workers"], len(missing))
        jobs = [(label, _train_teacher,
                 {"run_config": config, "tconfig": tconfigs[name],
                  "fingerprint": split.fingerprint, "export": bool(config["export_teachers"])})
                for label, name in labels.items()]
        with RayPool(config, "teachers", workers, task_gpus(config, "teacher_gpus"), stage,
                     logger) as pool:
            pool.run(jobs, None, done)
    return ([trajectories[name] for name in names],
            {name: packages[name] for name in names if name in packages})


def parallel_seeds(config, split, trajectories, weights, seeds, logger, stage, keep):
    """Train ``seeds`` as Ray tasks; ``keep(outcome)`` runs in the driver as each finishes."""
    workers = min(config["seed_workers"], len(seeds))
    jobs = [(f"seed {seed}", _train_seed,
             {"config": config, "fingerprint": split.fingerprint, "seed": seed,
              "weights": weights})
            for seed in seeds]
    with RayPool(config, "seeds", workers, task_gpus(config, "seed_gpus"), stage,
                 logger) as pool:
        pool.run(jobs, trajectories, lambda label, outcome: keep(outcome))


# --- the worker's side -----------------------------------------------------------------------
def _task(work, payload, threads, gpus, shared):
    """Run ``work`` in a Ray worker; its result, or its error as one line (plus the traceback
    for the log), comes back as a value so that the driver decides what a failure means."""
    start = time.perf_counter()
    try:
        import ray

        worker = f"pid {os.getpid()} on {ray.util.get_node_ip_address()}"
    except Exception:  # noqa: BLE001 - a name for the log only
        worker = f"pid {os.getpid()}"
    _SPLIT_SECONDS.clear()
    try:
        _enter_worker(threads, gpus, [c for c in payload.values() if _is_config(c)])
        value = work(**payload, shared=shared)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the driver as one line
        return {"error": _one_line(exc), "traceback": traceback.format_exc(), "worker": worker}
    return {"value": value, "worker": worker, "seconds": time.perf_counter() - start,
            "split_seconds": sum(_SPLIT_SECONDS), "peak_rss_gb": _peak_rss_gb()}


def _peak_rss_gb():
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 30 if sys.platform == "darwin" else 1 << 20)


def _enter_worker(threads, gpus, configs):
    """Give the task the threads and device the driver planned for it."""
    torch.set_num_threads(threads)
    if gpus and not torch.cuda.is_available():
        raise HetCompError(f"this Ray worker was given {gpus:g} GPU, but its torch "
                           f"{torch.__version__} sees no CUDA device")
    device = torch.device("cuda" if gpus else "cpu")
    for config in configs:
        # RecBole's Trainer creates checkpoint_dir with an exists-then-makedirs check: two
        # tasks starting together race on it (FileExistsError in the loser). Make it first.
        if config["checkpoint_dir"]:
            os.makedirs(config["checkpoint_dir"], exist_ok=True)
        config["device"], config["use_gpu"] = device, bool(gpus)
        # Ray chose this task's GPU (CUDA_VISIBLE_DEVICES, '' without one); the Configs built
        # here (the baseline's, the distillation baselines') must keep that choice instead of
        # redoing it from a gpu_id or use_gpu given to the run, which they would inherit.
        config.external_config_dict.pop("gpu_id", None)
        config.external_config_dict["use_gpu"] = bool(gpus)


#: Seconds this worker's current task spent rebuilding the split (a cost of running as a task:
#: the sequential run builds it once), reported back to the driver's log.
_SPLIT_SECONDS = []


def _worker_split(config, fingerprint):
    """The run's split, rebuilt here from the dataset files, checked against the driver's."""
    from recbole_hetcomp.data.split import build_split

    start = time.perf_counter()
    split = build_split(config)
    _SPLIT_SECONDS.append(time.perf_counter() - start)
    if split.fingerprint != fingerprint:
        raise HetCompError(
            f"the dataset at {config['data_path']} gives this worker another split than the "
            f"driver's (fingerprint {split.fingerprint[:12]}, driver {fingerprint[:12]}): every "
            "worker must read the same dataset files")
    return split


def _train_teacher(run_config, tconfig, fingerprint, export, shared=None):
    """A teacher trained with recording: (its trajectory, not stored; its best-state weights
    when they are to be packaged, else None)."""
    from recbole_hetcomp.serving.package import plain_state
    from recbole_hetcomp.teachers import train_teacher

    split = _worker_split(run_config, fingerprint)
    trajectory = train_teacher(tconfig, split, getLogger())
    state = plain_state(trajectory.model) if export else None
    trajectory.model = None  # the weights travel as plain tensors, the model stays here
    return trajectory, state


def _train_seed(config, fingerprint, seed, weights, shared):
    """One seed's outcome (``pipeline.train_seed``) from the run's trajectories (``shared``)."""
    from recbole_hetcomp.pipeline import train_seed
    from recbole_hetcomp.variants import plan_variants

    split = _worker_split(config, fingerprint)
    history = split.train.history_item_matrix()[0]
    logger = getLogger()
    return train_seed(config, split, shared, history, seed, logger, weights,
                      plan_variants(config, shared), stage=logger.info)


def _is_config(value):
    from recbole_hetcomp.config import Config

    return isinstance(value, Config)


def _one_line(exc):
    """``exc`` as one line: its message (with its type unless it is a HetCompError)."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, HetCompError) else f"{type(exc).__name__}: {text}"
