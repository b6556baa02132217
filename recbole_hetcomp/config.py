"""Config: RecBole's layering plus this package's ``properties/``.

Priority, lowest to highest (as RecBole, with the plugin's defaults slotted in after RecBole's):
RecBole's internal yaml < ``properties/overall.yaml`` < ``properties/model/<Model>.yaml`` <
``properties/dataset/<dataset>.yaml`` < ``config_file_list`` < ``config_dict`` < ``cmd_args``.

Unlike RecBole's Config, command-line overrides come from an explicit ``cmd_args`` list, never
from ``sys.argv`` (under pytest or inside another CLI, unrelated flags would leak in).
"""

import ast
import os
import re

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils.argument_list import (
    dataset_arguments,
    evaluation_arguments,
    general_arguments,
    training_arguments,
)

from recbole_hetcomp.checks import check_dataset_name
from recbole_hetcomp.device import dense_elements, is_cuda
from recbole_hetcomp.errors import HetCompError
from recbole_hetcomp.registry import get_model

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


# --- key groups: who gets a key ------------------------------------------------------------
# A run's keys reach its models the same way whatever channel they came by (config file, config
# dict, command line): the model being run gets all of them; the other models of a pipeline run
# (teachers, the same-size baseline) inherit only the keys that describe the data, the split, the
# evaluation and the machine, and otherwise train from their own defaults (plus `teacher_config`).

#: Keys of RecBole's groups that are about one model's training, not the run: never inherited.
_MODEL_OWN = {"seed", "config_file"}

#: This package's run-wide keys: the split, the trajectory store, the loaders' worker count.
_PLUGIN_SHARED = ("split_seed", "drop_unseen_eval_items", "trajectory_dir", "trajectory_topk",
                  "trajectory_snapshots", "trajectory_fractions", "trajectory_batch_size",
                  "trajectory_on_error", "trajectory_keep_aside", "save_checkpoint",
                  "worker", "gpu_memory_budget", "vectorised_loader")

#: Keys every model of a run inherits from the run's Config.
SHARED_KEYS = tuple(dict.fromkeys(
    [k for k in general_arguments if k not in _MODEL_OWN]
    + list(evaluation_arguments) + list(dataset_arguments) + list(_PLUGIN_SHARED)))

#: Keys that shape a model's training (RecBole's training group, display-only keys aside), plus
#: the seed, the selection metric and the recording settings; with the model's own yaml keys they
#: identify a teacher's trajectory in the store.
TRAINING_KEYS = tuple(
    [k for k in training_arguments if k != "loss_decimal_place"]
    + ["seed", "valid_metric", "metrics", "topk", "trajectory_topk", "trajectory_snapshots",
       "trajectory_fractions", "vectorised_loader"])


def inherited_keys(run_config):
    """The shared keys the user set for the run (any channel), typed, to seed another model.

    Only values the user gave are passed on: defaults (RecBole's, ``properties/``) are the same
    for every model of the run, and some final values are derived (RecBole joins ``data_path``
    with the dataset name), so re-feeding them would change their meaning.
    """
    given = run_config.external_config_dict
    return {k: given[k] for k in SHARED_KEYS if k in given and given[k] is not None}


def _properties_dir():
    # Installed copies ship properties/ inside the package (setup.py's package_data); a source
    # checkout keeps it at the repository top level, next to the package.
    if os.path.isdir(PROPERTIES_DIR):
        return PROPERTIES_DIR
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")


def properties_file(*parts):
    """Path of a file under this package's ``properties/`` directory."""
    return os.path.join(_properties_dir(), *parts)


class Config(RecBoleConfig):
    """RecBole Config that also reads ``properties/`` of this package.

    Parameters
    ----------
    model : str or type, optional
        Model name (resolved plugin-first, then RecBole) or class.
    dataset : str, optional
    config_file_list : list of str, optional
    config_dict : dict, optional
    cmd_args : list of str, optional
        ``--key=value`` strings, the highest priority (parsed like RecBole's command line).
    inherited : dict, optional
        Typed values taken from another Config (see ``inherited_keys``), at the priority of
        ``config_dict`` and below it; passed on as they are, never re-parsed.

    String values of ``config_dict`` and ``cmd_args`` are read as Python literals
    (``ast.literal_eval``: numbers, lists, dicts, True/False/None; also true/false); anything
    else stays a string. Unlike RecBole, nothing is ``eval()``-ed.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None,
                 cmd_args=None, inherited=None):
        self._cmd_args = list(cmd_args or [])
        self._inherited = dict(inherited or {})
        for path in config_file_list or []:
            if os.path.isdir(path):
                raise HetCompError(f"config file '{path}' is a directory: give YAML files in "
                                   "--config_files")
            if not os.path.isfile(path):
                raise HetCompError(f"config file '{path}' does not exist; check --config_files")
        try:
            super().__init__(model, dataset, config_file_list, config_dict)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise HetCompError(f"malformed YAML in a config file{where}: "
                               f"{getattr(exc, 'problem', exc)}") from None
        except (NotImplementedError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            # RecBole's own checks of metrics, topk, eval_args, train_neg_sample_args...
            # (--topk=0, ranking and value metrics mixed): its message, without the traceback
            raise HetCompError(f"bad configuration: {exc}") from None
        self._check_value_types()
        if is_cuda(self.final_config_dict["device"]) and "eval_batch_size" not in \
                self.external_config_dict:
            # RecBole's full-sort batch is eval_batch_size // n_items users: the CPU default
            # (9 users per batch on Gowalla) would starve a GPU.
            self.final_config_dict["eval_batch_size"] = dense_elements(self, "eval")

    # --- RecBole hooks -------------------------------------------------------------------
    def _init_device(self):
        """The device RecBole would pick, except that ``use_gpu: False`` means the CPU, an
        already-set ``CUDA_VISIBLE_DEVICES`` (a scheduler's) is kept unless ``gpu_id`` is
        given, and a GPU asked for but not usable stops the run.

        RecBole sets ``CUDA_VISIBLE_DEVICES`` to ``gpu_id`` (default '0') and picks CUDA
        whenever it is available, whatever ``use_gpu`` says; with a ``gpu_id`` that does not
        exist it falls back to the CPU without a word.
        """
        final, given = self.final_config_dict, self.external_config_dict
        if "local_rank" in final:  # RecBole's distributed runs: its own rule
            return super()._init_device()
        gpu_id = final["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        final["gpu_id"] = gpu_id
        if "gpu_id" in given or "CUDA_VISIBLE_DEVICES" not in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        final["single_spec"], final["local_rank"] = True, 0
        wanted = final["use_gpu"] is not False and gpu_id != ""
        usable = wanted and torch.cuda.is_available()
        if wanted and not usable and (given.get("use_gpu") is True or "gpu_id" in given):
            raise HetCompError(
                f"use_gpu is on but no GPU is usable (CUDA_VISIBLE_DEVICES="
                f"'{os.environ.get('CUDA_VISIBLE_DEVICES', '')}', torch "
                f"{torch.__version__}, CUDA available: {torch.cuda.is_available()}): pass "
                "--use_gpu=False to run on the CPU, or a gpu_id that exists")
        final["device"] = torch.device("cuda") if usable else torch.device("cpu")

    def _build_yaml_loader(self):
        # RecBole's loader is yaml.FullLoader (it builds Python objects from tags such as
        # !!python/name:os.system): read config files with a safe one, same float resolver.
        return SafeConfigLoader

    def _convert_config_dict(self, config_dict):
        # RecBole eval()s every string here: a config value would run code. Literals only.
        for key, value in config_dict.items():
            if isinstance(value, str):
                config_dict[key] = parse_literal(value)
        return config_dict

    def _load_variable_config_dict(self, config_dict):
        converted = self._convert_config_dict(dict(config_dict or {}))
        return {**self._inherited, **converted}

    def _load_cmd_line(self):
        cmd = {}
        for arg in self._cmd_args:
            if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
                raise HetCompError(f"unrecognised argument '{arg}': use --key=value")
            key, value = arg[2:].split("=", 1)
            if key in cmd and cmd[key] != value:
                raise HetCompError(f"--{key} is given twice with different values")
            cmd[key] = value
        return self._convert_config_dict(cmd)

    def _load_config_files(self, file_list):
        return read_config_files(file_list)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise HetCompError("no model given: pass --model=<Name>")
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise HetCompError("no dataset given: pass --dataset=<name>")
        check_dataset_name(dataset)
        model_class = get_model(model) if isinstance(model, str) else model
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self.internal_config_dict.setdefault("MODEL_TYPE", model_class.type)
        for path in (properties_file("overall.yaml"),
                     properties_file("model", f"{model}.yaml"),
                     properties_file("dataset", f"{dataset}.yaml")):
            if os.path.isfile(path):
                loaded = self._update_internal_config_dict(path) or {}
                if path.endswith(os.path.join("dataset", f"{dataset}.yaml")):
                    self.parameters["Dataset"] += [
                        k for k in loaded if k not in self.parameters["Dataset"]]

    def _get_final_config_dict(self):
        # Read list and mapping strings as the defaults' types say before RecBole looks at the
        # values (it checks `metrics` and `valid_metric` right after this).
        for key, value in dict(self.external_config_dict).items():
            default = self.internal_config_dict.get(key)
            if isinstance(default, list) and isinstance(value, str):
                # A literal cannot hold bare names: --teachers=[BPR,CML]
                self.external_config_dict[key] = _parse_list(value)
            elif isinstance(default, dict) and isinstance(value, str):
                # --teacher_config="{CML: {epochs: 5}}": YAML flow style, read safely.
                self.external_config_dict[key] = _parse_mapping(value)
        return super()._get_final_config_dict()

    # --- validation ----------------------------------------------------------------------
    def _check_value_types(self):
        """Refuse a user value whose type cannot be what the default's type says."""
        for key, value in dict(self.external_config_dict).items():
            default = self.internal_config_dict.get(key)
            if default is None or value is None:
                continue
            if not _compatible(default, value):
                raise HetCompError(
                    f"malformed value for '{key}': got {value!r}, expected "
                    f"{_type_name(default)} like the default {default!r}")


class SafeConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float, as RecBole's loader does."""


SafeConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:
        [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
       |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
       |\.[0-9_]+(?:[eE][-+][0-9]+)?
       |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
       |[-+]?\.(?:inf|Inf|INF)
       |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_config_files(file_list):
    """The config files' settings, later files winning; one line (HetCompError) for a file
    that is not UTF-8 YAML holding 'key: value' lines."""
    merged = {}
    for path in file_list or []:
        try:
            with open(path, "r", encoding="utf-8") as f:
                loaded = yaml.load(f.read(), Loader=SafeConfigLoader)
        except UnicodeDecodeError:
            raise HetCompError(f"config file '{path}' is not UTF-8 text: save it as UTF-8 "
                               "YAML") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark else ""
            raise HetCompError(f"malformed YAML in config file '{path}'{where}: "
                               f"{getattr(exc, 'problem', None) or exc}") from None
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise HetCompError(f"config file '{path}' must hold 'key: value' lines")
        for value in loaded.values():
            if isinstance(value, dict):
                _refuse_keys_without_space(value, f"config file '{path}'")
        merged.update(loaded)
    return merged


def parse_literal(text):
    """A command-line or config-dict string as the value it spells, without running anything.

    Python literals (``2020``, ``1e-3``, ``[2020, 2021]``, ``{'a': 1}``, ``True``, ``None``) and
    ``true`` / ``false`` in any case and YAML's ``~`` / ``null`` are converted; anything else (``BPR``, ``[BPR,CML]``,
    ``100-1``, a path) stays the string it is.
    """
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        if text.strip() in ("~", "null"):  # YAML's null, as in the config files
            return None
        return text
    if isinstance(value, (str, int, float, bool, list, tuple, dict)) or value is None:
        return value
    return text  # complex numbers, sets, bytes: not config values


def _parse_list(text):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, list):
        value = [part.strip() for part in text.strip("[]").split(",") if part.strip()]
    return value


def _parse_mapping(text):
    try:
        value = yaml.load(text, Loader=SafeConfigLoader)
    except yaml.YAMLError:
        return text
    if not isinstance(value, dict):
        return text
    _refuse_keys_without_space(value, text)
    return value


def _refuse_keys_without_space(mapping, text):
    """YAML reads ``{epochs:2}`` as the key 'epochs:2' with no value: the setting would be
    ignored (a warning about an unknown key), and teachers trained at their full budgets."""
    for key, value in mapping.items():
        if isinstance(key, str) and ":" in key and value is None:
            name, _, rest = key.partition(":")
            raise HetCompError(f"'{key}' in {text} reads as one key without a value: YAML "
                               f"needs a space after the colon ({name}: {rest})")
        if isinstance(value, dict):
            _refuse_keys_without_space(value, text)


def _type_name(value):
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string"


def _compatible(default, value):
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple, int, float, str))  # RecBole accepts scalars
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True
