"""Merge the reports of runs of one configuration into one report.

Seeds of one configuration can run as separate processes (side by side on a machine's cores, or
on several machines), and so can the rows of one seed (ablations in one process, distillation
baselines in another); each writes its own ``.report.json``. This joins them: teacher and
ensemble rows must agree (same split, same stored teachers), every per-seed row becomes the mean
(± std) over the distinct seeds that trained it, as a single ``--seeds`` run would report it; a
seed trained twice must have given the same numbers twice.

    python -m recbole_hetcomp.merge_reports --output results/citeulike a.report.json b.report.json
"""

import json
import os
import sys

from recbole_hetcomp.checks import writable_dir_problem
from recbole_hetcomp.cli import OneLineParser, UsageError
from recbole_hetcomp.errors import HetCompError, os_error_text
from recbole_hetcomp.report import report_columns, seeded_row, summary, write_files

#: Row kinds trained once per seed (merged by row name); the others must agree across reports.
SEEDED = ("baseline", "student", "ablation", "distillation")


def merge_reports(reports):
    """One report dict from ``reports`` (dicts as written to ``.report.json``)."""
    if not reports:
        raise HetCompError("merge_reports: no reports given")
    first = reports[0]
    for other in reports[1:]:
        for key in ("dataset", "split_fingerprint"):
            if other[key] != first[key]:
                raise HetCompError(f"cannot merge reports with different {key}: "
                                   f"{first[key]} and {other[key]}")
        if _fixed_rows(other) != _fixed_rows(first):
            raise HetCompError("cannot merge reports whose teacher or ensemble rows differ "
                               "(other teachers or settings)")
    runs = _merge_runs(reports)
    seeds = [run["seed"] for run in runs]
    rows = [row for row in first["rows"] if row["kind"] not in SEEDED]
    # A row trained in only some runs (an ablation run for one seed beside a three-seed
    # student) is the mean over the seeds that have it; its row says how many.
    names = list(dict.fromkeys(r["model"] for rep in reports for r in rep["rows"]
                               if r["kind"] in SEEDED))
    for name in names:
        parts = [(rep, r) for rep in reports for r in rep["rows"] if r["model"] == name]
        if len({r["kind"] for _, r in parts}) > 1:
            raise HetCompError(f"cannot merge: row {name} has different kinds in the reports")
        rows.append(_merge_rows(name, parts))
    order = ("baseline", "student", "ablation", "distillation")
    rows.sort(key=lambda r: -1 if r["kind"] not in SEEDED else order.index(r["kind"]))
    merged = {k: first[k] for k in ("dataset", "dataset_stats", "device", "machine",
                                    "split_fingerprint")}
    valid_metric, columns = first.get("valid_metric", "Recall@50"), report_columns(first)
    merged.update({k: first[k] for k in ("ensemble_weights", "variants") if k in first})
    merged.update(model=first.get("model", "HetCompStudent"), rows=rows,
                  summary=summary(rows, valid_metric, columns), runs=runs, seeds=seeds,
                  valid_metric=valid_metric, columns=columns)
    return merged


def _fixed_rows(report):
    return [(r["model"], r["test_result"]) for r in report["rows"] if r["kind"] not in SEEDED]


def _merge_runs(reports):
    """The runs of all reports, one per seed. Runs may share a seed when they trained other
    rows of it (the rows are checked in ``_merge_rows``); their per-seed entries are joined."""
    by_seed = {}
    for report in reports:
        for run in report["runs"]:
            kept = by_seed.setdefault(run["seed"], dict(run))
            if kept is not run:
                kept.setdefault("variants", {}).update(run.get("variants") or {})
                for key, value in run.items():
                    kept.setdefault(key, value)
    return list(by_seed.values())


def _merge_rows(name, parts):
    """One row from the same row of several reports: the mean over the distinct seeds.

    A seed trained in two runs (a run split into processes by rows) must have given the same
    numbers there (every model is seeded): otherwise the runs did not use the same settings."""
    per_seed, seen = [], {}
    timings, seconds, weights = [], [], []
    for report, row in parts:
        seeds = [run["seed"] for run in report["runs"]]
        results = row.get("per_seed", [row["test_result"]])
        fresh = 0
        for seed, result in zip(seeds, results):
            if seed in seen:
                if seen[seed] != result:
                    raise HetCompError(f"cannot merge: {name} seed {seed} differs between the "
                                       "reports (other settings?); merge runs of one "
                                       "configuration only")
                continue
            seen[seed] = result
            per_seed.append(result)
            fresh += 1
        if fresh:
            # A part rebuilt from a log may lack the timing (seeded_row keeps the median of
            # the rest); each part's training time is its mean over its seeds: weight it by
            # their number.
            timings.append(row.get("inference_ms_per_1000_users"))
            seconds.append(row["train_seconds"])
            weights.append(fresh)
    first = parts[0][1]
    return seeded_row(name, first["kind"], per_seed, first["n_params"], timings, seconds,
                      weights=weights)


def write_merged(merged, stem):
    """Write ``<stem>.report.md``, ``.report.json`` and ``.png``; returns the Markdown."""
    return write_files(merged, stem, note=" (merged from separate runs)")[1]


def check_output_stem(stem):
    """``--output`` names a file stem in a folder that can be written, not a folder: a folder
    would get hidden ``.report.md``, ``.report.json`` and ``.png`` files."""
    if not stem:
        raise HetCompError("--output is empty: give a file stem such as merged (writes "
                           "merged.report.md, .report.json and .png)")
    example = os.path.join(stem.rstrip("/" + os.sep) or ".", "merged")
    if (stem.endswith(("/", os.sep)) or os.path.isdir(stem)
            or os.path.basename(stem) in (".", "..")):
        raise HetCompError(f"--output '{stem}' is a folder: give a file stem such as "
                           f"{example} (writes <stem>.report.md, .report.json and .png)")
    problem = writable_dir_problem(os.path.dirname(os.path.abspath(stem)))
    if problem:
        raise HetCompError(f"cannot write --output '{stem}' ({problem}): choose a folder you "
                           "can write to")


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 bad input, 1 a write that failed)."""
    parser = OneLineParser(prog="python -m recbole_hetcomp.merge_reports",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help=".report.json files of the runs")
    parser.add_argument("--output", required=True,
                        help="output stem: writes <stem>.report.md, .report.json and .png")
    try:
        args = parser.parse_args(argv)
        check_output_stem(args.output)
        reports = []
        for path in args.reports:
            try:
                with open(path, encoding="utf-8") as f:
                    reports.append(json.load(f))
            except (OSError, ValueError) as exc:
                raise HetCompError(f"cannot read report {path}: {exc}") from None
        try:
            merged = merge_reports(reports)
        except (KeyError, TypeError, AttributeError) as exc:
            raise HetCompError(f"not a recbole-hetcomp report (missing {exc}): pass the "
                               ".report.json files that runs write next to their logs") from None
    except (UsageError, HetCompError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        markdown = write_merged(merged, args.output)
    except OSError as exc:  # the folder was probed: the disk filled up, or it changed since
        print(f"error: cannot write the merged report: {os_error_text(exc)}", file=sys.stderr)
        return 1
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
