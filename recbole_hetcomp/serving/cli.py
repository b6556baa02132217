"""``hetcomp-recommend`` and ``hetcomp-serve``: a model package from the command line.

    hetcomp-recommend PACKAGE --user 196 [--user 42 ...] [--users-file F] [--k 10]
                      [--format json|tsv] [--include-known]
                      [--unknown-users fallback|skip|error] [--device cpu] [--no-index]
    hetcomp-recommend PACKAGE --info
    hetcomp-serve PACKAGE [--host 127.0.0.1] [--port 8080] [--device cpu] [--no-index]

Exit status 0; 2 with one line on standard error for a bad package or argument; 1 when the
output cannot be written (a full disk); 130 on Ctrl-C.
"""

import argparse
import json
import os
import sys

from recbole_hetcomp.errors import HetCompError

USAGE_ERROR, WRITE_ERROR, INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), like every other error here."""

    def error(self, message):
        raise HetCompError(f"{message} (see {self.prog} --help)")


class _OutputError(Exception):
    """Standard output could not be written (not a user mistake: exit 1)."""


def recommend_parser():
    parser = _Parser(prog="hetcomp-recommend",
                     description="Top-k items for users of a recbole-hetcomp model package.")
    parser.add_argument("package", help="package directory (the run's report names it)")
    parser.add_argument("--user", action="append", default=[], metavar="TOKEN",
                        help="a user token of the dataset (repeatable)")
    parser.add_argument("--users-file", metavar="F",
                        help="UTF-8 file with one user token per line ('-': standard input); "
                             "only the line ending is stripped (tokens may hold spaces), "
                             "empty lines are skipped")
    parser.add_argument("--k", type=int, default=10, help="items per user (default: 10)")
    parser.add_argument("--format", choices=("json", "tsv"), default="json",
                        help="json: one JSON object per line; tsv: the user, then its item "
                             "tokens, tab-separated (default: json)")
    parser.add_argument("--include-known", action="store_true",
                        help="do not drop the items a user already interacted with")
    parser.add_argument("--unknown-users", choices=("fallback", "skip", "error"),
                        default="fallback",
                        help="users not in the package: fallback: the most popular items "
                             "(JSON \"fallback\": true; TSV: an empty field after the user); "
                             "skip: no line; error: exit 2 before any output "
                             "(default: fallback)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--no-index", action="store_true",
                        help="rank by brute force, ignoring the package's faiss index (for "
                             "where faiss is not installed)")
    parser.add_argument("--info", action="store_true", help="print the model card and exit")
    return parser


def recommend_main(argv=None):
    try:
        return _recommend(recommend_parser().parse_args(argv))
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:  # `hetcomp-recommend ... | head`
        _drop_stdout()
        return 0
    except _OutputError as exc:
        _drop_stdout()
        print(f"error: {exc}", file=sys.stderr)
        return WRITE_ERROR
    except OSError as exc:  # a package file we may not read
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        _drop_stdout()
        return INTERRUPTED


def _recommend(args):
    from recbole_hetcomp.serving.package import read_card
    from recbole_hetcomp.serving.recommender import Recommender, serving_device

    if args.info:
        _write(json.dumps(read_card(args.package), indent=1) + "\n", flush=True)
        return 0
    if "" in args.user:
        raise HetCompError("--user needs a user token, got an empty one")
    users = list(args.user)
    if args.users_file:
        users += _read_users(args.users_file)
    if not users:
        raise HetCompError("no users given: pass --user TOKEN (repeatable) or --users-file F")
    if args.k < 1:
        raise HetCompError(f"--k must be a positive integer, got {args.k}")
    serving_device(args.device, flag="--device ")
    rec = Recommender.load(args.package, device=args.device, use_index=not args.no_index)
    known = rec.user_ids(users) >= 0
    unknown = [u for u, ok in zip(users, known) if not ok]
    note = unknown and _unknown_note(unknown, len(users))
    if note and args.unknown_users == "error":
        raise HetCompError(f"{note}: pass only users of the package, or --unknown-users "
                           "fallback (the most popular items) or skip")
    if args.unknown_users == "skip":
        users = [u for u, ok in zip(users, known) if ok]
    for start in range(0, len(users), 1024):
        for result in rec.recommend(users[start:start + 1024], k=args.k,
                                    exclude_known=not args.include_known):
            if args.format == "json":
                _write(json.dumps(result.as_dict()) + "\n")
            else:
                # An unknown user's line gets an empty second field, so that a consumer can
                # tell popular items from personal ones while every other line keeps its form.
                marker = [""] if result.fallback else []
                _write("\t".join([result.user] + marker + [t for t, _ in result]) + "\n")
    _write("", flush=True)
    if note:
        what = ("skipped (--unknown-users skip)" if args.unknown_users == "skip"
                else "they got the most popular items (fallback)")
        print(f"note: {note}: {what}", file=sys.stderr)
    return 0


def _unknown_note(unknown, total):
    # repr shows a stray space or invisible character, the usual reason a token is unknown.
    shown = ", ".join(repr(u) for u in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
    return f"{len(unknown)} of {total} users are not in the package's catalogue ({shown})"


def _write(text, flush=False):
    """Standard output, a failed write (full disk) as ``_OutputError``; a closed pipe
    (``| head``) stays a BrokenPipeError, which is not an error."""
    try:
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _OutputError(f"cannot write the output: {exc.strerror}") from None


def _drop_stdout():
    # What could not be written is still buffered; Python's flush at exit would fail on it
    # again and print "Exception ignored ...". Point standard output at /dev/null instead.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _read_users(path):
    """The tokens of ``--users-file``: one per line; only the line ending (``\\n`` or
    ``\\r\\n``) is stripped, since RecBole tokens may begin or end with spaces; empty lines
    are skipped and a UTF-8 byte-order mark (Windows editors write one) is dropped."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise HetCompError(f"cannot read --users-file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1  # offsets count from after a BOM
        raise HetCompError(f"--users-file {path} is not UTF-8 text (line {line}): save it as "
                           "UTF-8, one user token per line") from None
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line]


def _port(text):
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535 (0: any free port), "
                                         f"got {text!r}")
    return port


def serve_main(argv=None):
    parser = _Parser(prog="hetcomp-serve",
                     description="Serve a recbole-hetcomp model package over HTTP (JSON).")
    parser.add_argument("package")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8080,
                        help="port, 0 to 65535 (0: any free port; default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument("--no-index", action="store_true",
                        help="rank by brute force, ignoring the package's faiss index")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    try:
        args = parser.parse_args(argv)
        import logging

        import torch

        from recbole_hetcomp.serving.http import make_server
        from recbole_hetcomp.serving.recommender import Recommender, serving_device

        serving_device(args.device, flag="--device ")
        # One thread per request already; torch's own threads would spin against them.
        torch.set_num_threads(1)
        rec = Recommender.load(args.package, device=args.device, use_index=not args.no_index)
        try:
            server = make_server(rec, args.host, args.port, quiet=not args.verbose)
        except OSError as exc:
            raise HetCompError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") \
                from None
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(f"serving {rec.card.get('model')} ({rec.card.get('dataset')}: {rec.n_users:,} users, "
          f"{rec.n_items:,} items) on http://{args.host}:{server.server_address[1]}/ "
          "(GET /recommend?user=TOKEN&k=10, /similar?item=TOKEN, /healthz)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how the server is stopped
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(recommend_main())
