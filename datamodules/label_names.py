"""Class labels written as names ("entailment", MultiNLI's "-", GLUE's "0"/"1" in tsv) -> the task's label ids.

The hub stores labels as ids; the files users download (MultiNLI and XNLI jsonl/tsv, GLUE tsv, XNLI-MT) write
names. A split whose label column holds strings is mapped by name, so the same rows give the same features in
either form; rows without a gold label ("-" or empty, as in MultiNLI) get -1 and are dropped like the hub's
unlabelled rows. A name the task does not know is refused, naming where it was found and the accepted names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NO_GOLD_LABEL: tuple[str, ...] = ("-", "")


@dataclass(frozen=True)
class LabelIds:
    """`Dataset.map` function: the names in `column` -> ids (-1 for no gold label). Frozen, so that `datasets`
    fingerprints it by its fields."""

    column: str
    ids: tuple[tuple[str, int], ...]

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = dict(self.ids)
        return {self.column: [-1 if v is None else ids.get(v.strip(), -1) for v in batch[self.column]]}


@dataclass(frozen=True)
class Scores:
    """`Dataset.map` function: the score strings in `column` -> floats (regression labels)."""

    column: str

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {self.column: [float(v) for v in batch[self.column]]}


def accepted_ids(names: tuple[str, ...], aliases: Mapping[str, int]) -> dict[str, int]:
    """Every spelling of a label: its name, its id as a string ("0", "1": GLUE's tsv) and the aliases."""
    return {**{str(i): i for i in range(len(names))}, **{n: i for i, n in enumerate(names)}, **aliases}


def _is_string(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def label_ids(raw: Any, column: str, names: tuple[str, ...], aliases: Mapping[str, int], where: str) -> Any:
    """`raw` with the label `column` as ids. String columns are mapped by name (unknown names refused); integer
    columns are checked against the number of classes. `where` names the task, split, file and column for messages."""
    feature = raw.features[column]
    accepted = ", ".join(f"{n} ({i})" for i, n in enumerate(names))
    if _is_string(feature):
        ids = accepted_ids(names, aliases)
        values = [v for v in raw.unique(column) if v is not None and v.strip() not in NO_GOLD_LABEL]
        if not names:
            raise ValueError(
                f"{where}: label names {sorted(values)[:10]}, but this task has no class names to map them to; "
                "write class ids (0, 1, ...) or give the task its label_names"
            )
        unknown = sorted({v for v in values if v.strip() not in ids})
        if unknown:
            raise ValueError(
                f"{where}: unknown label name(s) {unknown[:10]}; this task's labels are {accepted}"
                + (f" (also {', '.join(aliases)})" if aliases else "")
                + f", and {' or '.join(repr(n) for n in NO_GOLD_LABEL)} for a row without a gold label; map the "
                "column's values to these names"
            )
        return raw.map(LabelIds(column, tuple(sorted(ids.items()))), batched=True, desc="label names -> ids")
    if names and str(getattr(feature, "dtype", "")).startswith("int"):  # Value("int64") and ClassLabel
        outside = sorted(v for v in raw.unique(column) if v is not None and v >= len(names))
        if outside:
            raise ValueError(
                f"{where}: label ids {outside[:10]} outside [0, {len(names)}); this task's labels are {accepted} "
                "(-1 for an unlabelled row)"
            )
    return raw


def scores(raw: Any, column: str, where: str) -> Any:
    """`raw` with a regression `column` of strings (GLUE's STS-B tsv) as floats; a value that is no number is
    refused."""
    if not _is_string(raw.features[column]):
        return raw
    bad = []
    for value in raw.unique(column):
        try:
            float(value)
        except (TypeError, ValueError):
            bad.append(value)
    if bad:
        raise ValueError(f"{where}: values {sorted(map(str, bad))[:10]} are not numbers; give a score per row")
    return raw.map(Scores(column), batched=True, desc="scores -> floats")
