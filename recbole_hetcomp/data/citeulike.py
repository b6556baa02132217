"""Convert citeulike-t's ``users.dat`` into a RecBole atomic ``.inter`` file.

Input format (the file published with Wang, Chen and Li, IJCAI 2013): line ``k`` (0-based) is user
``k`` and reads ``<count> <item> <item> ...``, items being non-negative integer ids.

Output: ``<output_dir>/<name>/<name>.inter`` with the header ``user_id:token<TAB>item_id:token`` and
one row per (user, item) pair, in file order. User tokens are the 0-based line numbers and item
tokens the item ids of the input, so every row can be traced back to ``users.dat``. No rating
(every pair is an implicit positive) and no timestamp (citeulike-t has none; the paper's random
per-user split does not need one) are written.

Preprocessing. The paper keeps users with at least 5 items (5,219 users, 25,181 items, 125,580
interactions). The converter writes *all* interactions by default and leaves that filter to RecBole
(``user_inter_num_interval: "[5,inf)"`` in ``properties/dataset/citeulike.yaml``): RecBole drops the
users with fewer than 5 items in one pass and builds its item vocabulary from the remaining
interactions, which gives exactly the paper's numbers on the published file (checked by loading it
with ``recbole.data.create_dataset``; RecBole prints 5,220 users and 25,182 items because its counts
include the padding id 0). ``--min-user-items 5`` applies the same filter in the converter instead,
for tools that read the ``.inter`` file without RecBole; the numbers are the same either way.

Line endings may be ``\n``, ``\r\n`` or old Mac OS ``\r`` (a file with no ``\n`` at all), and a
leading UTF-8 byte-order mark is dropped. Validation is strict; every problem raises
:class:`ConversionError` with a one-line message that names the line:

* empty input (no non-blank line), a blank line before the last non-blank one (it would shift
  every later user id);
* a ``\r`` inside a line of a file that also has ``\n`` line endings (mixed endings; ``str.split``
  would read it as a space and merge two users' lines);
* a token that is not a non-negative decimal integer;
* a count that differs from the number of items listed on its line;
* the same item twice on one line. This is an error by default (the published file has none, so a
  duplicate means a damaged or different file); ``drop_duplicates=True`` (``--drop-duplicates``)
  keeps the first occurrence instead, and the summary says how many were dropped;
* no interaction left to write (e.g. every user is below ``--min-user-items``).

The whole input is parsed and validated before anything is written, and the ``.inter`` file is
written to a temporary file in the target folder and then renamed over the target
(``os.replace``), so an error never leaves a missing, partial or half-written ``.inter`` behind.
An existing ``.inter`` file is replaced (a rerun is expected), and the CLI says so on stderr.

CLI::

    python -m recbole_hetcomp.data.citeulike --input PATH/users.dat --output-dir dataset \\
        [--name citeulike] [--min-user-items N] [--drop-duplicates]

Errors are printed as one ``error: ...`` line on stderr with exit status 2.
"""

import argparse
import os
import re
import sys
from dataclasses import dataclass

from recbole_hetcomp.atomic import write_text_atomically

from recbole_hetcomp.errors import HetCompError as _BaseError

__all__ = [
    "ConversionError",
    "ConversionSummary",
    "INTER_HEADER",
    "convert_citeulike",
    "main",
    "parse_users_dat",
]

INTER_HEADER = "user_id:token\titem_id:token"
DEFAULT_NAME = "citeulike"

_INT_RE = re.compile(r"[0-9]+")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


class ConversionError(_BaseError, ValueError):
    """The input cannot be converted (or the output cannot be written); one-line message."""


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_citeulike` wrote."""

    path: str  # the .inter file
    users: int  # distinct users in the .inter file
    items: int  # distinct items in the .inter file
    interactions: int  # rows of the .inter file (header excluded)
    input_users: int  # user lines read from users.dat
    input_interactions: int  # (user, item) pairs read, before any filtering
    dropped_users: int  # users with at least one item removed by min_user_items
    dropped_duplicates: int  # repeated items removed (only with drop_duplicates=True)
    replaced: bool = False  # an existing .inter file was replaced

    def __str__(self):
        text = (
            f"wrote {self.path}: {self.users} users, {self.items} items, "
            f"{self.interactions} interactions"
        )
        extra = []
        if self.dropped_users:
            extra.append(f"{self.dropped_users} users below the minimum dropped")
        if self.dropped_duplicates:
            extra.append(f"{self.dropped_duplicates} duplicate items dropped")
        if extra:
            text += " (" + "; ".join(extra) + ")"
        return text


def _read_text(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConversionError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise ConversionError(f"input is a directory, not a users.dat file: {path}") from None
    except OSError as e:
        raise ConversionError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversionError(
            f"{path} is not a text file (byte {e.start} is not UTF-8)"
        ) from None


def parse_users_dat(text, source="users.dat", drop_duplicates=False):
    """Parse the content of a ``users.dat`` file.

    Returns ``(users, dropped_duplicates)`` where ``users[k]`` is the list of item ids of user
    ``k`` (line ``k + 1`` of the file), in file order. Raises :class:`ConversionError`.
    """
    if text.startswith("\ufeff"):  # a byte-order mark some editors write: not part of the count
        text = text[1:]
    text = text.replace("\r\n", "\n")
    if "\r" in text and "\n" not in text:  # old Mac OS line endings: one user per '\r' line
        text = text.replace("\r", "\n")
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # a final newline or trailing blank lines
        lines.pop()
    if not lines:
        raise ConversionError(f"{source} is empty: expected one '<count> <item> ...' line per user")

    users = []
    dropped = 0
    for k, line in enumerate(lines):
        where = f"{source} line {k + 1} (user {k})"
        if "\r" in line.rstrip("\r\t "):
            # str.split() takes a '\r' for a space: two users' lines would silently merge
            raise ConversionError(
                f"{where} holds a carriage return (\\r) inside the line: the file mixes "
                "'\\r' and '\\n' line endings; convert it to '\\n' line endings"
            )
        tokens = line.split()
        if not tokens:
            raise ConversionError(
                f"{where} is blank: every user needs a '<count> <item> ...' line "
                "(a blank line would shift every later user id)"
            )
        for pos, token in enumerate(tokens):
            if not _INT_RE.fullmatch(token):
                what = "count" if pos == 0 else f"item {pos}"
                raise ConversionError(
                    f"{where}: {what} {token[:40]!r} is not a non-negative integer"
                )
        count = int(tokens[0])
        items = [int(t) for t in tokens[1:]]
        if count != len(items):
            raise ConversionError(
                f"{where}: count says {count} items but the line lists {len(items)}"
            )
        if len(set(items)) != len(items):
            seen = set()
            unique = []
            for item in items:
                if item in seen:
                    if not drop_duplicates:
                        raise ConversionError(
                            f"{where}: item {item} is listed twice "
                            "(use --drop-duplicates to keep the first occurrence)"
                        )
                    dropped += 1
                    continue
                seen.add(item)
                unique.append(item)
            items = unique
        users.append(items)
    return users, dropped


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConversionError(
            f"invalid dataset name {name!r}: use letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-'"
        )


def _check_min_user_items(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConversionError(f"min_user_items must be a non-negative integer, got {value!r}")


def convert_citeulike(
    input_path, output_dir, name=DEFAULT_NAME, min_user_items=0, drop_duplicates=False
):
    """Convert ``input_path`` (users.dat) to ``<output_dir>/<name>/<name>.inter``.

    ``min_user_items``: keep only users with at least that many (distinct) items; 0 keeps all
    (the default: the paper's ``>= 5`` filter is then applied by RecBole through
    ``user_inter_num_interval``). Returns a :class:`ConversionSummary`; raises
    :class:`ConversionError` and then writes nothing.
    """
    _check_name(name)
    _check_min_user_items(min_user_items)
    source = os.fspath(input_path)
    users, dropped_duplicates = parse_users_dat(
        _read_text(source), source=os.path.basename(source) or source,
        drop_duplicates=drop_duplicates,
    )

    rows = [INTER_HEADER]
    items = set()
    kept_users = 0
    dropped_users = 0
    input_interactions = 0
    for user, user_items in enumerate(users):
        input_interactions += len(user_items)
        if not user_items:
            continue
        if len(user_items) < min_user_items:
            dropped_users += 1
            continue
        kept_users += 1
        items.update(user_items)
        rows.extend(f"{user}\t{item}" for item in user_items)
    interactions = len(rows) - 1
    if interactions == 0:
        if min_user_items:
            raise ConversionError(
                f"no user of {source} has at least {min_user_items} items: nothing to write"
            )
        raise ConversionError(f"{source} lists no interaction: nothing to write")

    folder = os.path.join(os.fspath(output_dir), name)
    path = os.path.join(folder, f"{name}.inter")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise ConversionError(f"cannot write {path}: {e.strerror or e}{where}") from None
    if os.path.isdir(path):
        raise ConversionError(f"cannot write {path}: it is a directory; remove it or choose "
                              "another --name or --output-dir")
    replaced = os.path.lexists(path)
    try:
        write_text_atomically(path, "\n".join(rows) + "\n")
    except OSError as e:  # named by the target, never by the temporary file beside it
        raise ConversionError(f"cannot write {path}: {e.strerror or e}") from None

    return ConversionSummary(
        path=path,
        users=kept_users,
        items=len(items),
        interactions=interactions,
        input_users=len(users),
        input_interactions=input_interactions,
        dropped_users=dropped_users,
        dropped_duplicates=dropped_duplicates,
        replaced=replaced,
    )


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block: main() prints "error: ..." and exits 2
        raise _UsageError(f"{message} (see --help)")


def _non_negative_int(text):
    if not _INT_RE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def build_parser():
    parser = _Parser(
        prog="hetcomp-convert-citeulike",
        description=(
            "Convert citeulike-t's users.dat (line k = user k: '<count> <item> ...') into the "
            "RecBole atomic file <output-dir>/<name>/<name>.inter. All interactions are written "
            "unless --min-user-items is given; properties/dataset/citeulike.yaml applies the "
            "paper's >= 5 items per user filter in RecBole."
        ),
    )
    parser.add_argument("--input", required=True, metavar="PATH", help="the users.dat file")
    parser.add_argument(
        "--output-dir", required=True, metavar="DIR",
        help="RecBole's data_path (e.g. dataset); the file goes to DIR/NAME/NAME.inter",
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"dataset name (default: {DEFAULT_NAME})"
    )
    parser.add_argument(
        "--min-user-items", type=_non_negative_int, default=0, metavar="N",
        help="keep only users with at least N items (default 0: keep all and let RecBole filter)",
    )
    parser.add_argument(
        "--drop-duplicates", action="store_true",
        help="keep the first occurrence of an item repeated on a line instead of failing",
    )
    return parser


def main(argv=None):
    """Console entry point; returns the exit status (0, or 2 on any error)."""
    try:
        args = build_parser().parse_args(argv)
        summary = convert_citeulike(
            args.input, args.output_dir, name=args.name,
            min_user_items=args.min_user_items, drop_duplicates=args.drop_duplicates,
        )
    except (_UsageError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary.replaced:  # expected on a rerun, but never silent
        print(f"note: replaced the existing {summary.path}", file=sys.stderr)
    if summary.dropped_duplicates:
        print(
            f"warning: dropped {summary.dropped_duplicates} duplicate items", file=sys.stderr
        )
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
