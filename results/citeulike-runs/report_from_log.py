"""Rebuild one seed's report JSON from a pipeline log (for a run stopped before its report).

The CiteULike 3-seed run was started as one process; once seed 2020 had finished, it was stopped
and seeds 2021 and 2022 were run side by side as two single-thread processes (to fit the
session). Seed 2020's numbers therefore exist only in that run's log (seed-2020.log here). This
reads them back: test results (4 decimals, as logged), validation and knowledge-construction
histories, training seconds from the log's timestamps. Teacher and ensemble rows, dataset
statistics and parameter counts come from a reference report of the same split and teachers
(checked: the log must reuse trajectories stored under that split's fingerprint). The inference
timing was not logged, so it is left out (merge_reports takes the median of the others).

    python results/citeulike-runs/report_from_log.py seed-2020.log 2020 seed-2021.report.json \
        seed-2020.report.json
"""

import datetime
import json
import re
import sys

STAMP = re.compile(r"^\w{3} (\d+ \w{3} \d{4} \d\d:\d\d:\d\d) INFO  (.*)$")
METRIC = re.compile(r"([a-z]+@\d+) : ([0-9.]+)")
EVAL = re.compile(r"epoch (\d+) evaluating \[time: [0-9.]+s, valid_score: ([0-9.]+)\]")
KC = re.compile(r"epoch (\d+) knowledge construction \[([0-9.]+)s\].*at last snapshot: "
                r"([0-9.]+)%; loss: (\w+)")
CHOICE = re.compile(r"learning_rate ([0-9.e-]+): best valid \S+ ([0-9.]+)")


def entries(path):
    """(timestamp, message) for every logger line."""
    out = []
    for line in open(path, encoding="utf-8"):
        match = STAMP.match(line.rstrip("\n"))
        if match:
            when = datetime.datetime.strptime(match.group(1), "%d %b %Y %H:%M:%S")
            out.append((when, match.group(2)))
    return out


def section(log, start, end):
    i = next(k for k, (_, m) in enumerate(log) if start in m)
    j = next(k for k in range(i, len(log)) if end in log[k][1])
    return log[i:j + 1]


def history(part):
    return [{"epoch": int(m.group(1)), "score": float(m.group(2))}
            for _, text in part for m in [EVAL.search(text)] if m]


def seconds(part):
    """From the stage line to the last evaluation (the fit's wall time, 1 s resolution)."""
    last = max(t for t, text in part if EVAL.search(text))
    return (last - part[0][0]).total_seconds()


def test_result(part):
    return {k: float(v) for k, v in METRIC.findall(part[-1][1])}


def main(log_path, seed, reference_path, out_path):
    log = entries(log_path)
    ref = json.load(open(reference_path, encoding="utf-8"))
    reused = [text for _, text in log if "reusing recorded trajectory" in text]
    assert reused and all(ref["split_fingerprint"][:16] in text for text in reused), \
        "the log's teachers are not those of the reference report's split"
    student = section(log, f"student HetCompStudent, seed {seed}",
                      f"HetCompStudent seed {seed} test result")
    baseline = section(log, f"no distillation), seed {seed}", f"BPR seed {seed} test result")
    # one block per learning rate, each closed by its 'learning_rate r: best valid s' line
    blocks, current = [], []
    for entry in baseline:
        current.append(entry)
        if CHOICE.search(entry[1]):
            blocks.append(current)
            current = []
    scores = [float(CHOICE.search(b[-1][1]).group(2)) for b in blocks]
    chosen = blocks[scores.index(max(scores))]  # first best, as train_baseline keeps it
    by_kind = {r["kind"]: r for r in ref["rows"]}
    rows = [r for r in ref["rows"] if r["kind"] not in ("student", "baseline")]
    for kind, part, secs in (("baseline", baseline, seconds(chosen)),
                             ("student", student, seconds(student))):
        rows.append({"model": by_kind[kind]["model"], "kind": kind, "seeds": 1,
                     "test_result": test_result(part), "n_params": by_kind[kind]["n_params"],
                     "inference_ms_per_1000_users": None, "train_seconds": secs})
    kc = [{"epoch": int(m.group(1)), "seconds": float(m.group(2)),
           "share_at_last": float(m.group(3)) / 100, "loss": m.group(4)}
          for _, text in student for m in [KC.search(text)] if m]
    run = {"seed": seed, "kc_history": kc, "valid_history": history(student),
           "baseline_valid_history": history(chosen),
           "baseline_learning_rate": float(CHOICE.search(chosen[-1][1]).group(1)),
           "baseline_learning_rate_search": [
               {"learning_rate": float(CHOICE.search(b[-1][1]).group(1)),
                "best_valid_score": s} for b, s in zip(blocks, scores)],
           "rebuilt_from_log": log_path}
    report = {k: ref[k] for k in ("dataset", "dataset_stats", "device", "machine",
                                  "split_fingerprint")}
    report.update(rows=rows, runs=[run], valid_metric=ref.get("valid_metric", "Recall@50"))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
