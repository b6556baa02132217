"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything is written to a temporary file in the destination's folder (same filesystem), flushed
to disk, then renamed over the destination; on any error the temporary file is removed.
Directory-shaped outputs (the trajectory store, a downloaded dataset) stage a whole temporary
directory the same way, where they are written.
"""

import contextlib
import errno
import hashlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    ``suffix`` lets writers that choose a format by extension (matplotlib's ``savefig``) see
    the right one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix,
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomically(path, text):
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


def file_sha256(path):
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (manifests of the store and of
    model packages)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(obj, path):
    """``torch.save``, failing as an ``OSError`` like every other write.

    On a full disk torch's zip writer raises a ``RuntimeError`` ("[enforce fail at
    inline_container.cc...] unexpected pos"), which the CLIs would not recognise as a failed
    write and would show as a traceback.
    """
    import torch  # here: this module is imported where torch is not needed

    try:
        torch.save(obj, path)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["torch.save failed"])[0][:200]
        raise OSError(errno.EIO, f"cannot write the weights ({first}); is the disk full?",
                      path) from exc
