"""What the benchmark scripts share: synthetic teacher knowledge, a timer, the report ending."""

import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recbole_hetcomp.atomic import write_text_atomically  # noqa: E402


def synthetic_rankings(train, n_items, x, c, m, gen, chunk=1024):
    """Teacher trajectories and observed rankings for given training lists.

    Each user's lists are drawn from a per-user pool of popular non-training items, ranked by a
    shared per-user preference plus teacher/snapshot noise that shrinks along the trajectory, so
    teachers and snapshots overlap as real ones do.

    Parameters
    ----------
    train : torch.Tensor
        (U, W) long training items, 0-padded.
    n_items : int
        Items, padding item 0 included.
    x, c, m : int
        Teachers, snapshots, list length.
    gen : torch.Generator

    Returns
    -------
    rankings : (X, C, U, M) int32 top-M lists of unobserved items (user 0 empty)
    observed : (X, U, W) int32 teacher rankings of each user's training items, 0-padded
    """
    n_users, width = train.shape
    pool_size = 3 * m
    # Long-tailed item popularity (item 0 is padding and never drawn).
    popularity = 1.0 / torch.arange(1, n_items, dtype=torch.float64) ** 0.8
    rankings = torch.zeros(x, c, n_users, m, dtype=torch.int32)
    observed = torch.zeros(x, n_users, width, dtype=torch.int32)
    for start in range(0, n_users, chunk):  # chunks: the generator must not set the peak
        end = min(start + chunk, n_users)
        b = end - start
        held = train[start:end] > 0
        draw = torch.multinomial(popularity.expand(b, -1), pool_size + width,
                                 replacement=False, generator=gen) + 1
        fresh = ~(draw.unsqueeze(2) == train[start:end].unsqueeze(1)).any(2)
        order = torch.argsort((~fresh).float(), dim=1, stable=True)[:, :pool_size]
        pool = draw.gather(1, order)                                  # (B, pool) unobserved
        preference = torch.randn(b, pool_size, generator=gen)
        for s in range(c):
            noise_scale = 1.5 * (c - s) / c  # later snapshots agree more with each other
            noisy = preference + noise_scale * torch.randn(x, b, pool_size, generator=gen)
            top = noisy.topk(m, dim=2).indices                                 # (X, B, M)
            rankings[:, s, start:end] = pool.expand(x, -1, -1).gather(2, top).int()
        like = (torch.randn(b, width, generator=gen)
                + 0.5 * torch.randn(x, b, width, generator=gen))
        like = like.masked_fill(~held, float("-inf"))
        ranked = train[start:end].expand(x, -1, -1).gather(2, like.argsort(2, descending=True))
        observed[:, start:end] = ranked.int()
    rankings[:, :, 0] = 0
    observed[:, 0] = 0
    return rankings, observed


def stored_trajectories(config, split, logger):
    """The run's teachers' trajectories from the store (never trained here), in order."""
    from recbole_hetcomp.errors import HetCompError
    from recbole_hetcomp.teachers import load_teacher, teacher_config

    trajectories = []
    for name in config["teachers"]:
        trajectory = load_teacher(teacher_config(config, name), split, logger)
        if trajectory is None:
            raise HetCompError(f"no stored trajectory of {name} for this split and settings: "
                               "run the pipeline first (or pass the run's --key=value)")
        trajectories.append(trajectory)
    return trajectories


def timed(fn, repeats, setup=None):
    """Median wall and CPU seconds of ``fn`` over ``repeats`` runs, and its last result.

    ``setup`` runs untimed before each run and its result is passed to ``fn``. CPU time (this
    process's) is reported beside wall time because the machine may be shared: with one torch
    thread it equals wall time on an idle machine, and it does not count time spent waiting for a
    core that another process holds.
    """
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        arg = setup() if setup else None
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn(arg) if setup else fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return (statistics.median(walls), statistics.median(cpus)), result


def emit(lines, out=None):
    """Print the report ``lines`` (plus the load average, to judge noise) and write ``out``."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = "\n".join(list(lines) + [f"load average at the end: {load}"]) + "\n"
    print(text)
    if out:
        write_text_atomically(out, text)
