"""The one exception type for user mistakes: the CLI prints its message and exits non-zero."""


class HetCompError(Exception):
    """Bad input (unknown model, missing dataset, malformed config, corrupt store...).

    The message must say what is wrong and how to fix it, in one line.
    """


def os_error_text(exc):
    """``OSError`` as one short phrase: 'No space left on device: saved/x' (no errno noise)."""
    text = exc.strerror or str(exc)
    return f"{text}: {exc.filename}" if exc.filename else text
