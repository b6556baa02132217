"""What serving the distilled model costs, on CiteULike (5,219 users x 25,181 items).

    python benchmarks/bench_serving.py [--requests 2000] [--out results/bench_serving_cpu.md]

Measures, on this machine:
  (a) package load time (in-process, a fresh Python process, and the ``hetcomp-recommend``
      command itself) and size on disk;
  (b) one-user latency p50 / p99 through the Python API, and through HTTP on loopback
      (``hetcomp-serve`` in its own process, a client process with 1, 8 and 32 concurrent
      keep-alive connections, a bounded number of requests each; errors counted);
  (c) time per 1,000 users in batches of 1,000 (top-10, known items excluded): brute force
      and faiss;
  (d) the six-teacher ensemble scored as the pipeline's report scores it: the sum of each
      teacher's full-sort top-50 time per 1,000 users (``serving.cost``), against the student
      measured the same way.

The student and teachers are freshly initialised, not trained: serving cost depends on the
sizes (catalogue, embedding, architecture), not on the learnt values. Known items come from
the real data (CiteULike's users.dat, converted on the fly into a temporary directory).
"""

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import emit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USERS_DAT = os.path.join(ROOT, "..", "shared", "datasets", "citeulike-t", "users.dat")
TEACHERS = ["BPR", "CML", "NeuMF", "LightGCN", "MultiVAE", "ItemVAE"]


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


# --- the load generator (run as its own process: --client) ----------------------------------
def client(url, concurrency, requests, users, k):
    """``requests`` GETs of /recommend spread over ``concurrency`` keep-alive connections."""
    import http.client
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    latencies, errors, lock = [], [], threading.Lock()
    per_thread = [requests // concurrency + (i < requests % concurrency)
                  for i in range(concurrency)]

    def worker(n, seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine, bad = [], []
        for _ in range(n):
            path = f"/recommend?user={rng.choice(users)}&k={k}"
            start = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or not json.loads(body)["items"]:
                    bad.append(f"{response.status} {body[:80]!r}")
            except (OSError, http.client.HTTPException) as exc:
                bad.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            mine.append(time.perf_counter() - start)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=worker, args=(n, i)) for i, n in enumerate(per_thread)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "seconds": wall, "rps": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


# --- the benchmark ---------------------------------------------------------------------------
def build(workdir):
    """Convert CiteULike, split it as the pipeline does, package a fresh student."""
    from recbole_hetcomp.config import Config
    from recbole_hetcomp.data.citeulike import convert_citeulike
    from recbole_hetcomp.data.split import build_split
    from recbole_hetcomp.model import HetCompStudent
    from recbole_hetcomp.serving.export import export_model

    data = os.path.join(workdir, "dataset")
    convert_citeulike(USERS_DAT, data)
    config = Config("HetCompStudent", "citeulike", config_dict={
        "data_path": data, "checkpoint_dir": os.path.join(workdir, "saved"), "use_gpu": False,
        "state": "ERROR", "show_progress": False, "export_index": True})
    logger = logging.getLogger("bench")
    split = build_split(config)
    torch.manual_seed(0)
    student = HetCompStudent(config, split.train)
    package = export_model(student, config, split, logger)
    return config, split, student, package


def timed_median(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per latency measurement (default: %(default)s)")
    parser.add_argument("--out", default=None, help="also write the report here")  # made absolute below (the run chdirs)
    parser.add_argument("--load-note", default="no other job running",
                        help="what else the machine was doing (goes in the report)")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--users-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out:
        args.out = os.path.abspath(args.out)
    if args.client:
        users = open(args.users_file).read().split()
        print(json.dumps(client(args.client, args.concurrency, args.requests, users, 10)))
        return 0

    torch.set_num_threads(1)  # a server process per core; the other core runs the client
    from recbole_hetcomp.serving import Recommender, inference_ms_per_1000_users
    from recbole_hetcomp.serving.package import read_card

    workdir = tempfile.mkdtemp(prefix="bench-serving-")
    os.chdir(workdir)
    config, split, student, package = build(workdir)
    lines = ["# Serving cost: the HetComp student vs the six-teacher ensemble", "",
             f"CiteULike (RecBole, the paper's filter): {split.n_users - 1:,} users x "
             f"{split.n_items - 1:,} items; student embedding_size "
             f"{config['embedding_size']}. Machine: {os.cpu_count()} CPU cores "
             f"({_cpu_name()}), torch {torch.__version__}, 1 torch thread per process; load: "
             f"{args.load_note}. Medians unless stated; `python benchmarks/bench_serving.py`.",
             ""]

    # (a) load time and size
    size = sum(os.path.getsize(os.path.join(package, f)) for f in os.listdir(package))
    card = read_card(package)
    load = timed_median(lambda: Recommender.load(package), 5)
    load_fast = timed_median(lambda: Recommender.load(package, verify=False), 5)
    fresh = timed_median(lambda: subprocess.run(
        [sys.executable, "-c", "import sys; from recbole_hetcomp.serving import Recommender; "
         "Recommender.load(sys.argv[1]).recommend(['1'], k=10)", package], check=True), 3)
    command = timed_median(lambda: subprocess.run(
        [sys.executable, "-m", "recbole_hetcomp.serving.cli", package, "--user", "1",
         "--format", "tsv"], check=True, stdout=subprocess.DEVNULL), 5)
    lines += ["## (a) Package", "",
              f"- size on disk: {size / 1e6:.2f} MB ({len(os.listdir(package))} files: "
              f"{', '.join(sorted(card['files']))}, manifest, card)",
              f"- load in-process: {load * 1000:.0f} ms with every sha256 checked "
              f"({load_fast * 1000:.0f} ms with verify=False)",
              f"- fresh process (start Python, import, load, one recommendation): "
              f"{fresh:.2f} s",
              f"- the command `hetcomp-recommend PACKAGE --user 1 --format tsv` (a fresh "
              f"process; serving imports torch, not RecBole): {command:.2f} s", ""]

    # (b) one-user latency through the API
    rec, rec_index = Recommender.load(package, use_index=False), Recommender.load(package)
    users = rec.user_tokens[1:]
    rng = random.Random(0)
    api = {}
    for name, r in (("brute force", rec), ("faiss", rec_index)):
        for u in users[:50]:
            r.recommend([u], k=10)  # warm-up
        lat = []
        for _ in range(args.requests):
            u = rng.choice(users)
            start = time.perf_counter()
            r.recommend([u], k=10)
            lat.append(time.perf_counter() - start)
        api[name] = (percentile(lat, 50), percentile(lat, 99))
    lines += ["## (b) One user, top-10, known items excluded", "",
              f"Python API, {args.requests:,} requests of random users, one at a time:", "",
              "| path | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {n} | {a:.3f} | {b:.3f} |" for n, (a, b) in api.items()]

    users_file = os.path.join(workdir, "users.txt")
    with open(users_file, "w") as f:
        f.write("\n".join(users))
    server = subprocess.Popen(["hetcomp-serve", package, "--port", "0"], stdout=subprocess.PIPE,
                              text=True)
    try:
        url = server.stdout.readline().split(" on ")[-1].split("/ ")[0].strip()
        http = []
        for concurrency in (1, 8, 32):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--client", url,
                                  "--concurrency", str(concurrency), "--requests",
                                  str(args.requests), "--users-file", users_file],
                                 check=True, capture_output=True, text=True).stdout
            http.append(json.loads(out.splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(10)
    lines += ["", f"HTTP on loopback: `hetcomp-serve` (one process, a thread per connection) "
                  f"and a client process holding C keep-alive connections, {args.requests:,} "
                  "requests per row (latency seen by the client):", "",
              "| clients | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    lines += [f"| {h['concurrency']} | {h['rps']:.0f} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} "
              f"| {h['errors']} of {h['requests']} |" for h in http]
    first_errors = [e for h in http for e in h["first_errors"]]
    if first_errors:
        lines.append(f"\nfirst errors: {first_errors[:3]}")

    # (c) batches of 1,000 users
    batch = users[:1000]
    brute = timed_median(lambda: rec.topk(batch, k=10), 5)
    faiss_t = timed_median(lambda: rec_index.topk(batch, k=10), 5)
    same = (rec.topk(batch, k=10).items == rec_index.topk(batch, k=10).items).all()
    lines += ["", "## (c) Batches of 1,000 users, top-10, known items excluded", "",
              f"- brute force: {brute * 1000:.1f} ms per 1,000 users",
              f"- faiss (exact IndexFlatIP, over-fetching known items): {faiss_t * 1000:.1f} ms "
              f"per 1,000 users; same lists as brute force: {bool(same)} "
              f"({rec_index.index_redone} users handed back to brute force at a tie)"]

    # (d) the ensemble, as the report scores it
    from recbole_hetcomp.registry import get_model
    from recbole_hetcomp.teachers import teacher_config

    uid = split.dataset.uid_field
    student_ms = inference_ms_per_1000_users(student, uid, split.n_users)
    teacher_ms = {}
    for name in TEACHERS:
        tconfig = teacher_config(config, name)
        torch.manual_seed(0)
        model = get_model(name)(tconfig, split.train)
        teacher_ms[name] = inference_ms_per_1000_users(model, uid, split.n_users)
        del model
    ensemble = sum(teacher_ms.values())
    lines += ["", "## (d) Student vs the six-teacher ensemble, per 1,000 users", "",
              "As the report measures it (`serving.cost.inference_ms_per_1000_users`: each "
              "model's full_sort_predict for users 1..1000 in batches of 256 and a top-50; the "
              "ensemble costs the sum of its teachers, each at its default size):", "",
              "| model | ms per 1,000 users |", "|---|---|"]
    lines += [f"| {n} | {t:.1f} |" for n, t in teacher_ms.items()]
    lines += [f"| **ensemble (sum)** | **{ensemble:.1f}** |",
              f"| HetCompStudent (report's measure) | {student_ms:.1f} |",
              f"| HetCompStudent via Recommender, brute force, top-10 | {brute * 1000:.1f} |",
              f"| HetCompStudent via Recommender, faiss, top-10 | {faiss_t * 1000:.1f} |", "",
              f"- ensemble / student (report's measure): {ensemble / student_ms:.0f}x; "
              f"ensemble / Recommender brute force: {ensemble / (brute * 1000):.0f}x"]

    targets = [("student >= 50x faster than the ensemble per 1,000 users",
                ensemble / student_ms >= 50),
               ("one-user p99 <= 5 ms through the API (brute force)", api["brute force"][1] <= 5),
               ("HTTP >= 500 requests/s at 8 clients", http[1]["rps"] >= 500),
               ("HTTP p99 <= 50 ms at 8 clients", http[1]["p99_ms"] <= 50),
               ("zero HTTP errors", all(h["errors"] == 0 for h in http))]
    lines += ["", "## Targets", ""]
    lines += [f"- {'met' if ok else 'MISSED'}: {what}" for what, ok in targets]
    emit(lines, args.out)
    return 0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
