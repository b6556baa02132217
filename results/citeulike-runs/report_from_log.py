"""Rebuild one seed's report JSON from a pipeline log (for a run stopped before its report).

Rows rebuilt: the student and the same-size baseline when the log trained them, and every
ablation or distillation-baseline row whose test result the log reached (a run stopped in its
last row keeps the rows it finished).

The CiteULike 3-seed run was started as one process; once seed 2020 had finished, it was stopped
and seeds 2021 and 2022 were run side by side as two single-thread processes (to fit the
session). Seed 2020's numbers therefore exist only in that run's log (seed-2020.log here). This
reads them back: test results (4 decimals, as logged), validation and knowledge-construction
histories, training seconds from the log's timestamps. Teacher and ensemble rows, dataset
statistics and parameter counts come from a reference report of the same split and teachers
(checked: the log must reuse trajectories stored under that split's fingerprint). The inference
timing was not logged, so it is left out (merge_reports takes the median of the others).

    python results/citeulike-runs/report_from_log.py seed-2020.log 2020 seed-2021.report.json \
        seed-2020.report.json [--leave-out HetCompStudent]
"""

import argparse
import datetime
import json
import re

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


VARIANT = re.compile(r"\[HetComp +[0-9.]+s\] (.+), seed (\d+)$")


def variant_kind(name):
    """The report's kind of a variant row, from its name (variants.py names them)."""
    return "distillation" if name.endswith("(same ensemble)") else "ablation"


def baseline_rows(log, seed):
    """(test part, chosen learning-rate block, all blocks, their best valid scores) or None."""
    try:
        baseline = section(log, f"no distillation), seed {seed}", f"BPR seed {seed} test result")
    except StopIteration:
        return None
    # one block per learning rate, each closed by its 'learning_rate r: best valid s' line
    blocks, current = [], []
    for entry in baseline:
        current.append(entry)
        if CHOICE.search(entry[1]):
            blocks.append(current)
            current = []
    scores = [float(CHOICE.search(b[-1][1]).group(2)) for b in blocks]
    chosen = blocks[scores.index(max(scores))]  # first best, as train_baseline keeps it
    return baseline, chosen, blocks, scores


def main(log_path, seed, reference_path, out_path, leave_out=()):
    log = entries(log_path)
    ref = json.load(open(reference_path, encoding="utf-8"))
    reused = [text for _, text in log if "reusing recorded trajectory" in text]
    assert reused and all(ref["split_fingerprint"][:16] in text for text in reused), \
        "the log's teachers are not those of the reference report's split"
    size = {r["kind"]: r["n_params"] for r in ref["rows"]}
    student_params = size["student"]  # every student-sized row has the student's size
    rows = [r for r in ref["rows"] if r["kind"] in ("teacher", "ensemble", "weighted_ensemble")]
    run = {"seed": seed, "rebuilt_from_log": log_path}

    def row(name, kind, part, secs):
        if name in leave_out:
            return
        rows.append({"model": name, "kind": kind, "seeds": 1, "test_result": test_result(part),
                     "n_params": student_params, "inference_ms_per_1000_users": None,
                     "train_seconds": secs})

    baseline = baseline_rows(log, seed)
    if baseline:
        part, chosen, blocks, scores = baseline
        row(next(r["model"] for r in ref["rows"] if r["kind"] == "baseline"), "baseline", part,
            seconds(chosen))
        run.update(baseline_valid_history=history(chosen),
                   baseline_learning_rate=float(CHOICE.search(chosen[-1][1]).group(1)),
                   baseline_learning_rate_search=[
                       {"learning_rate": float(CHOICE.search(b[-1][1]).group(1)),
                        "best_valid_score": s} for b, s in zip(blocks, scores)])
    student = section(log, f"student HetCompStudent, seed {seed}",
                      f"HetCompStudent seed {seed} test result")
    row("HetCompStudent", "student", student, seconds(student))
    run.update(valid_history=history(student), kc_history=[
        {"epoch": int(m.group(1)), "seconds": float(m.group(2)),
         "share_at_last": float(m.group(3)) / 100, "loss": m.group(4)}
        for _, text in student for m in [KC.search(text)] if m])
    names = [m.group(1) for _, text in log for m in [VARIANT.search(text)]
             if m and int(m.group(2)) == seed and not m.group(1).startswith(("student ",
                                                                              "baseline "))]
    for name in names:
        try:
            part = section(log, f"] {name}, seed {seed}", f"{name} seed {seed} test result")
        except StopIteration:
            continue  # stopped before this row finished
        row(name, variant_kind(name), part, seconds(part))
        run.setdefault("variants", {})[name] = {"seed": seed, "valid_history": history(part)}
    report = {k: ref[k] for k in ("dataset", "dataset_stats", "device", "machine",
                                  "split_fingerprint")}
    report.update(rows=rows, runs=[run], valid_metric=ref.get("valid_metric", "Recall@50"))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("seed", type=int)
    parser.add_argument("reference", help="a .report.json of the same split and teachers")
    parser.add_argument("output")
    parser.add_argument("--leave-out", action="append", default=[], metavar="ROW",
                        help="a row not to rebuild (one a finished report of the same seed "
                             "holds at full precision; the log has 4 decimals); repeatable")
    args = parser.parse_args()
    main(args.log, args.seed, args.reference, args.output, set(args.leave_out))
