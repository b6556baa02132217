"""Merge the reports of runs that differ only in their student seeds into one report.

Seeds of one configuration can run as separate processes (side by side on a machine's cores, or
on several machines); each writes its own ``.report.json``. This joins them: teacher and
ensemble rows must agree (same split, same stored teachers), the student and baseline rows
become the mean (± std) over all seeds, as a single ``--seeds`` run would report them.

    python -m recbole_hetcomp.merge_reports --output results/citeulike a.report.json b.report.json
"""

import argparse
import json
import sys

import numpy as np

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.report import seed_statistics, summary, write_files

SEEDED = ("baseline", "student")


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
    runs = [run for report in reports for run in report["runs"]]
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise HetCompError(f"cannot merge reports that repeat a seed: {seeds}")
    rows = [row for row in first["rows"] if row["kind"] not in SEEDED]
    for kind in SEEDED:
        parts = [next((r for r in rep["rows"] if r["kind"] == kind), None) for rep in reports]
        if all(p is None for p in parts):
            continue
        if any(p is None for p in parts):
            raise HetCompError(f"cannot merge: some reports have no {kind} row")
        rows.append(_merge_rows(parts))
    merged = {k: first[k] for k in ("dataset", "dataset_stats", "device", "machine",
                                    "split_fingerprint")}
    merged.update(rows=rows, summary=summary(rows), runs=runs, seeds=seeds,
                  valid_metric=first.get("valid_metric", "Recall@50"))
    return merged


def _fixed_rows(report):
    return [(r["model"], r["test_result"]) for r in report["rows"] if r["kind"] not in SEEDED]


def _merge_rows(parts):
    per_seed = [result for p in parts for result in p.get("per_seed", [p["test_result"]])]
    counts = [p.get("seeds", 1) for p in parts]
    mean, std = seed_statistics(per_seed)
    row = {"model": parts[0]["model"], "kind": parts[0]["kind"], "seeds": len(per_seed),
           "test_result": mean, "test_std": std,
           "n_params": parts[0]["n_params"],
           # a part rebuilt from a log may lack the timing: median of those that have it
           "inference_ms_per_1000_users": float(np.median(
               [p["inference_ms_per_1000_users"] for p in parts
                if p.get("inference_ms_per_1000_users") is not None])),
           # each part's mean training time, weighted by its number of seeds
           "train_seconds": float(np.average([p["train_seconds"] for p in parts],
                                             weights=counts)),
           "per_seed": per_seed}
    return row


def write_merged(merged, stem):
    """Write ``<stem>.report.md``, ``.report.json`` and ``.png``; returns the Markdown."""
    return write_files(merged, stem, note=" (merged from separate runs)")[1]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_hetcomp.merge_reports",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help=".report.json files of the runs")
    parser.add_argument("--output", required=True,
                        help="output stem: writes <stem>.report.md, .report.json and .png")
    args = parser.parse_args(argv)
    try:
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
        print(write_merged(merged, args.output))
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
