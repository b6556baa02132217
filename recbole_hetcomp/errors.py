"""The one exception type for user mistakes: the CLI prints its message and exits non-zero."""


class HetCompError(Exception):
    """Bad input (unknown model, missing dataset, malformed config, corrupt store...).

    The message must say what is wrong and how to fix it, in one line.
    """
