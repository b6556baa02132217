"""``run_hetcomp.py`` / ``hetcomp``: argument parsing and user-facing errors."""

import argparse
import logging
import os
import sys


class UsageError(Exception):
    """A command line argparse cannot read: printed as one ``error:`` line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse without its usage block: a mistake is one line, like every other error here."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


#: What runs when neither the command line nor a config file names a model or dataset.
DEFAULTS = {"model": "HetCompStudent", "dataset": "ml-100k"}


def _prog_name():
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("hetcomp", "run_hetcomp.py") else "run_hetcomp.py"


def parse(argv):
    # allow_abbrev=False: "--data=x" must not silently mean "--dataset=x"; an unknown key
    # close to a decisive one (dataset, data_path, model...) is refused with its suggestion
    # prog: the name it was started by (run_hetcomp.py or the hetcomp console script)
    parser = OneLineParser(
        prog=_prog_name(), allow_abbrev=False,
        description="Train a recommender or distil a heterogeneous ensemble (HetComp) with "
                    "RecBole. Any other --key=value overrides a RecBole/recbole-hetcomp "
                    "config key.")
    # No argparse defaults: a model or dataset named in a config file must not be overridden
    # by a default the user never typed (model: BPR in a.yaml started the whole pipeline).
    parser.add_argument("--model", "-m", default=None,
                        help="model name: HetCompStudent (the full pipeline), a teacher such "
                             "as CML or ItemVAE, or any RecBole general model (default: the "
                             f"config files' model, else {DEFAULTS['model']})")
    parser.add_argument("--dataset", "-d", default=None,
                        help="dataset name (default: the config files' dataset, else "
                             f"{DEFAULTS['dataset']}, bundled with RecBole)")
    parser.add_argument("--config_files", type=str, default=None,
                        help="config files, separated by spaces")
    for arg in argv:
        if arg.startswith("--="):  # argparse: "ambiguous option: --=3 could match --help, ..."
            raise UsageError(f"unrecognised argument '{arg}': use --key=value")
    args, rest = parser.parse_known_args(argv)
    files = args.config_files.split() if args.config_files else None
    from_files = _config_files_settings(files)
    for key in ("model", "dataset"):
        # set by a file: left None here, so the Config takes it at the files' priority
        if getattr(args, key) is None and from_files.get(key) is None:
            setattr(args, key, DEFAULTS[key])
    args.runs = args.model or from_files.get("model")  # the model that runs, for messages
    return args, files, rest


def _config_files_settings(files):
    """What the config files set; a file that cannot be read counts as setting nothing (the
    Config names the problem)."""
    from recbole_hetcomp.config import read_config_files
    from recbole_hetcomp.errors import HetCompError

    try:
        return read_config_files(files)
    except (HetCompError, OSError):
        return {}


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 bad input, 1 a write that failed late
    (disk full), 130 interrupted)."""
    from recbole_hetcomp.errors import HetCompError, os_error_text

    try:
        args, files, rest = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from recbole_hetcomp.quick_start import run_hetcomp

    try:
        run_hetcomp(args.model, args.dataset, files, cmd_args=rest)
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The directories are probed before anything trains (checks.check_output_dirs), so
        # this is the disk filling up or a folder changed under the run: one line, the
        # traceback only in a DEBUG log. Stores are written atomically: nothing kept is lost.
        logging.getLogger().debug("write failed", exc_info=True)
        print(f"error: {os_error_text(exc)}: free space (or fix the folder) and run the same "
              "command again; finished teachers stay in the trajectory store and finished "
              "seeds in the run state", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.runs == DEFAULTS["model"]:
            print("interrupted: finished teachers stay in the trajectory store and finished "
                  "seeds in the run state; run the same command again to resume",
                  file=sys.stderr)
        else:  # one model: its training does not resume
            print(f"interrupted: {args.runs} was not finished (a single model's training does not "
                  "resume); run the same command again to train it from the start",
                  file=sys.stderr)
        return 130
    return 0
