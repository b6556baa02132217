"""Dataset converters: raw published files to RecBole atomic files (``<name>/<name>.inter``)."""
