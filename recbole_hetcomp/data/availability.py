"""Make sure a dataset is on disk before anything is trained.

RecBole downloads a named dataset when its directory is missing, and offline dies with an
uncaught ``URLError`` (and, single-process, with ``torch.distributed.barrier()`` even online).
Here: a file that is there is used; a known dataset is downloaded into a temporary directory and
moved in place only when complete; anything else stops with one line saying where the
``<name>.inter`` file must go.
"""

import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request

import yaml
from recbole.utils.url import extract_zip, rename_atomic_files

from recbole_hetcomp.errors import HetCompError

DOWNLOAD_TIMEOUT_S = 20


def _known_urls():
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def required_inter_files(config):
    """The atomic interaction files RecBole will read for ``config``."""
    name, path = config["dataset"], config["data_path"]
    suffixes = config["benchmark_filename"]
    if suffixes:
        return [os.path.join(path, f"{name}.{s}.inter") for s in suffixes]
    return [os.path.join(path, f"{name}.inter")]


def ensure_dataset(config, logger=None):
    """Return when the dataset's files exist; download a known dataset; else raise HetCompError."""
    name, path = config["dataset"], config["data_path"]
    missing = [f for f in required_inter_files(config) if not os.path.isfile(f)]
    if not missing:
        for file in required_inter_files(config):
            check_inter_header(file, config)
        for suffix in ("user", "item"):  # side features, read when load_col names them
            check_no_byte_order_mark(os.path.join(path, f"{name}.{suffix}"), config)
        return
    hint = (f"put the RecBole atomic file {os.path.basename(missing[0])} in "
            f"{os.path.abspath(path)}/ (or set --data_path to the directory that holds "
            f"{name}/{name}.inter)")
    url = _known_urls().get(name)
    if url is None or config["benchmark_filename"] or os.path.isdir(path):
        raise HetCompError(f"dataset '{name}' is not on disk: {hint}")
    if logger:
        logger.info(f"dataset [{name}] is not on disk: downloading {url}")
    try:
        _download(url, name, path)
    except (urllib.error.URLError, socket.timeout, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HetCompError(f"dataset '{name}' is not on disk and downloading {url} failed "
                           f"({reason}): {hint}") from None


def _download(url, name, path):
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-download-", dir=parent)
    try:
        archive = os.path.join(tmp, url.rpartition("/")[2])
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        extract_zip(archive, tmp)
        os.unlink(archive)
        rename_atomic_files(tmp, os.path.splitext(os.path.basename(archive))[0], name)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def _refuse_byte_order_mark(path, header):
    if header.startswith("\ufeff"):
        # RecBole's pandas reader would keep the mark in the first field's name
        # ('\ufeffuser_id') and fail on a KeyError, or drop that field; utf-8-sig drops it.
        raise HetCompError(f"{path} starts with a byte-order mark (UTF-8 with BOM): save it "
                           "as UTF-8 without BOM, or pass --encoding=utf-8-sig")


def check_no_byte_order_mark(path, config):
    """Refuse an atomic file (``.user``, ``.item``) whose header starts with a BOM, if it exists."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        first = f.read(16)
    try:
        header = first.decode(config["encoding"] or "utf-8", errors="ignore")
    except LookupError:  # an unknown codec: check_inter_header has said so already
        return
    _refuse_byte_order_mark(path, header)


def check_inter_header(path, config):
    """Refuse an empty ``.inter`` file or one whose first line is not an atomic-file header
    (RecBole would fail deep inside pandas, or load no interactions without a word)."""
    sep = config["field_separator"] or "\t"
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    expected = f"a header line such as '{uid}:token{sep}{iid}:token{sep}rating:float'"
    expected = expected.replace("\t", "\\t")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    lines = head.splitlines()
    if not head.strip():
        raise HetCompError(f"{path} is empty: it needs {expected}, then one interaction per line")
    try:
        header = lines[0].decode(config["encoding"] or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise HetCompError(f"{path} is not {config['encoding'] or 'utf-8'} text: save it as "
                           "UTF-8 (or set --encoding)") from None
    _refuse_byte_order_mark(path, header)
    fields = [f.strip() for f in header.split(sep)]
    bad = [f for f in fields if f.partition(":")[2] not in ATOMIC_TYPES]
    names = [f.partition(":")[0] for f in fields]
    if bad or uid not in names or iid not in names:
        what = (f"field {bad[0]!r} is not name:type (types: {', '.join(ATOMIC_TYPES)})" if bad
                else f"no {uid if uid not in names else iid} field")
        raise HetCompError(f"{path} has a malformed header ({what}): the first line must be "
                           f"{expected}")
    if len([line for line in lines[1:] if line.strip()]) == 0:
        raise HetCompError(f"{path} has a header but no interactions: add one "
                           f"'{uid}{sep}{iid}...' line per interaction".replace("\t", "\\t"))
