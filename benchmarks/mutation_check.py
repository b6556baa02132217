"""Mutation check: do the tests catch plausible mistakes in the method, in serving, in
reusing stored work, and in device placement?

Three batches of mutations. ``METHOD`` models ways of misreading the method spec
(``../shared/docs/hetcomp-method.md``, beside the checkout); ``SERVING`` models silent bugs
where a user keeps and serves a model or reuses stored work (the model package and its
manifest, the Recommender's exclusion, ids, fallback and cuts, the HTTP bounds, the trajectory
store, the split fingerprint, the validation-fitted ensemble weights), against the code's
documented contract (README, docstrings). ``DEVICE`` models the placement bugs of issue 9 (a
tensor left on the CPU beside a GPU run), which pass on a CPU-only machine: their tests run on
the simulated accelerator (``HETCOMP_TEST_DEVICE=sim``, tests/sim_accelerator.py), and once
more on the plain CPU to show that only the simulation catches them. Each is an exact source snippet, its replacement, the
bug it stands for, and the narrow set of tests that should notice. For each mutation the script edits
a throw-away copy of the repository (never the working tree), runs those tests there with
``pytest -x -q -p no:cacheprovider`` and records

    KILLED    the tests failed: the mistake is caught
    SURVIVED  the tests passed: a gap, unless the mutation is marked equivalent
    ERROR     pytest could not run (collection/import error): the mutation itself is broken
    TIMEOUT   the tests ran past --timeout

A snippet must occur exactly once in its file, for every mutation in the list, or the script
refuses to run: a list that no longer matches the code fails loudly instead of rotting.
A mutant that survived its batch's first run carries a ``gap`` note (what the tests missed,
and the test that now kills it); ``--markdown`` prints those notes and each batch's first-run
summary (``BATCHES``) after the table.

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

# Serving and store selections. test_serving.py's ``run`` fixture trains its tiny pipeline once
# per pytest process (~3 s), so each mutant runs named tests, never the whole file.
SV = "recbole_hetcomp/serving/"
SERVE = "tests/test_serving.py::"
CORRUPT = SERVE + "test_corrupt_truncated_tampered_and_foreign_packages_are_refused"
COVERED = SERVE + "test_every_file_a_loader_reads_is_covered_by_the_manifest"
MALFORMED = SERVE + "test_malformed_manifests_and_cards_are_named_as_such"
KNOWN_CSR = SERVE + "test_known_items_are_each_users_distinct_items"
BRUTE = SERVE + "test_recommendations_are_the_brute_force_topk_without_known_items"
LARGE_K = SERVE + "test_k_larger_than_the_catalogue"
FALLBACK = SERVE + "test_unknown_user_falls_back_to_popular_items_flagged"
HAND_FALLBACK = SERVE + "test_fallback_is_the_popular_real_items_by_count_then_id"
HAND = SERVE + "test_a_hand_made_package_ranks_by_score_then_id_without_known_items"
BATCH = SERVE + "test_a_batch_equals_one_user_at_a_time"
SIMILAR = SERVE + "test_similar_items"
FACTOR_CHECK = SERVE + "test_a_factorised_form_that_misses_the_models_scores_is_refused"
FAISS = SERVE + "test_faiss_index_gives_the_brute_force_lists"
HTTP = SERVE + "test_http_endpoint_answers_rejects_bad_input_and_keeps_serving"
STORE = "tests/test_store.py"
SAME_SPLIT = "tests/test_recording.py::test_same_split_whatever_the_seed"


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str          # file, relative to the repository root
    old: str           # must occur exactly once in the file
    new: str
    why: str           # the mistake it models (and, for equivalent ones, why nothing changes)
    tests: tuple       # pytest node paths that should catch it
    equivalent: bool = False
    #: For a mutant that survived its batch's first run: the gap in the tests, and the test
    #: (added or strengthened) that now kills it. Printed under "first run" in the results.
    gap: str = ""
    #: Run the tests on the simulated accelerator (and, for comparison, on the plain CPU).
    sim: bool = False


#: The method core: knowledge/, trainer/, trajectory/recorder.py (first run 2026-12-03).
METHOD = [
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
             "top-k size K instead of K+1: a tie across the cut goes unseen", (TIES, CUT_TIE),
             gap="every tie-break test had ties *inside* the top k, so the (k+1)-th value never "
                 "mattered; torch's CPU top-k does not return the lowest id among items tied at "
                 "the cut -> `test_device.py::test_a_tie_only_across_the_cut_is_broken_by_the_"
                 "lower_item_id`"),

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
             "ideal DCG over the student list's length, not all n positions", (CONSTRUCTION,),
             gap="no test gave `discrepancy` a student list shorter than n (the trainer always "
                 "pads to n, so only the public function's contract was open) -> "
                 "`test_knowledge_construction.py::test_discrepancy_of_a_student_list_shorter_"
                 "than_n` (D = 0.48248 by hand for n = 3)"),
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
             "0/0 and x/0 ratios (student matches the next snapshot) never advance", (CONSTRUCTION,),
             gap="the x/0 case was only tested with x < 1, which the \"ratio < 1\" branch also "
                 "advances; d = 1 then d_next = 0 (ratio = inf) was not -> new case "
                 "`(1.0, 0, True)` in `test_advance_rule_edge_cases`"),
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
             (SWITCH_RULE,),
             gap="nothing checked which pairs the switch rule counts; RecBole's padding user 0 "
                 "never moves while th >= 1 and would hold the switch back -> "
                 "`test_pipeline.py::test_switch_rule_counts_real_users_at_the_configured_share`"),
    Mutation("switch_share_ignored", "recbole_hetcomp/trainer/hetcomp.py",
             "self.knowledge.n_snapshots, self.switch_share)",
             "self.knowledge.n_snapshots, 1.0)",
             "switch_share is ignored: every pair must reach the last snapshot", (SWITCH_RULE,),
             gap="the trainer's use of `switch_share` was untested (every test had all pairs at "
                 "the last snapshot) -> the same test, cases share 0.5 at exactly 50% (switch) "
                 "and 45% (no switch)"),
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
             "T_u not rebuilt after pairs move: the student keeps the old targets", (REBUILD,),
             gap="no test checked that T_u follows the moved snapshot choices (the trainer tests' "
                 "teacher had two identical snapshots) -> `test_pipeline.py::test_construction_"
                 "rebuilds_the_targets_from_the_new_choices`"),

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

#: What a user keeps and serves (serving/), and reused stored work (trajectory store, split
#: fingerprint, the validation-fitted ensemble weights).
SERVING = [
    # --- serving/package.py: the manifest is what makes a package safe to load ---------------
    Mutation("package_hash_of_the_wrong_file", SV + "package.py",
             'if file_sha256(file) != entry["sha256"]:',
             'if file_sha256(os.path.join(path, CARD)) != files[CARD]["sha256"]:',
             "every manifest entry's sha256 is compared with the model card's file, not its own: "
             "a same-size edit of any other file passes", (CORRUPT,)),
    Mutation("load_skips_verification", SV + "recommender.py",
             "card = read_card(path, verify=verify)", "card = read_card(path, verify=False)",
             "Recommender.load never verifies, even with verify=True (the default)",
             (CORRUPT, COVERED)),
    Mutation("card_files_not_checked_against_manifest", SV + "package.py",
             'unchecked = sorted(set(files) - set(manifest["files"]))', "unchecked = []",
             "a file the card lists but the manifest does not cover is read unchecked",
             (COVERED,)),
    Mutation("newer_package_version_accepted", SV + "package.py",
             "    if version == FORMAT_VERSION:\n        return",
             "    if version >= FORMAT_VERSION:\n        return",
             "a package of a newer format version is read as if it were this one", (MALFORMED,)),
    Mutation("known_items_keep_repeated_pairs", SV + "package.py",
             "pairs = np.unique(users * dataset.item_num + items)",
             "pairs = np.sort(users * dataset.item_num + items)",
             "a (user, item) pair logged twice is stored twice in the known-items CSR: it counts "
             "twice in the popularity fallback and twice against the user's remaining items",
             (KNOWN_CSR,),
             gap="the tiny dataset logs no pair twice, and no test read the known-items CSR "
                 "itself -> `test_serving.py::test_known_items_are_each_users_distinct_items` "
                 "(CSR of a hand-made dataset with repeated pairs)"),

    # --- serving/recommender.py: exclusion, ids, fallback, cuts ------------------------------
    Mutation("known_items_slice_off_by_one", SV + "recommender.py",
             "starts, ends = self.indptr[user_ids], self.indptr[user_ids + 1]",
             "starts, ends = self.indptr[user_ids], self.indptr[user_ids + 1] - 1",
             "CSR slice [indptr[u], indptr[u+1] - 1): each user's last known item is not excluded",
             (BRUTE,)),
    Mutation("brute_force_ranks_padding_item", SV + "recommender.py",
             "        scores[:, 0] = -torch.inf\n        allowed = np.full(",
             "        allowed = np.full(",
             "the padding item 0 competes with the real items (it has a score like any row of Q)",
             (BRUTE, HAND),
             gap="killed in the first run only by `test_faiss_index_gives_the_brute_force_lists` "
                 "(index against brute force), which is skipped where faiss is not installed: "
                 "the tiny student's padding row never scored high enough -> `test_serving.py::"
                 "test_a_hand_made_package_ranks_by_score_then_id_without_known_items` (the "
                 "padding item's factor would top the list)"),
    Mutation("fallback_includes_padding_item", SV + "recommender.py",
             "        popularity[0] = -1.0  # the padding item is never recommended\n", "",
             "the padding item 0 (count 0) joins the popular items: it is recommended before any "
             "real item nobody interacted with", (FALLBACK, HAND_FALLBACK),
             gap="every item of the tiny dataset has interactions, so the padding item (count 0) "
                 "sorted last and fell past the cut; an item nobody interacted with puts it "
                 "before that item -> "
                 "`test_serving.py::test_fallback_is_the_popular_real_items_by_count_then_id` (a "
                 "hand-made package: counts 2, 2, 1, 1, 0)"),
    Mutation("fallback_ties_by_higher_id", SV + "recommender.py",
             'self._popular = np.argsort(-popularity, kind="stable")[:len(item_tokens) - 1]',
             'self._popular = np.argsort(popularity, kind="stable")[::-1][:len(item_tokens) - 1]',
             "most popular first by reversing an ascending sort: equally popular items come "
             "higher id first", (FALLBACK, HAND_FALLBACK)),
    Mutation("unknown_user_served_as_padding_user", SV + "recommender.py",
             "return np.array([self._user_id.get(u, -1) for u in users], dtype=np.int64)",
             "return np.array([self._user_id.get(u, 0) for u in users], dtype=np.int64)",
             "an unknown user token maps to id 0 (padding) and gets the padding user's scores, "
             "not the flagged popular-items fallback", (FALLBACK,)),
    Mutation("lengths_not_capped_at_k", SV + "recommender.py",
             "return items.cpu().numpy(), values.cpu().numpy(), np.minimum(allowed, width)",
             "return items.cpu().numpy(), values.cpu().numpy(), allowed",
             "Batch.lengths counts every item the user has left, not the k returned",
             (FALLBACK, HAND),
             gap="as above, only the faiss comparison caught it (the other tests load the index, "
                 "whose path computes its own lengths) -> the same hand-made test: lengths k, "
                 "fewer only when fewer items are left"),
    Mutation("batch_rows_by_position", SV + "recommender.py",
             "items[rows], scores[rows], lengths[rows] = got_items, got_scores, got_lengths",
             "items[start:start + len(rows)], scores[start:start + len(rows)], "
             "lengths[start:start + len(rows)] = got_items, got_scores, got_lengths",
             "a chunk's results are written at its position among the known users, not at their "
             "rows of the request: wrong once an unknown user comes before a known one",
             (BATCH,),
             gap="every batch in the tests had its unknown users last and fit in one chunk -> "
                 "`test_serving.py::test_a_batch_equals_one_user_at_a_time` (unknown users first "
                 "and between, chunks of 2 users)"),
    Mutation("similar_items_include_the_item", SV + "recommender.py",
             "            sims[torch.arange(len(ids), device=self.device),\n"
             "                 torch.as_tensor(ids, device=self.device)] = -torch.inf\n", "",
             "similar_items lists the item itself (cosine 1) first", (SIMILAR,)),
    Mutation("similar_items_cut_forgets_the_item", SV + "recommender.py",
             "values, top = topk_by_id(sims, min(k, self.n_items - 1))",
             "values, top = topk_by_id(sims, min(k, self.n_items))",
             "a large k cuts at n_items, not n_items - 1: the item itself (or padding) comes last "
             "with score -inf", (SIMILAR,),
             gap="similar_items was only asked for k = 5, far below the catalogue -> "
                 "`test_similar_items` also asks k = 10000: every other real item, in order, no "
                 "-inf score"),

    # --- serving/factors.py, index.py, http.py ------------------------------------------------
    Mutation("factor_check_absolute_tolerance", SV + "factors.py",
             "rtol=1e-4, atol=1e-5 * float(scale)", "rtol=1e-4, atol=float(scale)",
             "the export check's tolerance is the scores' scale itself: a factorised form off by "
             "a fraction of the largest score is shipped as the model", (FACTOR_CHECK,),
             gap="the export check only ever saw models that pass it -> "
                 "`test_serving.py::test_a_factorised_form_that_misses_the_models_scores_"
                 "is_refused` "
                 "(a model named BPR whose scores add 0.5 to one item: refused, max difference "
                 "0.5)"),
    Mutation("index_overfetch_ignores_known_items", SV + "recommender.py",
             "fetch = int(min(self.n_items + 1, width + int(known.max(initial=0)) + 2))",
             "fetch = int(min(self.n_items + 1, width + 2))",
             "the faiss path fetches k + 2 candidates whatever the user's known items: after "
             "dropping them most users fall short and go brute force", (FAISS,)),
    Mutation("http_k_without_upper_bound", SV + "http.py",
             "if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_K:",
             "if not _DIGITS.fullmatch(text) or not 1 <= int(text):",
             "GET /recommend accepts any k up to 18 digits (the documented bound is 1000)",
             (HTTP,),
             gap="the bad k's tried were 0, non-digits and 20 digits (refused by the digit "
                 "pattern), never 1001 -> "
                 "`test_http_endpoint_answers_rejects_bad_input_and_keeps_serving`: k = 1000 "
                 "answered, 1001 refused, on /recommend and /similar"),

    # --- trajectory/store.py and the store's identity ----------------------------------------
    Mutation("store_fingerprint_prefix_only", "recbole_hetcomp/trajectory/store.py",
             'if fingerprint is not None and manifest.get("split_fingerprint") != fingerprint:',
             'if fingerprint is not None and str(manifest.get("split_fingerprint"))[:16] != '
             "fingerprint[:16]:",
             "the store compares only the 16-character prefix its directory is named by: another "
             "split with that prefix is reused", (STORE,),
             gap="the other split tried differed in its first character -> "
                 "`test_store.py::test_other_split_or_settings_refused` also refuses one "
                 "differing in its last"),
    Mutation("store_checksum_size_only", "recbole_hetcomp/trajectory/store.py",
             'if os.path.getsize(file) != expected["bytes"] or file_sha256(file) != '
             'expected["sha256"]:',
             'if os.path.getsize(file) != expected["bytes"]:',
             "array files are checked by size only: a same-size corruption is loaded", (STORE,),
             gap="the same-size corruption pushed an id out of the catalogue, so the id check "
                 "refused it, and `match=\"corrupt\"` matched the test's own folder name in the "
                 "path -> `test_store.py::test_corrupt_and_truncated_files_refused`: one id "
                 "changed to another valid id, the whole message matched"),
    Mutation("replacement_sets_the_old_store_aside_first", "recbole_hetcomp/trajectory/store.py",
             '        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", '
             "dir=parent)\n",
             "        if os.path.exists(path):\n"
             '            self._set_aside(path, "replaced")\n'
             '        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", '
             "dir=parent)\n",
             "the old store is moved aside before the new one is written: an interrupted "
             "replacement leaves no store at the path", (STORE,),
             gap="an interrupted write was only tested for a new store -> "
                 "`test_store.py::test_an_interrupted_replacement_keeps_the_old_store`"),
    Mutation("set_aside_deletes_the_newest", "recbole_hetcomp/trajectory/store.py",
             'key=lambda p: p.rsplit("-", 3)[-3:])',
             'key=lambda p: p.rsplit("-", 3)[-3:], reverse=True)',
             "past keep_aside, the newest set-aside copies are deleted and the oldest kept",
             (STORE,),
             gap="the tests counted the set-aside copies kept, never which -> "
                 "`test_store.py::test_set_aside_keeps_the_newest_copies` (five saves, "
                 "keep_aside 2: generations 2 and 3)"),
    Mutation("teacher_settings_drop_metrics_and_topk", "recbole_hetcomp/teachers.py",
             'keys = sorted(set(model_keys(config["model"])) | set(TRAINING_KEYS))',
             'keys = sorted(set(model_keys(config["model"])) | set(TRAINING_KEYS) - {"metrics", '
             '"topk"})',
             "metrics and topk left out of a teacher's store identity: a run with other metrics "
             "reuses stored test results that lack them", (STORE,),
             gap="no test read `teacher_settings` -> "
                 "`test_store.py::test_teacher_settings_name_every_key_that_shapes_a_stored_"
                 "trajectory` "
                 "(the README's list of keys; a logging key changes nothing)"),

    # --- data/split.py: the split fingerprint (the store's and the package's split key) ------
    Mutation("split_fingerprint_train_part_only", "recbole_hetcomp/data/split.py",
             "    for part in parts:\n        users = part.inter_feat",
             "    for part in parts[:1]:\n        users = part.inter_feat",
             "only the training part is hashed: a split whose validation/test parts differ keeps "
             "the fingerprint", (STORE,),
             gap="the only fingerprint test compared two whole splits under different split "
                 "seeds -> "
                 "`test_store.py::test_split_fingerprint_is_every_parts_interactions_in_any_order` "
                 "(an interaction moved from validation to test, another test item)"),
    Mutation("split_fingerprint_order_dependent", "recbole_hetcomp/data/split.py",
             "order = np.lexsort((items, users))", "order = np.arange(len(users))",
             "the fingerprint depends on the order of a part's interactions", (STORE,),
             gap="the same: no test gave the fingerprint one split in two orders -> the same "
                 "test (each part reversed)"),
    Mutation("split_fingerprint_ignores_split_seed", "recbole_hetcomp/data/split.py",
             '        "split_seed": config["split_seed"],\n', "",
             "EQUIVALENT: the split seed is left out of the hashed settings, but it reaches the "
             "fingerprint through the parts, which are hashed themselves: seeds that split "
             "differently give different fingerprints anyway (test_same_split_whatever_the_seed), "
             "and seeds that give the same parts (an ordered LS split) give the same split, whose "
             "stored trajectories are right to reuse", (SAME_SPLIT,), equivalent=True),

    # --- ensemble.py and knowledge/weights.py: the validation-fitted ensemble ----------------
    Mutation("weights_fitted_on_the_first_snapshot", "recbole_hetcomp/ensemble.py",
             "[t.rankings[-1].astype(np.int64) for t in trajectories]",
             "[t.rankings[0].astype(np.int64) for t in trajectories]",
             "ensemble weights fitted on the teachers' first snapshot, not the converged one",
             (WEIGHTS,),
             gap="`converged_lists` was untested, and the pipeline test's check (chosen weights "
                 "never worse than uniform or a single teacher on validation) holds whatever "
                 "lists were fitted -> "
                 "`test_knowledge_weights.py::test_weights_are_fitted_on_the_converged_lists`"),
    Mutation("selection_ties_to_the_higher_teacher", K + "weights.py",
             "key=lambda t: (candidates[t], -t))", "key=lambda t: (candidates[t], t))",
             "the greedy search breaks ties by the higher teacher index", (WEIGHTS,),
             gap="the search tests had one best teacher at every step -> "
                 "`test_knowledge_weights.py::test_search_ties_go_to_the_lower_teacher_index` "
                 "(two identical perfect teachers)"),
    Mutation("uniform_must_win_strictly", K + "weights.py",
             "if uniform >= best:", "if uniform > best:",
             "a uniform ensemble as good as the selection is not kept (the paper's ensemble is "
             "the default)", (WEIGHTS,)),
]

R = "recbole_hetcomp/"
RECORDED_EASE = "tests/test_recording.py::test_recorded_lists_equal_brute_force[EASE]"
RECORDED_BPR = "tests/test_recording.py::test_recorded_lists_equal_brute_force[BPR]"
MODELS = "tests/test_models.py::"
SYNCS_PER_BATCH = "tests/test_device.py::test_a_student_epoch_waits_for_the_device_once_per_batch"

#: Device placement and host syncs (issue 9): a tensor left on the CPU while the run is on a
#: GPU, the kind of bug no CPU-only test run can see, and a host sync per batch or chunk that
#: the simulated accelerator counts (first run 2026-12-03).
DEVICE = [
    Mutation("recorder_masks_on_the_run_device", R + "trajectory/recorder.py",
             "scores, self.training_mask(batch, scores.device)).to(self.device)",
             "scores, self.training_mask(batch)).to(self.device)",
             "the recorder builds its masks on the run's device while EASE scores on the CPU "
             "(issue 9's defect 3)", (RECORDED_EASE,), sim=True),
    Mutation("recorder_users_left_on_the_cpu", R + "trajectory/recorder.py",
             "Interaction({self.uid_field: users.to(self.device)})",
             "Interaction({self.uid_field: users})",
             "the recorder scores CPU user ids with a model on the device", (RECORDED_BPR,),
             sim=True),
    Mutation("knowledge_history_left_on_the_cpu", R + "trainer/knowledge_set.py",
             "self.history = history.to(device)", "self.history = history",
             "the knowledge set keeps the training histories on the CPU, indexed by device "
             "user ids", (LOSS_SUM,), sim=True),
    Mutation("distillation_batch_left_on_the_cpu", R + "trainer/distillation.py",
             "users = torch.unique(interaction[uid]).to(self.device)\n"
             "            interaction = interaction.to(self.device)",
             "users = torch.unique(interaction[uid])",
             "the distillation loop never moves its batch to the device", (LOSS_SUM,), sim=True,
             gap="the loss test moved its batch to the device itself before handing it to the "
                 "loop, which a loader never does -> "
                 "`test_pipeline.py::test_student_loss_is_the_weighted_sum_over_the_batch_"
                 "distinct_users` hands the loop the loader's CPU batch"),
    Mutation("unique_users_found_on_the_device", R + "trainer/distillation.py",
             "users = torch.unique(interaction[uid]).to(self.device)\n"
             "            interaction = interaction.to(self.device)",
             "interaction = interaction.to(self.device)\n"
             "            users = torch.unique(interaction[uid])",
             "the loop finds its batch's users on the device: a second host sync per batch "
             "(issue 9's defect 6)", (SYNCS_PER_BATCH,)),
    Mutation("nan_checked_per_chunk", R + "trainer/hetcomp.py",
             "            loss.backward()\n            total = loss.detach()",
             "            loss.backward()\n            assert torch.isfinite(loss).item()\n"
             "            total = loss.detach()",
             "the loss is read on the host once per chunk (an .item() per chunk, issue 9's "
             "defect 6)", (SYNCS_PER_BATCH,)),
    Mutation("anomaly_mode_left_on", R + "registry.py",
             "    finally:\n        torch.autograd.set_detect_anomaly(anomaly)\n", "",
             "a refused model name leaves RecBole's SINE switch on: autograd's anomaly "
             "detection (a host sync after every backward operation) for the rest of the "
             "process", ("tests/test_config.py::"
                         "test_a_refused_model_name_leaves_autograd_anomaly_detection_off",)),
    Mutation("itemvae_rows_made_on_the_cpu", R + "model/itemvae.py",
             "rows = torch.zeros(len(items), self.n_users, device=self.device)",
             "rows = torch.zeros(len(items), self.n_users)",
             "ItemVAE's dense item rows are made on the CPU and filled from device ids",
             (MODELS + "test_itemvae_reads_item_rows_of_training_matrix",), sim=True),
    Mutation("neumf_items_made_on_the_cpu", R + "model/neumf.py",
             "items = torch.arange(n_items, device=self.device)",
             "items = torch.arange(n_items)",
             "NeuMF's per-pair full sort looks up CPU item ids in device embeddings",
             (MODELS + "test_neumf_training_mode_with_input_dropout_scores_each_pair",),
             sim=True),
    Mutation("dcd_generator_on_the_cpu", R + "trainer/ranking_distillation.py",
             "torch.Generator(device=self.device)", "torch.Generator()",
             "RRD and DCD draw on the device with a CPU random generator",
             (PIPE + "test_ablations_and_distillation_baselines_are_rows",), sim=True),
    Mutation("ensemble_ranker_scores_on_the_cpu", R + "model/ensemble_ranker.py",
             "scores = torch.full((len(users), self.n_items), -1e9, device=lists.device)",
             "scores = torch.full((len(users), self.n_items), -1e9)",
             "the teachers' ensemble scores its lists into a CPU matrix",
             (PIPE + "test_ablations_and_distillation_baselines_are_rows",), sim=True),
    Mutation("serving_factors_left_on_the_cpu", R + "serving/recommender.py",
             "torch.from_numpy(f).to(self.device)", "torch.from_numpy(f)",
             "a package served with device='cuda' keeps its factors on the CPU", (BRUTE,),
             sim=True),
]

MUTATIONS = METHOD + SERVING + DEVICE

#: Each batch's first run, before the tests it showed missing were written: (title, mutations,
#: what that run found). The mutants it left alive carry their ``gap``.
BATCHES = [
    ("Method core", METHOD,
     "First run 2026-12-03 on the same machine, 279 s: 37 / 43 non-equivalent mutants killed; "
     "six survived, each a real gap in the tests, not in the code (no mutant showed the code to "
     "be wrong against `hetcomp-method.md`). The tests that now kill them take their expected "
     "values from the spec (hand-computed, or the spec-written reference loops)."),
    ("Serving and stored work", SERVING,
     "First run 2026-12-03 on the same machine, 346 s, each mutant against the whole of its "
     "test files as they were (`test_serving.py`; `test_store.py` with "
     "`test_recording.py::test_same_split_whatever_the_seed` and the store tests of "
     "`test_bad_input.py`; `test_knowledge_weights.py`): 12 / 28 killed, two of them only by "
     "the faiss-against-brute-force test, which is skipped where faiss (the optional `[serve]` "
     "extra) is not installed. One of the 16 survivors is equivalent "
     "(`split_fingerprint_ignores_split_seed`, the reason is in its row); the other 15, and "
     "those two, were gaps in the tests, none a defect in the code. The new tests take their "
     "expected values from the README and docstrings, or from small hand-worked packages, "
     "stores and splits; none asks the code under test for them."),
    ("Device placement", DEVICE,
     "First run 2026-12-03 on the same machine, 191 s, of the 9 placement mutants: on the "
     "plain CPU all 9 survived (a CPU-only machine cannot see a tensor left on the CPU); on "
     "the simulated accelerator 8 / 9 were killed. The survivor was a gap in a test, not in "
     "the code. The 3 host-sync mutants came later, with the tests they target (those tests "
     "count syncs on the simulation themselves, so they run in the plain suite)."),
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
    env["HETCOMP_TEST_DEVICE"] = "cpu"
    return env


def sim_environment(env):
    """``env`` with the tests on the simulated accelerator."""
    return {**env, "HETCOMP_TEST_DEVICE": "sim"}


def check_import(work, env):
    """The copy's package is the one imported (modules of every mutated folder)."""
    modules = ("knowledge.construction", "trainer.hetcomp", "trajectory.recorder",
               "trajectory.store", "serving.recommender", "data.split", "ensemble", "teachers")
    code = ("import importlib; print(*(importlib.import_module('recbole_hetcomp.' + m).__file__ "
            f"for m in {modules!r}))")
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


def table(results, plain=None):
    """Markdown rows; ``plain``: mutant name -> its status on the plain CPU run (sim mutants)."""
    plain = plain or {}
    rows = ["| # | mutation | file | bug modelled | tests | result | s |",
            "|---|---|---|---|---|---|---|"]
    for i, (m, status, seconds, _) in enumerate(results, 1):
        shown = status + (" (equivalent)" if m.equivalent and status == "SURVIVED" else "")
        if m.name in plain:
            shown = f"{shown} on the simulated accelerator; {plain[m.name]} on the plain CPU"
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


def first_runs():
    """Each batch's first run and the gaps it found (from ``BATCHES`` and each ``gap``)."""
    parts = []
    for title, mutations, found in BATCHES:
        parts += [f"\n## {title}: first run, before the new tests\n", found, ""]
        gaps = [m for m in mutations if m.gap]
        if gaps:
            parts += ["| mutant | gap -> test that now kills it |", "|---|---|"]
            parts += [f"| `{m.name}` | {m.gap.replace('|', '/')} |" for m in gaps]
    return "\n".join(parts) + "\n"


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
        sim_env = sim_environment(env)
        if not args.no_baseline:
            # Without this, a test that fails anyway would count every mutant as killed.
            for where, run_env, sim in (("", env, False), (", simulated accelerator", sim_env,
                                                           True)):
                selection = sorted({t for m in chosen if m.sim == sim for t in m.tests})
                if not selection:
                    continue
                status, seconds, last = run_tests(work, run_env, selection, args.timeout * 3)
                print(f"baseline (unmutated copy{where}): {status} in {seconds:.0f} s: {last}",
                      flush=True)
                if status != "SURVIVED":
                    print("the selected tests do not pass on the unmutated code",
                          file=sys.stderr)
                    return 1
        results, plain = [], {}
        for i, m in enumerate(chosen, 1):
            path, original = apply(work, m)
            try:
                if m.sim:  # the same tests on the plain CPU first: what a CPU-only run sees
                    plain[m.name] = run_tests(work, env, list(m.tests), args.timeout)[0]
                status, seconds, last = run_tests(work, sim_env if m.sim else env,
                                                  list(m.tests), args.timeout)
            finally:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(original)
            results.append((m, status, seconds, last))
            seen = f" (plain CPU: {plain[m.name]})" if m.sim else ""
            print(f"[{i}/{len(chosen)}] {status:8} {seconds:5.0f} s  {m.name}{seen}: {last}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    load_after = os.getloadavg()
    text, open_count = summary(results)
    body = table(results, plain) + "\n\n" + text + "\n"
    print("\n" + body)
    if args.markdown:
        import torch  # only for the header: the torch build the tests ran on

        cores = os.cpu_count()
        header = (
            "# Mutation check: do the tests catch plausible bugs in the method, in serving, in "
            "reused stored work and in device placement?\n\n"
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
            "Device-placement mutants run their tests on the simulated accelerator "
            "(`HETCOMP_TEST_DEVICE=sim`, `tests/sim_accelerator.py`) and, before that, on the "
            "plain CPU, whose result is given beside. "
            "The list and the selections are in `benchmarks/mutation_check.py`.\n\n")
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(header + body + first_runs())
    print(f"total time {total:.0f} s")
    return 1 if open_count else 0


if __name__ == "__main__":
    sys.exit(main())
