"""The paper's published results (Lee et al., ICLR 2022, Tables 1-5, 9 and 10) and their comparison with our runs.

Transcribed from the paper: Table 1 (TyDiQA-GoldP, F1 / EM), Table 2 (WikiANN NER, F1), Table 3 (TyDiQA -> MLQA,
F1 / EM), Table 4 (SQuAD -> MLQA, F1 / EM), Table 5 (MNLI -> XNLI, accuracy), Table 9 (GLUE, accuracy; STS-B
Pearson), Table 10 (image classification, accuracy). Each table is kept as text in the paper's layout (one line per
method, a cell per column, "F1/EM" where the paper gives two numbers) so it can be read against the PDF;
`PaperTable.rows` holds the parsed numbers.
The averages are as printed. The paper's averages are those of its unrounded cells, so they differ from the mean
of the printed cells by up to about 0.1; three differ by more (`PRINTED_AVERAGE_MISMATCHES`), typos of the paper,
kept as printed.

A run belongs to a table by its log path, `logs/<experiment>/<method>/version_N` (train.py's default): experiment
tydiqa -> Table 1, wikiann -> 2, mlqa with a `tydiqa_` method -> 3, mlqa with a `squad_` method -> 4, xnli -> 5,
glue -> 9, table10 -> 10. `comparison()` prints the paper's table and ours − paper per cell, from
`report.build_table`'s summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightning_modules.algorithms import registry

# Our labels -> our config names (logs/<experiment>/<method>), in the paper's row order (the registry's).
LABELS_TO_KEYS = {label: key for label, key in registry.plain_keys().items() if label in registry.PAPER_ORDER}
# The paper's method labels (its tables print "Seq.Reptile", without the space) -> our config names.
PAPER_METHODS: dict[str, str] = {label.replace(" ", ""): key for label, key in LABELS_TO_KEYS.items()}
AVERAGE = "Avg."
# (table, method, metric): the printed Avg. and the mean of the printed cells of the row.
PRINTED_AVERAGE_MISMATCHES: dict[tuple[str, str, str], tuple[float, float]] = {
    ("table3", "pcgrad", "exact_match"): (34.2, 34.04),
    ("table4", "pcgrad", "f1"): (54.4, 54.22),
    ("table4", "sequential_reptile", "exact_match"): (39.3, 40.3),
}


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's result tables and how our runs map onto it.

    Attributes:
        key: "table1" ... ("--paper table4").
        title: the table's subject, as in the paper.
        experiment: the log directory of its runs (logs/<experiment>/...).
        method_prefix: the prefix of its config names ("squad_" for configs/mlqa/squad_*.yaml), stripped to find
            the paper's method.
        metrics: our metric per number of a cell ("f1", "exact_match" for "F1 / EM").
        columns: the paper's columns, the average last.
        rows: method (our name) -> column -> one number per metric.
        task_prefix: our task name is task_prefix + column (MLQA's mlqa_de, XNLI's xnli_de).
        average: the report column that the paper's Avg. corresponds to: "avg" (all training tasks) or "zero-shot"
            (the zero-shot languages: Tables 3-5).
        scale: our logged value × scale = the paper's unit (QA metrics are logged in percent already).
        column_metrics: a column scored with another metric than the table's (Table 9: STS-B, Pearson).
    """

    key: str
    title: str
    experiment: str
    method_prefix: str
    metrics: tuple[str, ...]
    columns: tuple[str, ...]
    rows: Mapping[str, Mapping[str, tuple[float, ...]]]
    task_prefix: str = ""
    average: str = "avg"
    scale: float = 100.0
    column_metrics: Mapping[str, str] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.key.removeprefix("table"))

    def task(self, column: str) -> str:
        """Our report column for a paper column: a task name, or the average's column."""
        return self.average if column == AVERAGE else self.task_prefix + column.lower()

    def task_metrics(self) -> dict[str, str]:
        """Our task name -> its metric, for the columns scored otherwise than the table (`report.build_table`)."""
        return {self.task(column): metric for column, metric in self.column_metrics.items()}

    def value(self, method: str, column: str, metric: str) -> float | None:
        """The paper's number for our method name (prefix included or not), column and metric; None if absent."""
        cells = self.rows.get(self.base_method(method), {})
        if column not in cells or metric not in self.metrics:
            return None
        return cells[column][self.metrics.index(metric)]

    def base_method(self, method: str) -> str:
        return method.removeprefix(self.method_prefix) if self.method_prefix else method


def parse_rows(text: str, columns: Sequence[str], per_cell: int) -> dict[str, dict[str, tuple[float, ...]]]:
    """Lines "Method v v ..." (cells "a/b" when per_cell is 2) -> {our method name: {column: numbers}}."""
    rows: dict[str, dict[str, tuple[float, ...]]] = {}
    for line in text.strip().splitlines():
        label, *cells = line.split()
        if label not in PAPER_METHODS:
            raise ValueError(f"unknown method label {label!r} in a paper table")
        if len(cells) != len(columns):
            raise ValueError(f"{label}: {len(cells)} cells for {len(columns)} columns")
        parsed = {}
        for column, cell in zip(columns, cells):
            numbers = tuple(float(x) for x in cell.split("/"))
            if len(numbers) != per_cell:
                raise ValueError(f"{label}, {column}: expected {per_cell} number(s), got {cell!r}")
            parsed[column] = numbers
        rows[PAPER_METHODS[label]] = parsed
    return rows


# ------------------------------------------------------------------------------------------- transcription
# Table 1 prints MTL ... Reptile in one packed row (six values per cell, in row order); here one line per method.
TABLE1_COLUMNS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te", AVERAGE)
TABLE1 = """
STL         80.5/65.9 70.9/58.4 72.0/59.2 76.2/63.7 82.7/70.6 61.0/50.8 73.4/56.5 78.4/70.1 81.1/66.4 75.1/62.4
MTL         79.7/64.7 74.7/64.0 72.8/61.1 77.8/64.7 82.9/71.3 64.0/53.4 73.9/57.1 80.5/72.5 82.5/67.9 76.5/64.1
RecAdam     79.0/63.7 72.5/62.4 73.5/62.8 76.9/64.9 82.1/72.2 64.6/54.5 73.9/57.6 80.4/72.9 82.8/68.4 76.2/64.4
GradNorm    78.8/62.9 72.5/61.9 73.4/60.6 78.5/65.8 83.7/74.3 66.2/53.9 74.5/57.7 80.7/72.7 83.3/68.9 76.8/64.3
PCGrad      79.9/65.0 72.6/61.5 74.6/62.3 78.3/65.7 82.7/73.0 65.9/56.1 74.2/57.3 80.6/73.0 82.5/68.1 76.8/64.7
GradVac     80.1/64.7 71.5/59.2 73.0/61.2 78.6/65.5 83.1/72.4 63.8/53.4 74.1/57.6 80.6/72.6 82.2/67.5 76.3/63.8
Reptile     79.8/65.2 75.1/64.1 74.0/62.8 78.8/65.3 83.8/73.6 65.7/55.9 75.5/58.7 81.4/72.9 83.1/68.5 77.5/65.2
Seq.Reptile 81.2/66.7 73.9/62.6 76.7/65.2 79.4/66.3 84.9/74.7 68.0/58.2 76.8/59.2 82.9/74.8 83.0/68.6 78.5/66.3
"""

TABLE2_COLUMNS = ("de", "en", "es", "hi", "jv", "kk", "mr", "my", "sw", "te", "tl", "yo", AVERAGE)
TABLE2 = """
STL         90.3 85.0 92.0 89.7 59.1 88.5 89.4 61.7 90.7 80.1 96.3 77.7 83.3
MTL         83.4 77.8 87.6 82.3 77.7 87.5 82.2 75.7 87.5 78.8 83.5 90.8 82.9
RecAdam     84.5 80.0 88.5 82.7 85.3 88.5 84.4 70.3 89.0 81.6 87.7 91.6 84.5
GradNorm    83.6 77.5 87.3 82.8 78.3 87.8 81.3 73.5 85.4 78.9 83.6 91.4 82.6
PCGrad      83.8 78.5 88.1 81.7 79.7 87.8 81.7 74.4 85.9 78.4 85.7 92.3 83.1
GradVac     83.9 79.5 88.3 81.8 80.6 87.5 82.2 73.9 87.9 79.4 87.9 93.0 83.8
Reptile     85.9 82.4 90.0 86.3 81.3 81.4 86.8 61.8 90.6 72.7 92.8 93.0 83.7
Seq.Reptile 87.4 83.9 90.8 88.1 85.2 89.4 88.9 76.0 91.5 82.5 94.7 92.5 87.5
"""

TABLE3_COLUMNS = ("de", "es", "hi", "vi", "zh", AVERAGE)
TABLE3 = """
MTL         50.6/35.8 54.3/35.4 45.0/31.2 53.7/34.8 52.5/32.0 51.2/33.8
RecAdam     49.5/36.1 52.8/35.6 41.7/29.0 52.2/34.6 49.8/29.9 49.2/33.0
GradNorm    51.7/36.6 54.9/36.3 44.4/30.4 55.3/37.1 52.9/32.2 51.8/34.5
PCGrad      50.6/36.5 54.5/36.2 44.1/31.2 54.4/34.8 52.4/31.5 51.1/34.2
GradVac     50.0/35.4 53.0/35.2 41.6/28.6 52.9/34.9 51.3/31.2 49.8/33.1
Reptile     52.2/38.2 56.1/38.0 45.9/32.1 56.9/38.2 53.9/33.2 53.0/35.9
Seq.Reptile 53.7/38.5 57.6/38.9 47.7/33.7 58.1/39.2 55.1/34.7 54.4/37.0
"""

TABLE4_COLUMNS = ("ar", "de", "es", "hi", "vi", "zh", AVERAGE)
TABLE4 = """
MTL         48.0/29.9 59.1/44.6 64.2/46.2 44.6/29.0 56.8/37.8 55.2/34.7 54.6/37.0
RecAdam     47.3/29.8 58.8/44.0 64.3/46.2 45.5/29.9 57.9/38.4 54.8/34.1 54.7/37.0
GradNorm    48.7/31.3 59.8/44.6 64.8/46.3 47.2/31.2 57.2/37.8 55.0/33.9 55.4/37.5
PCGrad      47.7/29.8 59.2/44.1 65.4/46.1 41.0/26.0 57.4/37.4 54.6/34.0 54.4/36.2
GradVac     45.3/28.3 58.2/43.4 63.9/45.9 42.4/27.9 56.3/37.1 53.0/32.9 53.1/35.9
SWEP        49.5/31.0 60.5/46.2 65.0/47.3 47.6/31.9 57.9/38.8 56.9/36.3 56.2/38.5
Reptile     46.8/29.9 58.7/44.4 65.1/47.5 41.5/27.9 56.1/37.7 53.9/33.9 53.6/36.8
Seq.Reptile 52.8/34.3 60.7/45.9 67.1/48.7 50.6/35.6 60.7/40.8 57.3/36.5 58.2/39.3
"""

TABLE5_COLUMNS = ("ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh", AVERAGE)
TABLE5 = """
MTL         65.1 68.8 71.3 66.4 74.3 72.6 59.2 68.8 50.1 52.8 61.8 57.9 69.4 69.0 64.8
RecAdam     63.5 66.9 69.4 65.2 72.7 72.2 58.8 67.3 49.9 51.9 61.0 56.5 67.9 67.7 63.6
GradNorm    64.0 68.2 70.6 67.0 74.1 72.9 58.8 68.0 48.9 53.2 61.0 56.8 70.3 69.3 64.5
PCGrad      64.0 68.7 69.8 66.5 74.3 71.8 59.4 68.3 51.0 53.1 60.7 57.4 69.7 69.3 64.5
GradVac     62.3 67.8 69.2 65.9 72.6 72.2 59.6 67.1 51.1 52.9 61.7 56.4 68.8 68.0 63.9
SWEP        64.8 69.4 70.5 67.1 74.8 74.4 58.7 69.7 49.2 53.7 60.2 57.1 69.8 68.4 64.8
Reptile     63.3 66.6 69.4 64.9 72.6 71.3 58.3 66.9 46.4 47.5 58.6 55.9 68.6 66.9 62.6
Seq.Reptile 67.2 69.3 71.9 67.8 75.1 74.1 60.6 69.5 51.2 55.1 63.8 59.1 70.8 69.6 66.0
"""

# Appendix E: accuracy on seven tasks, Pearson correlation on STS-B; Avg. over all eight.
TABLE9_COLUMNS = ("CoLA", "MNLI", "MRPC", "QNLI", "QQP", "RTE", "SST2", "STSB", AVERAGE)
TABLE9 = """
MTL         80.82 83.47 82.10 90.50 90.16 68.23 90.13 89.73 84.39
RecAdam     81.78 82.88 79.16 90.00 90.35 71.84 91.20 89.12 84.54
Reptile     82.07 78.81 81.30 89.29 87.57 72.56 88.76 88.55 83.61
Seq.Reptile 82.35 83.02 83.30 90.50 89.40 73.28 92.31 89.40 85.44
"""

# Appendix E: a pretrained ResNet-18 on eight image classification tasks, accuracy; Avg. over all eight. Our task
# names are the columns in lower case (tin-1, f-mnist: configs/table10/_data.yaml).
TABLE10_COLUMNS = ("TIN-1", "TIN-2", "CIFAR100", "Dogs", "Aircraft", "CUB", "F-MNIST", "SVHN", AVERAGE)
TABLE10 = """
MTL         56.26 53.40 54.43 33.44 44.97 29.48 90.10 87.70 56.22
Reptile     23.56 23.28  9.64 12.20 10.02  6.61 60.87 20.86 20.88
Seq.Reptile 58.12 56.83 57.46 38.05 59.55 35.96 87.44 88.86 60.28
"""

QA = ("f1", "exact_match")
TABLES: dict[str, PaperTable] = {
    t.key: t
    for t in (
        PaperTable("table1", "TyDiQA-GoldP", "tydiqa", "", QA, TABLE1_COLUMNS, parse_rows(TABLE1, TABLE1_COLUMNS, 2),
                   scale=1.0),
        PaperTable("table2", "WikiANN NER", "wikiann", "", ("f1",), TABLE2_COLUMNS,
                   parse_rows(TABLE2, TABLE2_COLUMNS, 1)),
        PaperTable("table3", "TyDiQA -> MLQA", "mlqa", "tydiqa_", QA, TABLE3_COLUMNS,
                   parse_rows(TABLE3, TABLE3_COLUMNS, 2), "mlqa_", "zero-shot", 1.0),
        PaperTable("table4", "SQuAD -> MLQA", "mlqa", "squad_", QA, TABLE4_COLUMNS,
                   parse_rows(TABLE4, TABLE4_COLUMNS, 2), "mlqa_", "zero-shot", 1.0),
        PaperTable("table5", "MNLI -> XNLI", "xnli", "", ("accuracy",), TABLE5_COLUMNS,
                   parse_rows(TABLE5, TABLE5_COLUMNS, 1), "xnli_", "zero-shot"),
        PaperTable("table9", "GLUE", "glue", "", ("accuracy",), TABLE9_COLUMNS, parse_rows(TABLE9, TABLE9_COLUMNS, 1),
                   column_metrics={"STSB": "pearson"}),
        PaperTable("table10", "Image classification", "table10", "", ("accuracy",), TABLE10_COLUMNS,
                   parse_rows(TABLE10, TABLE10_COLUMNS, 1)),
    )
}  # fmt: skip


# ---------------------------------------------------------------------------------------------- matching
def experiment_of(run_dir: Path) -> str:
    """logs/<experiment>/<method>/version_N -> experiment (the directory above the method's)."""
    method_dir = run_dir.parent if run_dir.name.startswith("version_") else run_dir
    return method_dir.parent.name


def detect_table(run_dir: Path, method: str) -> PaperTable | None:
    """The paper table a run belongs to, from its experiment directory and method (config) name."""
    experiment = experiment_of(run_dir)
    matches = [t for t in TABLES.values() if t.experiment == experiment and method.startswith(t.method_prefix)]
    return max(matches, key=lambda t: len(t.method_prefix), default=None)


def get_table(key: str) -> PaperTable:
    """A table by key: "table4", "4" or "Table 4"."""
    normal = "table" + key.lower().replace("table", "").strip()
    if normal not in TABLES:
        raise ValueError(f"unknown paper table {key!r}; known: {', '.join(TABLES)}")
    return TABLES[normal]


# -------------------------------------------------------------------------------------------- comparison
Summary = Mapping[str, Mapping[str, tuple[float, float, int]]]  # method -> report column -> (mean, std, n)


def differences(table: PaperTable, metric: str, summary: Summary) -> dict[str, dict[str, float]]:
    """{our method: {paper column: ours − paper}} for every cell both have (our mean over seeds)."""
    out: dict[str, dict[str, float]] = {}
    for method, cells in summary.items():
        for column in table.columns:
            paper = table.value(method, column, metric)
            ours = cells.get(table.task(column))
            if paper is not None and ours is not None:
                out.setdefault(method, {})[column] = ours[0] - paper
    return out


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: the first column left-aligned, the others right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def comparison(table: PaperTable, metric: str, summary: Summary, names: Mapping[str, str] | None = None) -> str:
    """Markdown: the paper's table for `metric` and ours − paper per cell (– where either is missing).

    `summary` is `report.build_table`'s {method: {column: (mean, std, n)}}, `names` our display names."""
    if metric not in table.metrics:
        raise ValueError(f"Table {table.number} reports {', '.join(table.metrics)}, not {metric!r}")
    names = names or {}
    label = {key: name for name, key in LABELS_TO_KEYS.items()}
    unit = metric + "".join(f", {c}: {m}" for c, m in table.column_metrics.items())
    lines = [f"Paper, Table {table.number} ({table.title}), {unit}:", ""]
    header = ["Method", *table.columns]
    paper_rows = [[label[m], *(f"{cells[c][table.metrics.index(metric)]:.{_decimals(table)}f}" for c in table.columns)]
                  for m, cells in table.rows.items()]  # fmt: skip
    lines += markdown_table(header, paper_rows)
    diffs = differences(table, metric, summary)
    lines += ["", f"Ours − paper, Table {table.number}, {unit} (our mean over seeds; – where either is missing):", ""]
    if not diffs:
        lines.append("No method of ours has a cell of this table.")
    else:
        order = list(PAPER_METHODS.values())
        methods = sorted(diffs, key=lambda m: (order.index(table.base_method(m)), m))
        rows = [[names.get(m, label.get(table.base_method(m), m)),
                 *(f"{diffs[m][c]:+.{_decimals(table)}f}" if c in diffs[m] else "–" for c in table.columns)]
                for m in methods]  # fmt: skip
        lines += markdown_table(header, rows)
        missing = sorted(set(summary) - set(diffs))
        if missing:
            lines.append("")
            lines.append(f"Not in the paper's table: {', '.join(names.get(m, m) for m in missing)}.")
    return "\n".join(lines) + "\n"


def _decimals(table: PaperTable) -> int:
    """The paper's precision: two decimals in Table 9, one elsewhere."""
    return 2 if table.key == "table9" else 1
