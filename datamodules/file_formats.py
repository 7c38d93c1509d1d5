"""Reading the files users have on disk through the `datasets` packaged builders: which builder a file suffix
means, the options tab-separated files need, and the columns a file has (read from its first line or schema,
without loading it).

Tab-separated files (`.tsv`, `.tsv.gz`: GLUE, XNLI-1.0, XNLI-MT) go through the csv builder with `sep="\\t"` and
no quote processing (`quoting=3`, csv.QUOTE_NONE, as GLUE's and XNLI's own readers do: their sentences hold
unbalanced quotes) and no missing-value guessing (a sentence "NA" or "null" stays text). Every column is read as
a string, so a label column of "0"/"1" or "entailment" is mapped to ids by the task, the same way in every file.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

# File suffix -> `datasets` packaged builder. Compressed variants are decompressed by `datasets` itself.
FILE_BUILDERS: dict[str, str] = {
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".json.gz": "json",
    ".jsonl.gz": "json",
    ".tsv": "csv",
    ".tsv.gz": "csv",
}
TSV_SUFFIXES = (".tsv", ".tsv.gz")
QUOTE_NONE = 3  # csv.QUOTE_NONE


def suffix_of(name: str) -> str | None:
    """The longest known suffix of a file name (case-insensitive), or None."""
    lowered = str(name).lower()
    return next((s for s in sorted(FILE_BUILDERS, key=len, reverse=True) if lowered.endswith(s)), None)


def is_tsv(name: str) -> bool:
    return suffix_of(name) in TSV_SUFFIXES


def _is_local(path: str) -> bool:
    return "://" not in path and os.path.isfile(path)


def _first_line(path: str) -> str | None:
    """The first line of a local (possibly gzipped) text file without its newline and byte-order mark; None for a
    remote or missing file."""
    if not _is_local(path):
        return None
    opener: Any = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return f.readline().rstrip("\r\n")


def tsv_options(files: Sequence[str], column_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The csv builder's options for tab-separated files. `column_names`: the columns of a file without a header
    line (GLUE's CoLA train/dev), used when the first line has that many fields; otherwise the first line is the
    header. Columns are read as strings when the header of the first file can be read (local files)."""
    import datasets

    options: dict[str, Any] = {
        "sep": "\t",
        "quoting": QUOTE_NONE,
        "na_filter": False,
        "keep_default_na": False,
        "index_col": False,  # a line with a trailing tab must not turn the first column into an index
    }
    line = _first_line(files[0]) if files else None
    names: list[str] | None = line.split("\t") if line else None
    if column_names is not None and names is not None and len(names) == len(column_names):
        options.update(header=None, column_names=list(column_names))
        names = list(column_names)
    if names is not None and len(set(names)) == len(names) and all(names):
        options["features"] = datasets.Features({name: datasets.Value("string") for name in names})
    return options


def file_columns(path: str) -> list[str] | None:
    """The columns of a data file read from its first line (tsv header, first json line) or its parquet schema;
    None when that cannot be told cheaply (remote files, a json file whose records sit under a top-level key)."""
    suffix = suffix_of(path)
    if suffix is None or not _is_local(path):
        return None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    line = _first_line(path)
    if not line:
        return None
    if suffix in TSV_SUFFIXES:
        return line.split("\t")
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return list(record) if isinstance(record, Mapping) else None
