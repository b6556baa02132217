"""Mutation check: do the tests catch plausible mistakes in reading the HetComp method?

Each mutation below models one way of misreading the method spec
(``../shared/docs/hetcomp-method.md``, beside the checkout) or the code's own documented
contract: an exact source snippet, its replacement, the bug it
stands for, and the narrow set of tests that should notice. For each mutation the script edits
a throw-away copy of the repository (never the working tree), runs those tests there with
``pytest -x -q -p no:cacheprovider`` and records

    KILLED    the tests failed: the mistake is caught
    SURVIVED  the tests passed: a gap, unless the mutation is marked equivalent
    ERROR     pytest could not run (collection/import error): the mutation itself is broken
    TIMEOUT   the tests ran past --timeout

A snippet must occur exactly once in its file, for every mutation in the list, or the script
refuses to run: a list that no longer matches the code fails loudly instead of rotting.

Mutants run one after another on one thread (OMP_NUM_THREADS=1): the VM has two cores and
other work runs beside this. Standard library and the repository only.

    python benchmarks/mutation_check.py --list
    python benchmarks/mutation_check.py --only threshold_exponent_per_epoch
    python benchmarks/mutation_check.py --markdown results/mutation_check.md
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What the tests need from the checkout; nothing else is copied.
COPIED = ("recbole_hetcomp", "tests", "properties", "pytest.ini", "setup.py", "run_hetcomp.py")

# Test selections, kept narrow: the fast unit-test files, and single student-trainer tests from
# test_pipeline.py (those build one tiny trainer, no teachers, a few seconds each).
CONSTRUCTION = "tests/test_knowledge_construction.py"
ENSEMBLE = "tests/test_knowledge_ensemble.py"
LOSSES = "tests/test_knowledge_losses.py"
WEIGHTS = "tests/test_knowledge_weights.py"
EXCLUSION_INDEX = "tests/test_knowledge_exclusion_index.py"
TIES = "tests/test_device.py::test_ties_are_broken_by_the_lower_item_id"
CUT_TIE = "tests/test_device.py::test_a_tie_only_across_the_cut_is_broken_by_the_lower_item_id"
RECORDER_TIES = "tests/test_device.py::test_recorder_lists_break_ties_by_id"
RECORDING = "tests/test_recording.py"
PIPE = "tests/test_pipeline.py::"
LOSS_SUM = PIPE + "test_student_loss_is_the_weighted_sum_over_the_batch_distinct_users"
EVERY_PERIOD = PIPE + "test_knowledge_construction_runs_every_period_from_epoch_p_until_the_switch"
ABLATION = PIPE + "test_ablation_switches_change_what_they_name"
VALID_LISTS = PIPE + "test_student_lists_from_validation_equal_direct_scoring"
SWITCH_RULE = PIPE + "test_switch_rule_counts_real_users_at_the_configured_share"
REBUILD = PIPE + "test_construction_rebuilds_the_targets_from_the_new_choices"

K = "recbole_hetcomp/knowledge/"


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str          # file, relative to the repository root
    old: str           # must occur exactly once in the file
    new: str
    why: str           # the mistake it models (and, for equivalent ones, why nothing changes)
    tests: tuple       # pytest node paths that should catch it
    equivalent: bool = False


MUTATIONS = [
    # --- importance.py: w = exp(-r / T), r 0-based ------------------------------------------
    Mutation("importance_times_T", K + "importance.py",
             "return torch.exp(-r / temperature)", "return torch.exp(-r * temperature)",
             "importance exp(-r*T) instead of exp(-r/T)", (ENSEMBLE,)),
    Mutation("importance_underflow_to_zero", K + "importance.py",
             ".long().clamp_min(1)", ".long()",
             "deep ranks round to weight 0: listed items vanish from the ensemble", (ENSEMBLE,)),

    # --- topk.py: ties broken by the lower item id ------------------------------------------
    Mutation("topk_ties_by_higher_id", K + "topk.py",
             "combined = (keys << 32) | (0xFFFFFFFF - columns)\n"
             "    top = torch.topk(combined, k, dim=1).values\n"
             "    chosen = 0xFFFFFFFF - (top & 0xFFFFFFFF)",
             "combined = (keys << 32) | columns\n"
             "    top = torch.topk(combined, k, dim=1).values\n"
             "    chosen = top & 0xFFFFFFFF",
             "exact top-k breaks ties by the higher item id", (TIES, CONSTRUCTION)),
    Mutation("topk_never_checks_ties", K + "topk.py",
             "tied = (values[:, 1:] == values[:, :-1]).any(1)",
             "tied = torch.zeros(values.shape[0], dtype=torch.bool)",
             "CPU fast path leaves tied rows to torch.topk's kernel order", (TIES,)),
    Mutation("topk_k_not_k_plus_1", K + "topk.py",
             "torch.topk(scores, min(k + 1, n), dim=1)", "torch.topk(scores, k, dim=1)",
             "top-k size K instead of K+1: a tie across the cut goes unseen", (TIES, CUT_TIE)),

    # --- construction.py: student lists and the discrepancy D = 1 - NDCG --------------------
    Mutation("ndcg_without_discount", K + "construction.py",
             "(torch.pow(2.0, torch.exp(-t / temperature)) - 1.0) / torch.log2(t + 2.0)",
             "(torch.pow(2.0, torch.exp(-t / temperature)) - 1.0)",
             "discrepancy drops the log2(t+2) NDCG discount", (CONSTRUCTION,)),
    Mutation("ndcg_one_based_positions", K + "construction.py",
             "t = torch.arange(n, dtype=torch.float64, device=device)\n    return (torch.pow",
             "t = torch.arange(1, n + 1, dtype=torch.float64, device=device)\n    return (torch.pow",
             "1-based student positions: gain exp(-(t+1)/T), discount log2(t+3)", (CONSTRUCTION,)),
    Mutation("ndcg_padding_hits", K + "construction.py",
             "hit = (student_sorted.gather(1, at) == flat) & (flat != 0)",
             "hit = student_sorted.gather(1, at) == flat",
             "item 0 (padding) in both lists counts as a hit", (CONSTRUCTION,)),
    Mutation("ndcg_ideal_over_student_length", K + "construction.py",
             "ideal = gain.sum()", "ideal = gain[:ns].sum()",
             "ideal DCG over the student list's length, not all n positions", (CONSTRUCTION,)),
    Mutation("ndcg_teacher_not_truncated", K + "construction.py",
             "teacher = teacher_lists[..., :n].long()", "teacher = teacher_lists.long()",
             "hits counted against the whole teacher list, not its first n", (CONSTRUCTION,)),

    # --- construction.py: the easy-to-hard schedule -----------------------------------------
    Mutation("threshold_exponent_per_epoch", K + "construction.py",
             "return alpha * decay ** (epoch // p)", "return alpha * decay ** epoch",
             "threshold decays per epoch, not per construction period", (CONSTRUCTION,)),
    Mutation("first_call_remembers_current", K + "construction.py",
             "heads = rankings[teacher.unsqueeze(0), (v + 1).clamp_max(c - 1), user, :n]",
             "heads = rankings[teacher.unsqueeze(0), v.clamp_max(c - 1), user, :n]",
             "first call remembers D of the current snapshot, not of snapshot v+1", (CONSTRUCTION,)),
    Mutation("advance_ratio_inverted", K + "construction.py",
             "ratio = d / torch.where(reached, torch.ones_like(d_next), d_next)",
             "ratio = torch.where(reached, torch.ones_like(d_next), d_next) / d",
             "advance ratio d_next / d instead of d / d_next", (CONSTRUCTION,)),
    Mutation("advance_at_ratio_one", K + "construction.py",
             "advance = reached | (ratio > th) | (ratio < 1)",
             "advance = reached | (ratio > th) | (ratio <= 1)",
             "a pair whose discrepancy did not change (ratio 1) advances", (CONSTRUCTION,)),
    Mutation("advance_without_zero_guard", K + "construction.py",
             "advance = reached | (ratio > th) | (ratio < 1)",
             "advance = (ratio > th) | (ratio < 1)",
             "0/0 and x/0 ratios (student matches the next snapshot) never advance", (CONSTRUCTION,)),
    Mutation("advance_remembers_new_current", K + "construction.py",
             "student_sorted, student_pos, rankings, row, col, (v_new + 1).clamp_max(c - 1), start,",
             "student_sorted, student_pos, rankings, row, col, v_new.clamp_max(c - 1), start,",
             "an advanced pair remembers D of its new snapshot, not of the next one", (CONSTRUCTION,)),
    Mutation("advance_guard_off_by_one", K + "construction.py",
             "row, col = (v < c - 1).nonzero(as_tuple=True)",
             "row, col = (v < c - 2).nonzero(as_tuple=True)",
             "pairs one short of the last snapshot never move: the sequence never ends",
             (CONSTRUCTION,)),
    Mutation("threshold_fast_path_always_ratio", K + "construction.py",
             "        if th >= 1:\n            d_next",
             "        if True:\n            d_next",
             "EQUIVALENT: always computing the ratio changes nothing once th < 1: d_next > 0 gives "
             "a finite ratio, which is > th or < 1 whenever th < 1, and d_next = 0 advances anyway",
             (CONSTRUCTION,), equivalent=True),
    Mutation("switch_needs_more_than_share", K + "construction.py",
             "return share_at_last(choice, c) >= switch_share",
             "return share_at_last(choice, c) > switch_share",
             "switch only strictly above the share: switch_share = 1 never switches", (CONSTRUCTION,)),

    # --- ensemble.py: T_u and P_u ------------------------------------------------------------
    Mutation("ensemble_scores_padding", K + "ensemble.py",
             "padding = sorted_ids <= 0", "padding = sorted_ids < 0",
             "item 0 (padding) is scored as an item", (ENSEMBLE,)),
    Mutation("ensemble_ties_by_higher_id", K + "ensemble.py",
             "key = (score << pos_bits) | (n - 1 - torch.arange(n, device=device))\n"
             "        top_key = key.topk(kk, dim=1).values\n"
             "        top_score = top_key >> pos_bits\n"
             "        pos = (n - 1) - (top_key & ((1 << pos_bits) - 1))",
             "key = (score << pos_bits) | torch.arange(n, device=device)\n"
             "        top_key = key.topk(kk, dim=1).values\n"
             "        top_score = top_key >> pos_bits\n"
             "        pos = top_key & ((1 << pos_bits) - 1)",
             "ensemble ties broken by the higher item id", (ENSEMBLE,)),
    Mutation("ensemble_long_path_ascending", K + "ensemble.py",
             "score.sort(dim=1, descending=True, stable=True)",
             "score.sort(dim=1, descending=False, stable=True)",
             "wrong sort direction on the long-list path", (ENSEMBLE,)),
    Mutation("ensemble_ignores_choice", K + "ensemble.py",
             "lists = rankings[teacher, choice[start:end], user]",
             "lists = rankings[teacher, 0 * choice[start:end] + (c - 1), user]",
             "targets from the converged teachers whatever v(u, x) says", (ENSEMBLE,)),
    Mutation("ensemble_weights_wrong_axis", K + "ensemble.py",
             "list_weights = (weights.unsqueeze(1) * w_table).reshape(n)",
             "list_weights = (weights.unsqueeze(0) * w_table.unsqueeze(1)).reshape(n)",
             "teacher weights laid over the rank axis instead of the list axis", (WEIGHTS,)),

    # --- losses.py ---------------------------------------------------------------------------
    Mutation("overall_sigmoid_not_softmax", K + "losses.py",
             "term = F.softplus(log_rest - s)", "term = F.softplus(-s)",
             "sigmoid (pointwise) loss instead of softmax against the remaining items", (LOSSES,)),
    Mutation("overall_remainder_keeps_targets", K + "losses.py",
             "    rest.scatter_(1, torch.where(mask, items, torch.zeros_like(items)), False)\n",
             "",
             "remainder R still holds T_u: targets compete with each other", (LOSSES,)),
    Mutation("overall_index_path_keeps_targets", K + "losses.py",
             "left_out = torch.cat([exclude.long(), torch.where(mask, items, torch.zeros_like(items))],\n"
             "                             dim=1)",
             "left_out = exclude.long()",
             "trainer's fast (index) path keeps T_u in the remainder", (EXCLUSION_INDEX, LOSS_SUM)),
    Mutation("index_path_scores_padding", K + "losses.py",
             "            weight[:, 0] = _NEG_INF  # the padding item is never a candidate\n", "",
             "padding item 0 joins the remainder when a history row has no 0 padding",
             (EXCLUSION_INDEX,)),
    Mutation("pl_prefix_not_tail", K + "losses.py",
             "tail = torch.logcumsumexp(x.flip(1), dim=1).flip(1)",
             "tail = torch.logcumsumexp(x, dim=1)",
             "Plackett-Luce denominators over the list head instead of its tail", (LOSSES,)),
    Mutation("rank_short_head_uses_long_z", K + "losses.py",
             "loss_b = plackett_luce(t_scores[:, :b], target_mask[:, :b], log_z[b])",
             "loss_b = plackett_luce(t_scores[:, :b], target_mask[:, :b], log_z[a])",
             "PL(T_u[:10]) against Z_50 instead of Z_10", (LOSSES,)),
    Mutation("rank_heads_not_halved", K + "losses.py",
             "return loss_p + (loss_a + loss_b) / 2", "return loss_p + loss_a + loss_b",
             "the two T_u heads are summed, not averaged", (LOSSES,)),

    # --- trainer: when to construct, which loss, how much ------------------------------------
    Mutation("construct_period_off_by_one", "recbole_hetcomp/trainer/hetcomp.py",
             "epoch_idx % self.period == 0", "(epoch_idx + 1) % self.period == 0",
             "construction at epochs p-1, 2p-1, ... (period off by one)", (EVERY_PERIOD,)),
    Mutation("construct_after_switch", "recbole_hetcomp/trainer/hetcomp.py",
             "return (not self.switched and epoch_idx", "return (epoch_idx",
             "construction goes on after the switch to the rank loss", (EVERY_PERIOD,)),
    Mutation("rank_loss_before_switch", "recbole_hetcomp/trainer/hetcomp.py",
             "            return self.switched\n", "            return not self.switched\n",
             "listwise loss used before the switch, overall loss after", (LOSS_SUM, ABLATION)),
    Mutation("overall_loss_mean_over_users", "recbole_hetcomp/trainer/hetcomp.py",
             "overall_loss(scores, *batch).sum()", "overall_loss(scores, *batch).mean()",
             "overall loss averaged over users instead of summed", (LOSS_SUM,)),
    Mutation("loss_over_rows_not_users", "recbole_hetcomp/trainer/distillation.py",
             "users = torch.unique(interaction[uid])", "users = interaction[uid]",
             "loss summed over the batch's interactions (repeated users), not distinct users",
             (LOSS_SUM,)),
    Mutation("switch_counts_padding_user", "recbole_hetcomp/trainer/hetcomp.py",
             "switched_now = should_switch(self.knowledge.state.choice[1:],",
             "switched_now = should_switch(self.knowledge.state.choice,",
             "the padding user 0 counts among the pairs that must reach the last snapshot",
             (SWITCH_RULE,)),
    Mutation("switch_share_ignored", "recbole_hetcomp/trainer/hetcomp.py",
             "self.knowledge.n_snapshots, self.switch_share)",
             "self.knowledge.n_snapshots, 1.0)",
             "switch_share is ignored: every pair must reach the last snapshot", (SWITCH_RULE,)),
    Mutation("student_lists_ignore_history", "recbole_hetcomp/trainer/hetcomp.py",
             "excluded = exclusion_mask(self.knowledge.history[users].to(scores.device),",
             "excluded = exclusion_mask(self.knowledge.history[users][:, :0].to(scores.device),",
             "student lists read off validation keep training items RecBole left unmasked",
             (VALID_LISTS,)),

    # --- knowledge_set.py ---------------------------------------------------------------------
    Mutation("finish_one_short_of_last", "recbole_hetcomp/trainer/knowledge_set.py",
             "self.state.choice.fill_(self.n_snapshots - 1)",
             "self.state.choice.fill_(self.n_snapshots - 2)",
             "'finish' moves every pair to snapshot C-2, not the converged C-1", (ABLATION,)),
    Mutation("construct_keeps_old_targets", "recbole_hetcomp/trainer/knowledge_set.py",
             "                       self.batch_size, n, self.temperature)\n"
             "        self.rebuild_targets()",
             "                       self.batch_size, n, self.temperature)",
             "T_u not rebuilt after pairs move: the student keeps the old targets", (REBUILD,)),

    # --- trajectory/recorder.py ---------------------------------------------------------------
    Mutation("snapshot_strictly_above_fraction", "recbole_hetcomp/trajectory/recorder.py",
             "if scores[index] >= fraction * best:", "if scores[index] > fraction * best:",
             "a snapshot must exceed, not reach, its fraction of the best score", (RECORDING,)),
    Mutation("snapshot_search_past_best", "recbole_hetcomp/trajectory/recorder.py",
             "for index in range(best_index + 1):", "for index in range(len(scores)):",
             "EQUIVALENT: fractions are < 1 (check_fractions), so the best evaluation itself "
             "always reaches the fraction and the search stops at or before it", (RECORDING,),
             equivalent=True),
    Mutation("snapshot_not_forced_monotone", "recbole_hetcomp/trajectory/recorder.py",
             "chosen.append(max(pick, chosen[-1]) if chosen else pick)", "chosen.append(pick)",
             "EQUIVALENT: fractions are ascending (check_fractions), so the first evaluation "
             "reaching a larger fraction is never earlier", (RECORDING,), equivalent=True),
    Mutation("recorder_ignores_history", "recbole_hetcomp/trajectory/recorder.py",
             "return exclusion_mask(history.to(device or self.device), self.n_items)",
             "return exclusion_mask(history[:, :0].to(device or self.device), self.n_items)",
             "teacher lists of 'unobserved' items include training items", (RECORDING,
                                                                             RECORDER_TIES)),
    Mutation("observed_lists_include_padding", "recbole_hetcomp/trajectory/recorder.py",
             "        excluded[:, 0] = True\n        return self.top_lists(scores, excluded)",
             "        return self.top_lists(scores, excluded)",
             "padding item 0 ranked among a user's training items: it takes a rank in P_u's "
             "source lists", (RECORDING,)),
]


def check_snippets(mutations):
    """Every snippet must occur exactly once in the unmodified file; list the ones that do not."""
    problems = []
    names = [m.name for m in mutations]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"{name}: the name is used twice")
    for m in mutations:
        path = os.path.join(ROOT, m.path)
        if not os.path.isfile(path):
            problems.append(f"{m.name}: {m.path} does not exist")
            continue
        count = open(path, encoding="utf-8").read().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: snippet occurs {count} times in {m.path}")
        if m.old == m.new:
            problems.append(f"{m.name}: replacement equals the snippet")
    return problems


def make_copy():
    """A plain copy of what the tests need, without bytecode caches."""
    work = tempfile.mkdtemp(prefix="hetcomp-mutation-")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for entry in COPIED:
        source = os.path.join(ROOT, entry)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(work, entry), ignore=ignore)
        else:
            shutil.copy2(source, os.path.join(work, entry))
    return work


def environment(work):
    env = dict(os.environ)
    # The copy first: the checkout is installed in editable mode, and must not be what runs.
    env["PYTHONPATH"] = work + os.pathsep + env.get("PYTHONPATH", "")
    # No .pyc: a mutant and its restored original can share a size and an mtime second, and a
    # stale cache would then run the wrong source.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU torch; keep a stray GPU out of the timing
    return env


def check_import(work, env):
    """The copy's package is the one imported (modules of every mutated folder)."""
    code = ("import recbole_hetcomp.knowledge.construction as a, recbole_hetcomp.trainer.hetcomp "
            "as b, recbole_hetcomp.trajectory.recorder as c; print(a.__file__, b.__file__, "
            "c.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    wrong = [f for f in out if not os.path.realpath(f).startswith(os.path.realpath(work))]
    if wrong:
        raise SystemExit(f"the copy is not what gets imported: {wrong}")


def run_tests(work, env, tests, timeout):
    """(status, seconds, last output line) of pytest on ``tests`` in ``work``."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    # Own session: on a timeout the whole pytest process group is ended, and nothing else.
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "TIMEOUT", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    # pytest: 0 all passed, 1 some test failed; anything else (2 interrupted or collection
    # error, 3 internal, 4 usage, 5 nothing collected) means the tests did not really run.
    status = {0: "SURVIVED", 1: "KILLED"}.get(proc.returncode, "ERROR")
    return status, seconds, last


def apply(work, m):
    path = os.path.join(work, m.path)
    original = open(path, encoding="utf-8").read()
    assert original.count(m.old) == 1, m.name
    with open(path, "w", encoding="utf-8") as f:
        f.write(original.replace(m.old, m.new))
    return path, original


def table(results):
    rows = ["| # | mutation | file | bug modelled | tests | result | s |",
            "|---|---|---|---|---|---|---|"]
    for i, (m, status, seconds, _) in enumerate(results, 1):
        shown = status + (" (equivalent)" if m.equivalent and status == "SURVIVED" else "")
        tests = "<br>".join(t.replace("tests/", "") for t in m.tests)
        rows.append(f"| {i} | `{m.name}` | {m.path.replace('recbole_hetcomp/', '')} | "
                    f"{m.why.replace('|', '/')} | {tests} | {shown} | {seconds:.0f} |")
    return "\n".join(rows)


def summary(results):
    killed = sum(s == "KILLED" for _, s, _, _ in results)
    equivalent = sum(s == "SURVIVED" and m.equivalent for m, s, _, _ in results)
    survived = sum(s == "SURVIVED" and not m.equivalent for m, s, _, _ in results)
    other = len(results) - killed - equivalent - survived
    wrongly_equivalent = [m.name for m, s, _, _ in results if m.equivalent and s == "KILLED"]
    text = (f"**{killed} / {len(results) - equivalent} non-equivalent mutants killed** "
            f"({len(results)} mutants: {killed} killed, {survived} survived, {equivalent} "
            f"equivalent (survived, no observable change), {other} error/timeout)")
    if wrongly_equivalent:
        text += f"; marked equivalent but killed: {', '.join(wrongly_equivalent)}"
    return text, survived + other


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this mutation (repeatable)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutant")
    parser.add_argument("--markdown", metavar="PATH",
                        help="also write the table, with a header, to PATH")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip checking that the selected tests pass on the unmutated copy")
    args = parser.parse_args(argv)

    problems = check_snippets(MUTATIONS)
    if problems:
        print("refusing to run, the mutation list no longer matches the code:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 2
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:36} {m.path:44} {'(equivalent) ' if m.equivalent else ''}{m.why}")
        return 0
    chosen = MUTATIONS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTATIONS}
        if unknown:
            print(f"unknown mutation(s): {', '.join(sorted(unknown))} (see --list)",
                  file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in args.only]

    started, load_before = time.perf_counter(), os.getloadavg()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    work = make_copy()
    try:
        env = environment(work)
        check_import(work, env)
        if not args.no_baseline:
            # Without this, a test that fails anyway would count every mutant as killed.
            selection = sorted({t for m in chosen for t in m.tests})
            status, seconds, last = run_tests(work, env, selection, args.timeout * 3)
            print(f"baseline (unmutated copy): {status} in {seconds:.0f} s: {last}", flush=True)
            if status != "SURVIVED":
                print("the selected tests do not pass on the unmutated code", file=sys.stderr)
                return 1
        results = []
        for i, m in enumerate(chosen, 1):
            path, original = apply(work, m)
            try:
                status, seconds, last = run_tests(work, env, list(m.tests), args.timeout)
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original)
            results.append((m, status, seconds, last))
            print(f"[{i}/{len(chosen)}] {status:8} {seconds:5.0f} s  {m.name}: {last}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    load_after = os.getloadavg()
    text, open_count = summary(results)
    body = table(results) + "\n\n" + text + "\n"
    print("\n" + body)
    if args.markdown:
        import torch  # only for the header: the torch build the tests ran on

        cores = os.cpu_count()
        header = (
            "# Mutation check: do the tests catch method-fidelity bugs?\n\n"
            f"- date: {date}\n"
            f"- machine: {cores}-core VM ({platform.machine()}, {platform.system()}), "
            f"CPU torch {torch.__version__}, Python {platform.python_version()}, "
            "OMP_NUM_THREADS=1, mutants run one at a time\n"
            f"- load average (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load_before)} at the "
            f"start, {' / '.join(f'{x:.2f}' for x in load_after)} at the end (other work ran "
            "beside it)\n"
            f"- total time: {total / 60:.1f} min ({total:.0f} s, baseline run included)\n"
            "- command: `python benchmarks/mutation_check.py --markdown "
            "results/mutation_check.md`\n\n"
            "Each mutant is one edit, applied to a temporary copy of the repository; its tests run "
            "with `pytest -x -q -p no:cacheprovider`. KILLED: a test failed. SURVIVED "
            "(equivalent): the edit changes no observable behaviour, the reason is in its row. "
            "The list and the selections are in `benchmarks/mutation_check.py`.\n\n")
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(header + body)
    print(f"total time {total:.0f} s")
    return 1 if open_count else 0


if __name__ == "__main__":
    sys.exit(main())
