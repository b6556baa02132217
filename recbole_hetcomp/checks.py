"""Everything about a run that can be checked before any model trains.

A user mistake found after six teachers have trained for minutes costs those minutes; one found
inside RecBole ends in a traceback. So ``check_run`` reads the whole configuration (the run's,
each teacher's and the baseline's) before the split is built, and ``check_split`` what needs the
catalogue's size, before the first teacher trains. Each problem is one ``HetCompError`` line that
names the key, the value and the fix. Misspelt keys are warned about, not refused: RecBole reads
keys this plugin cannot list (a model's own keys), so an unknown key may still be meant; only a
key misspelt from one that decides what runs (``DECISIVE_KEYS``) is refused.
"""

import difflib
import os
import shutil
import tempfile

from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.registry import get_model, plugin_models

STUDENT = "HetCompStudent"

# --- numeric domains ------------------------------------------------------------------------
#: Keys that must be integers >= 1 wherever they are set (None = "use the default rule").
POSITIVE_INTS = ("epochs", "train_batch_size", "eval_batch_size", "embedding_size", "eval_step",
                 "kc_period", "hetcomp_k", "hetcomp_l", "discrepancy_n", "trajectory_topk",
                 "trajectory_snapshots", "trajectory_batch_size", "knowledge_batch_size",
                 "loss_chunk_users", "kd_teacher_n", "kd_interesting", "kd_uninteresting",
                 "dcd_samples", "dcd_student_n", "dcd_refresh", "teacher_workers",
                 "seed_workers")
#: Keys that must be numbers > 0.
POSITIVE_NUMBERS = ("learning_rate", "temperature", "alpha", "gpu_memory_budget",
                    "kd_temperature", "dcd_epsilon")
#: Keys that must be numbers >= 0.
NON_NEGATIVE = ("trajectory_keep_aside", "weight_decay", "stopping_step", "overall_weight",
                "rank_weight", "cf_weight", "kd_weight", "teacher_gpus", "seed_gpus")
#: Keys that must lie in (0, 1].
SHARES = ("switch_share", "decay")

CHOICES = {"trajectory_on_error": ("rebuild", "raise"),
           "knowledge_transfer": ("adaptive", "overall", "rank"),
           "ablation_transfer_loss": ("overall", "rank")}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_numbers(config, where=""):
    """Refuse a number outside its domain (``where`` prefixes the message, e.g. a teacher)."""
    def bad(key, value, wanted):
        raise HetCompError(f"{where}{key} must be {wanted}, got {value!r}: set "
                           f"{'it in teacher_config' if where else f'--{key}=<value>'}")

    for key in POSITIVE_INTS:
        value = config[key]
        if value is not None and not (_is_int(value) and value >= 1):
            bad(key, value, "a positive integer")
    for key in POSITIVE_NUMBERS:
        value = config[key]
        if value is not None and not (_is_number(value) and value > 0):
            bad(key, value, "a number > 0")
    for key in NON_NEGATIVE:
        value = config[key]
        if value is not None and not (_is_number(value) and value >= 0):
            bad(key, value, "a number >= 0")
    for key in SHARES:
        value = config[key]
        if value is not None and not (_is_number(value) and 0 < value <= 1):
            bad(key, value, "a number in (0, 1]")
    for key, allowed in CHOICES.items():
        if config[key] is not None and config[key] not in allowed:
            raise HetCompError(f"{where}{key} must be one of {', '.join(allowed)}, got "
                               f"{config[key]!r}")
    check_fractions(config, where)
    check_valid_metric(config, where)


def check_valid_metric(config, where=""):
    """``valid_metric`` must be one of the results ``metrics`` x ``topk`` computes: RecBole
    looks it up after the first validation and stops on a KeyError (after minutes of a
    teacher's training, in a pipeline run)."""
    from recbole_hetcomp.report import metric_columns

    metric, metrics, topk = config["valid_metric"], config["metrics"], config["topk"]
    if not isinstance(metric, str) or metrics is None or topk is None:
        return
    computed = metric_columns(metrics, topk)
    if metric.lower() not in computed:
        raise HetCompError(
            f"{where}valid_metric {metric} is not among the metrics computed (metrics x topk: "
            f"{', '.join(computed)}): set --valid_metric to one of them, or add its metric to "
            "metrics and its cut-off to topk")


def check_fractions(config, where=""):
    """``trajectory_fractions``: C - 1 ascending numbers in (0, 1)."""
    snapshots, fractions = config["trajectory_snapshots"], config["trajectory_fractions"]
    if snapshots is None or fractions is None:
        return
    fractions = list(fractions) if isinstance(fractions, (list, tuple)) else [fractions]
    if (len(fractions) != snapshots - 1 or fractions != sorted(fractions)
            or not all(_is_number(f) and 0 < f < 1 for f in fractions)):
        raise HetCompError(f"{where}trajectory_fractions {fractions} must be "
                           f"{snapshots - 1} ascending numbers in (0, 1) (trajectory_snapshots "
                           "- 1), e.g. [0.5, 0.7, 0.85] for 4 snapshots")


def check_seeds(seeds):
    """``seeds``: ~ or a list of distinct integers. ``--seeds=3`` is refused, not guessed at."""
    if seeds is None:
        return
    example = "--seeds=[2020,2021,2022]"
    if not isinstance(seeds, (list, tuple)):
        raise HetCompError(f"seeds must be a list of distinct integers, e.g. {example} for "
                           f"three seeds; got {seeds!r}")
    if not seeds or not all(_is_int(s) for s in seeds) or len(set(seeds)) != len(seeds):
        raise HetCompError(f"seeds must be a non-empty list of distinct integers, e.g. "
                           f"{example}; got {list(seeds)!r}")


# --- paths and names ------------------------------------------------------------------------
def check_directory_key(config, key):
    """A directory key must name a directory or nothing yet: not a file, not a dangling link."""
    path = config[key]
    if path is None:
        return
    if not isinstance(path, str) or not path.strip():
        raise HetCompError(f"{key} must be a directory path, got {path!r}")
    if os.path.islink(path) and not os.path.exists(path):
        raise HetCompError(f"{key} '{path}' is a link to nothing ({os.readlink(path)}): "
                           f"remove the link or set --{key} to a directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise HetCompError(f"{key} '{path}' is a file, not a directory: set --{key} to a "
                           "directory")


def writable_dir_problem(path):
    """Why files cannot be written in directory ``path`` (created if missing), or None.

    A probe, not a guess from permission bits (root ignores them; a read-only mount does not):
    a temporary file is written where the directory is, or, when it does not exist yet, a
    temporary directory with a file in it is made in its nearest existing parent, so a refused
    run leaves no empty directory behind. Everything the probe makes is removed.
    """
    path = os.path.abspath(path)
    parent = path
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is a file, not a directory"
    made = None
    try:
        folder = parent
        if parent != path:
            made = folder = tempfile.mkdtemp(prefix=".hetcomp-probe-", dir=parent)
        fd, tmp = tempfile.mkstemp(prefix=".hetcomp-probe-", dir=folder)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        return (exc.strerror or str(exc)) + ("" if parent == path else f" in {parent}")
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return None


def check_writable_directory_key(config, key):
    """A directory the run will write to must be writable now, not after hours of training."""
    check_directory_key(config, key)
    problem = writable_dir_problem(config[key]) if config[key] is not None else None
    if problem:
        raise HetCompError(f"{key} '{config[key]}' cannot be written ({problem}): set --{key} "
                           "to a directory you can write")


LOG_STATES = ("INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL")


def check_state(config):
    """``state`` is RecBole's log level, read case-insensitively; RecBole logs anything else at
    INFO without a word, and a non-string (``--state=1``) ends in a traceback."""
    state = config["state"]
    if state is not None and not (isinstance(state, str) and state.upper() in LOG_STATES):
        raise HetCompError(f"state must be one of {', '.join(LOG_STATES)} (RecBole's log "
                           f"levels), got {state!r}")


def check_log_directory(config):
    """RecBole's logger writes ``./log/<model>/`` of the current directory (not configurable)."""
    folder = os.path.join("log", config["model"])
    problem = writable_dir_problem(folder)
    if problem:
        raise HetCompError(f"the run's log folder {os.path.abspath(folder)} cannot be written "
                           f"({problem}): run from a directory you can write to")


def check_output_dirs(config):
    """The run's directories, before anything trains: ``checkpoint_dir`` writable (model
    packages, the pipeline's run state; RecBole's trainer creates it); ``trajectory_dir`` a
    directory here, and writable once the split shows a trajectory to store (``check_stores``);
    ``check_log_directory`` runs before the log is opened."""
    check_writable_directory_key(config, "checkpoint_dir")
    check_directory_key(config, "trajectory_dir")


def check_stores(config, split, recorded):
    """Each trajectory the run will record, if its store does not hold it yet, needs a
    writable ``trajectory_dir``. A store holding every trajectory the run needs is only read,
    so a read-only one (shared by a team) serves."""
    from recbole_hetcomp.teachers import store_path

    for name, tconfig in recorded:
        store, path = store_path(tconfig, split)
        if store.exists(path):
            continue
        folder = tconfig["trajectory_dir"]
        problem = writable_dir_problem(folder)
        if not problem:
            continue
        if config["model"] == STUDENT and folder != config["trajectory_dir"]:
            raise HetCompError(f"teacher {name}: trajectory_dir '{folder}' cannot be written "
                               f"({problem}) and {name}'s trajectory is not stored there yet: "
                               "set it in teacher_config")
        raise HetCompError(f"trajectory_dir '{folder}' cannot be written ({problem}) and "
                           f"{name}'s trajectory is not stored there yet: set --trajectory_dir "
                           "to a directory you can write")


def check_dataset_name(name):
    """A dataset is named, never given as a path (the name is joined into several paths)."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or os.sep in name:
        raise HetCompError(f"dataset must be a name such as ml-100k, not a path ({name!r}): "
                           "put <name>/<name>.inter under a folder and pass "
                           "--data_path=<folder> --dataset=<name>")


def check_model_list(config):
    """Teachers and the baseline: known general models, no duplicates, not the student."""
    teachers = config["teachers"]
    if not isinstance(teachers, (list, tuple)) or not teachers:
        raise HetCompError("teachers must be a non-empty list of models, e.g. "
                           "--teachers=[BPR,CML,MultiVAE]")
    seen = set()
    for name in teachers:
        if not isinstance(name, str):
            raise HetCompError(f"teachers must be model names, got {name!r} in {teachers}")
        if name == STUDENT:
            raise HetCompError(f"{STUDENT} cannot be its own teacher: remove it from teachers")
        if name in seen:
            raise HetCompError(f"teacher {name} is listed twice in {list(teachers)}: list each "
                               "teacher once")
        seen.add(name)
        try:
            get_model(name)
        except HetCompError as exc:
            raise HetCompError(f"teachers: {exc}") from None
    baseline = config["baseline"]
    if baseline is not None:
        if not isinstance(baseline, str) or baseline == STUDENT:
            raise HetCompError(f"baseline must be a model name such as BPR (or ~ for none), "
                               f"got {baseline!r}")
        try:
            get_model(baseline)
        except HetCompError as exc:
            raise HetCompError(f"baseline: {exc}") from None
    baseline_rates(config)


def baseline_rates(config):
    """The learning rates the baseline is trained at (default: the student's)."""
    rates = config["baseline_learning_rates"]
    if rates is None:
        return [config["learning_rate"]]
    rates = list(rates) if isinstance(rates, (list, tuple)) else [rates]
    if not rates or not all(_is_number(r) and r > 0 for r in rates):
        raise HetCompError(f"baseline_learning_rates must be positive numbers, e.g. "
                           f"[0.001, 0.01]; got {rates}")
    return rates


# --- unknown keys ---------------------------------------------------------------------------
#: Keys RecBole reads that no default yaml lists.
_EXTRA_KNOWN = {"model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE",
                "eval_type", "device", "local_rank", "single_spec", "train_neg_sample_args",
                "valid_neg_sample_args", "test_neg_sample_args", "eval_neg_sample_args"}


def known_keys(config):
    """Every key a default of RecBole or this plugin defines for the run's model and data."""
    from recbole_hetcomp.teachers import model_keys

    keys = set(config.internal_config_dict) | _EXTRA_KNOWN
    for group in config.parameters.values():
        keys.update(group)
    for name in plugin_models():
        keys.update(model_keys(name))
    return keys


def unknown_keys(config, keys=None):
    """[(key, closest known key or None)] for user keys that no default defines."""
    known = known_keys(config)
    given = config.external_config_dict if keys is None else keys
    out = []
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            out.append((key, close[0] if close else None))
    return out


#: Keys that decide what runs, on which data and how often: a misspelt one is ignored and a
#: different run starts (``--modle=BPR`` would train the default 12-minute pipeline;
#: ``--epoch=2``, a two-epoch try, the full budget), so an unknown key whose closest known
#: name is one of these is refused, not warned about.
DECISIVE_KEYS = ("model", "dataset", "config_files", "data_path", "teachers", "seeds", "epochs")


def check_unknown_keys(config, logger, keys=None, where=""):
    """Refuse a misspelt decisive key (``DECISIVE_KEYS``, and RecBole's ``config_file``, which
    nothing reads); warn about other unknown keys with the closest known name."""
    given = config.external_config_dict if keys is None else keys
    if "config_file" in given:
        raise HetCompError(f"{where}config_file is not read by RecBole or recbole-hetcomp: "
                           "pass --config_files=\"a.yaml b.yaml\"")
    for key, close in unknown_keys(config, keys):
        # an abbreviation (--data=x) reads as nothing, so it would start a run on the default
        abbreviated = [name for name in DECISIVE_KEYS if name.startswith(key)]
        if close not in DECISIVE_KEYS and abbreviated:
            close = abbreviated[0]
        hint = f"did you mean '{close}'?" if close else "check its spelling"
        if close in DECISIVE_KEYS:
            raise HetCompError(f"{where}'{key}' is no key of RecBole or recbole-hetcomp: {hint} "
                               f"Misspelt, it would be ignored and a run without it started: "
                               f"fix the spelling")
        logger.warning(f"{where}'{key}' is no key of RecBole, recbole-hetcomp or "
                       f"{config['model']}: no model reads it ({hint})")


def warn_bundled_dataset_path(config, logger):
    """RecBole always reads ml-100k from its own bundled copy, whatever ``data_path`` says."""
    if config["dataset"] == "ml-100k" and "data_path" in config.external_config_dict:
        logger.warning(f"data_path {config.external_config_dict['data_path']} is ignored for "
                       "ml-100k: RecBole always reads its bundled copy; to use your own, give "
                       "it another name (<data_path>/my-ml-100k/my-ml-100k.inter, "
                       "--dataset=my-ml-100k)")


#: Keys of overall.yaml that only a pipeline (HetCompStudent) run reads.
PIPELINE_KEYS = ("teachers", "teacher_config", "teacher_workers", "seed_workers",
                 "teacher_gpus", "seed_gpus", "export_teachers")


def warn_pipeline_keys(config, logger):
    """A single model ignores the pipeline's keys (``--seeds=[1,2]`` trains BPR once, with
    ``seed``): say so, since they are known keys and no other warning names them."""
    from recbole_hetcomp.teachers import model_keys

    pipeline = set(PIPELINE_KEYS) | (set(model_keys(STUDENT)) - set(config.internal_config_dict))
    ignored = sorted(k for k in config.external_config_dict if k in pipeline)
    if ignored:
        logger.warning(f"{', '.join(ignored)}: read by a {STUDENT} run (the pipeline) only; "
                       f"{config['model']} ignores {'them' if len(ignored) > 1 else 'it'}")


# --- the whole run --------------------------------------------------------------------------
def check_run(config, logger):
    """Check the run's configuration (and, for the pipeline, each teacher's and the
    baseline's) before anything is loaded or trained. Returns the teachers' Configs."""
    check_dataset_name(config["dataset"])
    check_output_dirs(config)
    check_unknown_keys(config, logger)  # first: a misspelt key may explain the error below
    check_numbers(config)
    warn_bundled_dataset_path(config, logger)
    if config["model"] != STUDENT:
        warn_pipeline_keys(config, logger)
        return {}
    from recbole_hetcomp.ensemble import check_weights_setting
    from recbole_hetcomp.pipeline import baseline_config
    from recbole_hetcomp.teachers import teacher_config
    from recbole_hetcomp.variants import check_variants

    check_model_list(config)
    check_full_ranking(config)
    check_seeds(config["seeds"])
    from recbole_hetcomp.parallel import check_parallel

    check_parallel(config)
    rank_top = config["rank_top"]
    if not (isinstance(rank_top, (list, tuple)) and len(rank_top) == 2
            and all(_is_int(t) and t >= 1 for t in rank_top)):
        # a head longer than hetcomp_k is the whole target list (prefixes are clipped)
        raise HetCompError(f"rank_top must be two positive prefix lengths of the ensemble "
                           f"target, e.g. [50, 10]; got {rank_top!r}")
    tconfigs = {}
    for name in config["teachers"]:
        tconfig = teacher_config(config, name)
        where = f"teacher {name}: "
        check_numbers(tconfig, where)
        check_directory_key(tconfig, "trajectory_dir")  # written only if needed: check_stores
        own = {**(config["teacher_config"].get("default") or {}),
               **(config["teacher_config"].get(name) or {})}
        check_unknown_keys(tconfig, logger, own, where=f"teacher_config {name}: ")
        tconfigs[name] = tconfig
    shapes = {n: (c["trajectory_snapshots"], c["trajectory_topk"]) for n, c in tconfigs.items()}
    if len(set(shapes.values())) > 1:
        raise HetCompError(f"teachers must record the same trajectory_snapshots and "
                           f"trajectory_topk, got {shapes}: set them for all teachers "
                           "(teacher_config default) or for none")
    check_weights_setting(config, len(tconfigs))
    check_variants(config)
    if config["baseline"]:
        for rate in baseline_rates(config):
            check_numbers(baseline_config(config, config["seed"], rate),
                          f"baseline {config['baseline']}: ")
    return tconfigs


def check_full_ranking(config):
    """A pipeline run ranks the whole catalogue (the paper's protocol): the teachers record
    full-sort top-M lists and the ensemble rows score only the listed items, so under a sampled
    evaluation (uni100, pop100...) the unlisted candidates would all tie and inflate them."""
    mode = (config["eval_args"] or {}).get("mode", "full")
    phases = mode if isinstance(mode, dict) else {"valid": mode, "test": mode}
    if any(str(m).lower() != "full" for m in phases.values()):
        raise HetCompError(f"eval_args mode {mode!r}: a HetCompStudent run evaluates by full "
                           "ranking (the ensemble and the recorded lists rank every item); set "
                           "mode: full (a single model, --model=BPR..., accepts sampled modes)")


def check_split(config, split, tconfigs):
    """What needs the catalogue: list lengths against the number of items."""
    n_items = split.n_items - 1  # RecBole's id 0 is padding
    # A single model records top-M lists only with record_trajectory (teachers always do).
    recorded = tconfigs.items() or ([(config["model"], config)] if config["record_trajectory"]
                                    else [])
    for name, tconfig in recorded:
        m = tconfig["trajectory_topk"]
        if m is not None and m > n_items:
            raise HetCompError(f"trajectory_topk={m} is larger than the catalogue ({n_items} "
                               f"items): lower trajectory_topk")
    check_stores(config, split, recorded)
    if config["model"] != STUDENT:
        return
    k, l = config["hetcomp_k"], config["hetcomp_l"]
    m = next(iter(tconfigs.values()))["trajectory_topk"]
    if k > n_items:
        raise HetCompError(f"hetcomp_k={k} is larger than the catalogue ({n_items} items): "
                           "lower hetcomp_k")
    if k > len(tconfigs) * m:
        raise HetCompError(f"hetcomp_k={k} cannot be met by {len(tconfigs)} teachers' top-{m} "
                           "lists: lower hetcomp_k or raise trajectory_topk")
    if l > m:
        raise HetCompError(f"hetcomp_l={l} is longer than the recorded observed lists "
                           f"(trajectory_topk={m}): lower hetcomp_l")
    from recbole_hetcomp.kd import check_distillation_baselines

    check_distillation_baselines(config, n_items, len(tconfigs), m)
    if config["discrepancy_n"] > m:
        # the teacher lists it compares against hold M items: D could never reach 0
        raise HetCompError(f"discrepancy_n={config['discrepancy_n']} is longer than the "
                           f"recorded teacher lists (trajectory_topk={m}): lower discrepancy_n")
