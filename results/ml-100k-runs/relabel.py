"""Rename the RRD and DCD rows of a report, to keep two settings of them apart in one merge.

The three-seed run with every row (all-rows-kd-no-draw.report.json) trained RRD and DCD with
``kd_temperature: ~`` (the teacher's top 10 in order, no rank-aware draw), the default when it
ran; the shipped default became the paper's draw (T = 10) after it, and the two KD-only runs
trained that. This writes a copy whose RRD/DCD rows say which setting they are, so that
merge_reports keeps them as rows of their own:

    python results/ml-100k-runs/relabel.py results/ml-100k-runs/all-rows-kd-no-draw.report.json \
        /tmp/all-rows.report.json
    python -m recbole_hetcomp.merge_reports --output results/ml-100k /tmp/all-rows.report.json \
        results/ml-100k-runs/kd-seed-2020.report.json \
        results/ml-100k-runs/kd-seeds-2021-2022.report.json
"""

import json
import sys

SUFFIX = " (same ensemble)"


def main(source, target):
    with open(source, encoding="utf-8") as f:
        report = json.load(f)
    renamed = {}
    for row in report["rows"]:
        if row["kind"] == "distillation" and row["model"].endswith(SUFFIX):
            new = row["model"][:-len(SUFFIX)] + " (same ensemble, top 10, no draw)"
            renamed[row["model"]], row["model"] = new, new
    for run in report["runs"]:
        run["variants"] = {renamed.get(k, k): v for k, v in (run.get("variants") or {}).items()}
    report["variants"] = {renamed.get(k, k): v + ("; kd_temperature ~: the teacher's top 10 in "
                                                  "order, no draw" if k in renamed else "")
                          for k, v in (report.get("variants") or {}).items()}
    with open(target, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:])
