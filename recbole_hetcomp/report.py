"""The run's report: a table (Markdown + JSON), a plot (PNG), printed and written next to the log."""

import json
import logging
import os
import platform

import numpy as np
import torch

from recbole_hetcomp.atomic import atomic_path, write_text_atomically



def metric_columns(metrics, topk):
    """RecBole's result keys for ``metrics`` x ``topk``, in its order (``recall@10``, ...)."""
    return [f"{m.lower()}@{k}" for m in metrics for k in topk]


def in_column_order(result, columns):
    """``result`` with the keys of ``columns`` first, in that order, as RecBole returns them
    (a result read back from a trajectory manifest or a run-state file is in sorted order)."""
    return {**{k: result[k] for k in columns if k in result},
            **{k: v for k, v in result.items() if k not in columns}}


def format_metrics(result):
    """``recall@10 : 0.1234    ndcg@10 : ...`` as RecBole logs results."""
    return "    ".join(f"{k} : {v:.4f}" for k, v in result.items())


# --- rows: one dict per line of the table ---------------------------------------------------
def model_row(name, kind, test_result, n_params, inference_ms, train_seconds):
    """A row of one trained model (``kind``: teacher, ensemble, baseline, student).

    ``inference_ms`` is None when no run of the row was timed (rows rebuilt from a log)."""
    return {"model": name, "kind": kind,
            "test_result": {k: float(v) for k, v in test_result.items()},
            "n_params": int(n_params),
            "inference_ms_per_1000_users": None if inference_ms is None else float(inference_ms),
            "train_seconds": float(train_seconds)}


def teacher_row(manifest):
    """The row of a teacher, from its trajectory manifest."""
    return model_row(manifest["teacher"], "teacher", manifest["test_result"],
                     manifest["n_params"], manifest["inference_ms_per_1000_users"],
                     manifest["train_seconds"])


def seeded_row(name, kind, per_seed, n_params, inference_ms, train_seconds, weights=None):
    """A row of a model trained once per seed: mean (and std) of each metric over seeds.

    ``per_seed``: one test result per seed; ``inference_ms``: timings (median kept);
    ``train_seconds``: training times, averaged with ``weights`` (seeds behind each time).
    """
    mean, std = seed_statistics(per_seed)
    timings = [t for t in inference_ms if t is not None]
    row = model_row(name, kind, mean, n_params, float(np.median(timings)) if timings else None,
                    float(np.average(train_seconds, weights=weights)))
    row.update(seeds=len(per_seed), test_std=std, per_seed=list(per_seed))
    return row


def report_stem(config):
    """``<log dir>/<log name>`` of the run (RecBole's FileHandler), else ./hetcomp_runs/."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return os.path.splitext(handler.baseFilename)[0]
    os.makedirs("hetcomp_runs", exist_ok=True)
    return os.path.join("hetcomp_runs", f"{config['model']}-{config['dataset']}")


def _cell(row, key):
    value = row["test_result"].get(key)
    if value is None:
        return "-"
    std = row.get("test_std", {}).get(key)
    return f"{value:.4f} ± {std:.4f}" if std is not None and row.get("seeds", 1) > 1 else f"{value:.4f}"


def seed_statistics(per_seed):
    """Mean and standard deviation over seeds of each metric: (test_result, test_std)."""
    metrics = per_seed[0].keys()
    return ({k: float(np.mean([r[k] for r in per_seed])) for k in metrics},
            {k: float(np.std([r[k] for r in per_seed])) for k in metrics})


def summary(rows, valid_metric, columns):
    """Gains of the student: over the baseline, share of the baseline-ensemble gap recovered
    (for every metric at the cut-off of ``valid_metric``), and serving cost against the
    ensemble."""
    by_kind = {r["kind"]: r for r in rows}
    out = {}
    student, baseline, ensemble = (by_kind.get(k) for k in ("student", "baseline", "ensemble"))
    cutoff = "@" + valid_metric.split("@")[-1] if "@" in valid_metric else None
    chosen = [c for c in columns if cutoff and c.endswith(cutoff)] or [valid_metric.lower()]
    chosen = [m for m in chosen if m.partition("@")[0] in ACCURACY]
    weighted = by_kind.get("weighted_ensemble")
    variants = [r for r in rows if r["kind"] in ("ablation", "distillation")]
    for m in chosen:
        if student and baseline:
            s, b = student["test_result"][m], baseline["test_result"][m]
            out[f"{m} gain over baseline"] = (s - b) / b if b else None
            if ensemble:
                e = ensemble["test_result"][m]
                out.update(_gap_share(m, s, b, e))
        if student:
            s = student["test_result"][m]
            for name, row in (("uniform ensemble", ensemble), ("weighted ensemble", weighted)):
                if row and row["test_result"][m]:
                    out[f"{m} student / {name}"] = s / row["test_result"][m]
            for row in variants:
                v = row["test_result"][m]
                out[f"{m} gain over {row['model']}"] = (s - v) / v if v else None
    if student and ensemble and student["inference_ms_per_1000_users"]:
        out["inference speed-up vs ensemble"] = (ensemble["inference_ms_per_1000_users"]
                                                 / student["inference_ms_per_1000_users"])
        out["parameter ratio ensemble/student"] = ensemble["n_params"] / student["n_params"]
    return out


def _gap_share(metric, s, b, e):
    """The share of the baseline-to-ensemble gap the student closes, (s - b) / (e - b), with a
    word wherever it leaves [0, 1]: a share is only meaningful when the ensemble beat the
    baseline."""
    key = f"{metric} share of gap recovered"
    if e <= b:
        return {key: f"none: the same-size baseline ({b:.4f}) matched or beat the ensemble "
                     f"({e:.4f}), so there was no gap to recover"}
    share = (s - b) / (e - b)
    if share > 1:
        return {key: f"{share:.3f} (the student beat the ensemble)"}
    if share < 0:
        return {key: f"{share:.3f} (the student is below the baseline)"}
    return {key: share}


def report_columns(report):
    """The metric columns of a report (older reports: the first row's metrics)."""
    return report.get("columns") or list(report["rows"][0]["test_result"])


# RecBole's spelling of its metric names, for table headers
_METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "hit": "Hit", "map": "MAP",
                 "precision": "Precision", "itemcoverage": "ItemCoverage",
                 "averagepopularity": "AveragePopularity", "giniindex": "GiniIndex",
                 "shannonentropy": "ShannonEntropy", "tailpercentage": "TailPercentage"}


def _header(column):
    name, _, k = column.partition("@")
    return _METRIC_NAMES.get(name, name) + (f"@{k}" if k else "")


#: RecBole's accuracy metrics; the others (coverage, popularity) get a table of their own.
ACCURACY = ("recall", "ndcg", "hit", "precision", "mrr", "map")


def split_columns(columns):
    """(accuracy columns, beyond-accuracy columns) of a report."""
    accuracy = [c for c in columns if c.partition("@")[0] in ACCURACY]
    return accuracy, [c for c in columns if c not in accuracy]


def markdown_table(rows, columns, costs=True):
    """The rows as a Markdown table of ``columns`` (plus size, inference and training time)."""
    extra = ["params", "inference ms / 1k users", "train s"] if costs else []
    head = "| model | " + " | ".join([_header(c) for c in columns] + extra) + " |"
    lines = [head, "|" + "---|" * (len(columns) + len(extra) + 1)]
    for r in rows:
        cells = [_cell(r, c) for c in columns]
        if costs:
            timing = r["inference_ms_per_1000_users"]
            cells += [f"{r['n_params']:,}", "-" if timing is None else f"{timing:.1f}",
                      f"{r['train_seconds']:.1f}"]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(config, split, rows, runs, logger, packages=None, extra=None):
    """Write ``<stem>.report.md``, ``.report.json`` and ``.png``; log the table.

    ``packages``: model packages written by the run ("student", "baseline", teacher names ->
    path), named in the report; ``extra``: more report keys (``ensemble_weights``,
    ``variants``)."""
    stem = report_stem(config)
    device = str(config["device"])
    machine = (torch.cuda.get_device_name(config["device"]) if device.startswith("cuda")
               else f"{platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} torch threads")
    stats = {"users": split.n_users - 1, "items": split.n_items - 1,
             "train": len(split.train), "valid": len(split.valid), "test": len(split.test)}
    columns = metric_columns(config["metrics"], config["topk"])
    report = {"model": config["model"], "dataset": config["dataset"], "dataset_stats": stats,
              "device": device, "machine": machine, "split_fingerprint": split.fingerprint,
              "valid_metric": config["valid_metric"], "columns": columns,
              "seeds": list(config["seeds"] or [config["seed"]]), "rows": rows,
              "summary": summary(rows, config["valid_metric"], columns), "runs": runs,
              "packages": {k: v for k, v in (packages or {}).items() if v}, **(extra or {})}
    report, markdown = write_files(report, stem)
    logger.info("\n" + markdown)
    logger.info(f"report written to {report['markdown']}, {report['json']}, {report['plot']}")
    if report["packages"].get("student"):
        logger.info(f"student model package: {report['packages']['student']}")
    return report


def write_files(report, stem, note=""):
    """Write ``report`` as ``<stem>.report.md``, ``.report.json`` and ``.png``.

    Returns the report with the three paths added, and the Markdown text."""
    stats, runs = report["dataset_stats"], report["runs"]
    accuracy, beyond = split_columns(report_columns(report))
    text = [f"# HetComp on {report['dataset']}", "",
            f"Dataset: {stats['users']:,} users, {stats['items']:,} items; interactions "
            f"train {stats['train']:,} / valid {stats['valid']:,} / test {stats['test']:,}. "
            f"Split fingerprint {report['split_fingerprint'][:16]}.", "",
            f"Device: {report['device']} ({report['machine']}). Test metrics of the epoch "
            f"selected on validation {report['valid_metric']}; students and baselines are the "
            f"mean (± std) over seeds {report['seeds']}{note}.", "",
            markdown_table(report["rows"], accuracy), ""]
    if beyond:
        text += ["Popularity bias and coverage (RecBole's ItemCoverage, AveragePopularity, "
                 "GiniIndex, TailPercentage; tail = the least-interacted items, `tail_ratio`):",
                 "", markdown_table(report["rows"], beyond, costs=False), ""]
    text += [f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}"
             for k, v in report["summary"].items()]
    searches = [r["baseline_learning_rate_search"] for r in runs
                if r.get("baseline_learning_rate_search")]
    if searches:
        text.append(f"- baseline learning rate (best on validation, per seed): "
                    f"{[r.get('baseline_learning_rate') for r in runs]} of "
                    f"{[s['learning_rate'] for s in searches[0]]}")
    weights = report.get("ensemble_weights") or {}
    if weights.get("setting", "uniform") != "uniform":
        text.append("- ensemble weights (" + weights["setting"] + "): " + ", ".join(
            f"{n} {w:.2f}" for n, w in weights["weights"].items())
            + (f"; validation {weights['metric']}: uniform {weights['uniform_valid']:.4f}, best "
               f"single teacher {max(weights['single_valid'].values()):.4f}, chosen "
               f"{weights['chosen_valid']:.4f}" if "chosen_valid" in weights else "")
            + "; the student learns from this ensemble")
    for name, description in (report.get("variants") or {}).items():
        text.append(f"- {name}: {description}")
    for name, path in (report.get("packages") or {}).items():
        text.append(f"- model package ({name}): `{path}`"
                    + (" (serve it: `hetcomp-recommend PACKAGE --user <token>`)"
                       if name == "student" else ""))
    markdown = "\n".join(text) + "\n"
    report = dict(report, markdown=stem + ".report.md", json=stem + ".report.json",
                  plot=stem + ".png")
    write_text_atomically(report["markdown"], markdown)
    write_text_atomically(report["json"], json.dumps(report, indent=2, default=str))
    plot_progress(runs, report["valid_metric"], report["plot"])
    return report, markdown


def plot_progress(runs, metric, path):
    """Student vs baseline validation metric per evaluation (first seed), with the share of
    (user, teacher) pairs at the last snapshot on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = runs[0]
    fig, ax = plt.subplots(figsize=(7, 4))
    student = run["valid_history"]
    ax.plot([h["epoch"] for h in student], [h["score"] for h in student], "o-",
            label="HetCompStudent")
    baseline = run.get("baseline_valid_history") or []
    if baseline:
        ax.plot([h["epoch"] for h in baseline], [h["score"] for h in baseline], "s--",
                label="same-size baseline")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    kc = run["kc_history"]
    if kc:
        ax2 = ax.twinx()
        ax2.step([h["epoch"] for h in kc], [h["share_at_last"] for h in kc], "g:", where="post",
                 label="pairs at last snapshot")
        ax2.set_ylabel("share of (user, teacher) pairs at last snapshot")
        ax2.set_ylim(0, 1.05)
        switch = next((h["epoch"] for h in kc if h["loss"] == "rank"), None)
        if switch is not None:
            ax.axvline(switch, color="grey", lw=0.8)
            ax.annotate("rank loss", (switch, ax.get_ylim()[0]), xytext=(3, 3),
                        textcoords="offset points", fontsize=8)
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
