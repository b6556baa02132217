"""``hetcomp-recommend`` and ``hetcomp-serve``: a model package from the command line.

    hetcomp-recommend PACKAGE --user 196 [--user 42 ...] [--users-file F] [--k 10]
                      [--format json|tsv] [--include-known]
    hetcomp-recommend PACKAGE --info
    hetcomp-serve PACKAGE [--host 127.0.0.1] [--port 8080]

Exit status 0, or 2 with one line on standard error for a bad package or argument.
"""

import argparse
import json
import sys

from recbole_hetcomp.errors import HetCompError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), like every other error here."""

    def error(self, message):
        raise HetCompError(f"{message} (see {self.prog} --help)")


def recommend_parser():
    parser = _Parser(prog="hetcomp-recommend",
                     description="Top-k items for users of a recbole-hetcomp model package.")
    parser.add_argument("package", help="package directory (the run's report names it)")
    parser.add_argument("--user", action="append", default=[], metavar="TOKEN",
                        help="a user token of the dataset (repeatable)")
    parser.add_argument("--users-file", metavar="F",
                        help="file with one user token per line ('-': standard input)")
    parser.add_argument("--k", type=int, default=10, help="items per user (default: 10)")
    parser.add_argument("--format", choices=("json", "tsv"), default="json",
                        help="json: one JSON object per line; tsv: user, item tokens "
                             "(default: json)")
    parser.add_argument("--include-known", action="store_true",
                        help="do not drop the items a user already interacted with")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--info", action="store_true", help="print the model card and exit")
    return parser


def recommend_main(argv=None):
    try:
        return _recommend(recommend_parser().parse_args(argv))
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hetcomp-recommend ... | head`
        return 0


def _recommend(args):
    from recbole_hetcomp.serving.package import read_card
    from recbole_hetcomp.serving.recommender import Recommender

    if args.info:
        print(json.dumps(read_card(args.package), indent=1))
        return 0
    users = list(args.user)
    if args.users_file:
        users += _read_users(args.users_file)
    if not users:
        raise HetCompError("no users given: pass --user TOKEN (repeatable) or --users-file F")
    if args.k < 1:
        raise HetCompError(f"--k must be a positive integer, got {args.k}")
    rec = Recommender.load(args.package, device=args.device)
    out = sys.stdout
    for start in range(0, len(users), 1024):
        for result in rec.recommend(users[start:start + 1024], k=args.k,
                                    exclude_known=not args.include_known):
            if args.format == "json":
                out.write(json.dumps(result.as_dict()) + "\n")
            else:
                out.write("\t".join([result.user] + [t for t, _ in result]) + "\n")
    out.flush()
    return 0


def _read_users(path):
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise HetCompError(f"cannot read --users-file {path}: {exc.strerror}") from None
    with stream:
        return [line.strip() for line in stream if line.strip()]


def serve_main(argv=None):
    parser = _Parser(prog="hetcomp-serve",
                     description="Serve a recbole-hetcomp model package over HTTP (JSON).")
    parser.add_argument("package")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    try:
        args = parser.parse_args(argv)
        import logging

        import torch

        from recbole_hetcomp.serving.http import make_server
        from recbole_hetcomp.serving.recommender import Recommender

        # One thread per request already; torch's own threads would spin against them.
        torch.set_num_threads(1)
        rec = Recommender.load(args.package, device=args.device)
        try:
            server = make_server(rec, args.host, args.port, quiet=not args.verbose)
        except OSError as exc:
            raise HetCompError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") \
                from None
    except HetCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(f"serving {rec.card.get('model')} ({rec.card.get('dataset')}: {rec.n_users:,} users, "
          f"{rec.n_items:,} items) on http://{args.host}:{server.server_address[1]}/ "
          "(GET /recommend?user=TOKEN&k=10, /similar?item=TOKEN, /healthz)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(recommend_main())
