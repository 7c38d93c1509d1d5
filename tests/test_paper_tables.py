"""scripts/paper_tables.py and the paper sections of scripts/report.py: the transcription of Tables 1-5, 9 and 10
(cells read off the paper, row averages, and every cell against the paper's text when it is at hand), which table
a run belongs to, task names from saved configs, and ours − paper on tiny fake runs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO.parent / "shared" / "paper" / "sequential-reptile-iclr2022.md"
if "report" not in sys.modules:  # tests/test_report.py loads it the same way
    spec = importlib.util.spec_from_file_location("report", REPO / "scripts" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["report"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
report = sys.modules["report"]
pt = report.paper_tables
TABLES = pt.TABLES
PSEUDO = "datamodules.pseudo_tasks.PseudoTask"


# --------------------------------------------------------------------------------------------- transcription
@pytest.mark.parametrize(
    ("table", "method", "column", "values"),
    [
        # Cells read off the paper's tables.
        ("table1", "stl", "ar", (80.5, 65.9)),
        ("table1", "gradnorm", "te", (83.3, 68.9)),  # from the packed MTL ... Reptile row
        ("table1", "reptile", "bn", (75.1, 64.1)),
        ("table1", "sequential_reptile", "Avg.", (78.5, 66.3)),
        ("table2", "stl", "my", (61.7,)),
        ("table2", "reptile", "kk", (81.4,)),
        ("table2", "sequential_reptile", "Avg.", (87.5,)),
        ("table3", "gradnorm", "vi", (55.3, 37.1)),
        ("table3", "sequential_reptile", "Avg.", (54.4, 37.0)),
        ("table4", "swep", "de", (60.5, 46.2)),
        ("table4", "pcgrad", "hi", (41.0, 26.0)),
        ("table4", "sequential_reptile", "ar", (52.8, 34.3)),
        ("table5", "recadam", "th", (51.9,)),
        ("table5", "swep", "fr", (74.4,)),
        ("table5", "sequential_reptile", "Avg.", (66.0,)),
        ("table9", "mtl", "RTE", (68.23,)),
        ("table9", "sequential_reptile", "SST2", (92.31,)),
        ("table9", "reptile", "STSB", (88.55,)),
        ("table10", "mtl", "TIN-1", (56.26,)),
        ("table10", "reptile", "CIFAR100", (9.64,)),
        ("table10", "sequential_reptile", "F-MNIST", (87.44,)),
        ("table10", "sequential_reptile", "Avg.", (60.28,)),
    ],
)
def test_cells_read_off_the_paper(table: str, method: str, column: str, values: tuple[float, ...]) -> None:
    t = TABLES[table]
    assert t.rows[method][column] == values
    assert tuple(t.value(t.method_prefix + method, column, m) for m in t.metrics) == values


def test_tables_have_the_papers_methods_and_shapes() -> None:
    methods = {key: list(t.rows) for key, t in TABLES.items()}
    baselines = ["mtl", "recadam", "gradnorm", "pcgrad", "gradvac"]
    assert methods["table1"] == methods["table2"] == ["stl", *baselines, "reptile", "sequential_reptile"]
    assert methods["table3"] == [*baselines, "reptile", "sequential_reptile"]
    assert methods["table4"] == methods["table5"] == [*baselines, "swep", "reptile", "sequential_reptile"]
    assert methods["table9"] == ["mtl", "recadam", "reptile", "sequential_reptile"]
    assert methods["table10"] == ["mtl", "reptile", "sequential_reptile"]
    widths = {key: len(t.columns) - 1 for key, t in TABLES.items()}
    assert widths == {"table1": 9, "table2": 12, "table3": 5, "table4": 6, "table5": 14, "table9": 8, "table10": 8}


def test_printed_averages_match_the_printed_cells_but_for_the_papers_three_typos() -> None:
    mismatches = {}
    for key, t in TABLES.items():
        for method, cells in t.rows.items():
            for i, metric in enumerate(t.metrics):
                values = [cells[c][i] for c in t.columns[:-1]]
                mean, printed = sum(values) / len(values), cells[pt.AVERAGE][i]
                if abs(mean - printed) > 0.1 + 1e-9:  # the paper averages unrounded cells
                    mismatches[key, method, metric] = (printed, round(mean, 2))
    assert mismatches == pt.PRINTED_AVERAGE_MISMATCHES


def _paper_cells(text: str, number: int, per_cell: int) -> dict[str, list[tuple[float, ...]]]:
    """A table of the paper's Markdown: method -> cells; Table 1's packed row (several methods in one line, several
    values per cell) is split in row order."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("Method\t"))
    out: dict[str, list[tuple[float, ...]]] = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        cells = [c for c in (re.sub(r"</?[a-z]+>", "", c).strip() for c in line.split("\t")) if c]
        labels = cells[0].replace("Seq. Reptile", "Seq.Reptile").split()
        columns = []
        for cell in cells[1:]:
            numbers = [float(x) for x in re.findall(r"\d+\.\d+", cell)]
            columns.append([tuple(numbers[i : i + per_cell]) for i in range(0, len(numbers), per_cell)])
            assert len(columns[-1]) == len(labels), line
        for j, label in enumerate(labels):
            out[pt.PAPER_METHODS[label]] = [column[j] for column in columns]
    return out


@pytest.mark.skipif(not PAPER.is_file(), reason="the paper's text is not beside the checkout")
def test_every_cell_equals_the_papers_text() -> None:
    text = PAPER.read_text()
    for t in TABLES.values():
        cells = _paper_cells(text, t.number, len(t.metrics))
        assert list(cells) == list(t.rows), t.key
        for method, values in cells.items():
            assert [t.rows[method][c] for c in t.columns] == values, (t.key, method)


def test_bad_rows_and_table_names_are_named() -> None:
    with pytest.raises(ValueError, match="unknown method label 'Foo'"):
        pt.parse_rows("Foo 1.0 2.0", ("a", "Avg."), 1)
    with pytest.raises(ValueError, match="MTL: 1 cells for 2 columns"):
        pt.parse_rows("MTL 1.0", ("a", "Avg."), 1)
    with pytest.raises(ValueError, match="expected 2 number"):
        pt.parse_rows("MTL 1.0 2.0/3.0", ("a", "Avg."), 2)
    assert pt.get_table("4") is pt.get_table("Table 4") is TABLES["table4"]
    with pytest.raises(ValueError, match="unknown paper table 'table7'"):
        pt.get_table("table7")
    with pytest.raises(SystemExit):
        report.main(["logs", "--paper", "table7"])


# ---------------------------------------------------------------------------------------------- matching
@pytest.mark.parametrize(
    ("path", "method", "table"),
    [
        ("logs/tydiqa/mtl/version_0", "mtl", "table1"),
        ("logs/stl-sw/tydiqa/stl/version_3", "stl", "table1"),
        ("logs/wikiann/sequential_reptile/version_0", "sequential_reptile", "table2"),
        ("logs/mlqa/tydiqa_pcgrad/version_1", "tydiqa_pcgrad", "table3"),
        ("logs/mlqa/squad_swep/version_0", "squad_swep", "table4"),
        ("logs/xnli/swep/version_0", "swep", "table5"),
        ("logs/glue/recadam/version_0", "recadam", "table9"),
        ("logs/table10/sequential_reptile/version_0", "sequential_reptile", "table10"),
        ("logs/offline/mtl/version_0", "mtl", None),
        ("logs/comparison/seed0/offline/mtl/version_0", "mtl", None),
    ],
)
def test_runs_are_matched_to_tables_by_their_log_path(path: str, method: str, table: str | None) -> None:
    found = pt.detect_table(Path(path), method)
    assert (found.key if found else None) == table


def test_task_names_follow_the_datamodules_defaults() -> None:
    squad = {"class_path": "datamodules.squad_mlqa.SquadTask", "init_args": {"name": "squad", "tokenizer": "t"}}
    entries = [
        ({"class_path": "datamodules.squad_mlqa.MLQATask", "init_args": {"language": "de", "name": None}}, "mlqa_de"),
        ({"class_path": "datamodules.xnli.XNLITask", "init_args": {"language": "th"}}, "xnli_th"),
        ({"class_path": "datamodules.glue.GlueTask", "init_args": {"task": "stsb", "name": None}}, "stsb"),
        ({"class_path": "datamodules.xnli.MNLITask", "init_args": {"tokenizer": "t"}}, "mnli"),
        ({"class_path": "datamodules.tydiqa.TyDiQATask", "init_args": {"language": "ko"}}, "ko"),
        ({"class_path": "datamodules.tydiqa.TyDiQATask", "init_args": {"language": "ko", "name": "x"}}, "x"),
        ({"class_path": PSEUDO, "init_args": {"source": squad, "cluster": 2}}, "squad_c2"),
    ]
    for entry, name in entries:
        assert report.task_name(entry) == name
    pseudo = [{"class_path": PSEUDO, "init_args": {"source": squad, "cluster": c}} for c in range(4)]
    assert report._task_names(pseudo) == ["squad_c0"]  # only the first cluster is evaluated
    assert report.base_method("squad_sequential_reptile") == "sequential_reptile"
    assert report.display_names(["squad_mtl", "tydiqa_mtl", "swep"]) == {
        "squad_mtl": "MTL (squad_mtl)",
        "tydiqa_mtl": "MTL (tydiqa_mtl)",
        "swep": "SWEP",
    }


# ------------------------------------------------------------------------------------------- fake runs
MLQA = ("ar", "de", "es", "hi", "vi", "zh")


def squad_config(seed: int) -> dict[str, Any]:
    """The data section as LightningCLI saves it for configs/mlqa/squad_*.yaml (pseudo-tasks, names resolved)."""
    source = {"class_path": "datamodules.squad_mlqa.SquadTask", "init_args": {"name": "squad", "batch_size": 12}}
    return {
        "seed_everything": seed,
        "data": {
            "tasks": [{"class_path": PSEUDO, "init_args": {"source": source, "cluster": c, "k": 4}} for c in range(4)],
            "zero_shot_tasks": [
                {"class_path": "datamodules.squad_mlqa.MLQATask", "init_args": {"language": lang, "name": None}}
                for lang in MLQA
            ],
        },
        "model": {"model": {"init_args": {"backbone": "bert-base-multilingual-cased"}}},
    }


def write_run(directory: Path, config: dict[str, Any], scalars: dict[str, float], step: int = 100) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    writer = SummaryWriter(str(directory))
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, step)
    writer.close()
    return directory


def mlqa_scores(table: Any, method: str, shift: float, squad: float = 80.0) -> dict[str, float]:
    """Test scores: the paper's F1 and EM of `method` plus `shift`, in percent (as the QA metrics log them)."""
    out = {"test/squad_c0/f1": squad, "test/squad_c0/exact_match": squad - 10}
    for lang in MLQA:
        for i, metric in enumerate(table.metrics):
            out[f"test/mlqa_{lang}/{metric}"] = table.rows[method][lang][i] + shift
    return out


@pytest.fixture
def table4_logs(tmp_path: Path) -> Path:
    t4, root = TABLES["table4"], tmp_path / "logs" / "mlqa"
    write_run(root / "squad_mtl" / "version_0", squad_config(1), mlqa_scores(t4, "mtl", 1.0))
    write_run(root / "squad_mtl" / "version_1", squad_config(2), mlqa_scores(t4, "mtl", 3.0))
    sr = mlqa_scores(t4, "sequential_reptile", -0.5)
    write_run(root / "squad_sequential_reptile" / "version_0", squad_config(1), sr)
    stl = squad_config(1)
    stl["data"]["tasks"] = [stl["data"]["tasks"][0]["init_args"]["source"]]  # plain SQuAD: task "squad"
    scores = {k.replace("squad_c0", "squad"): v for k, v in mlqa_scores(t4, "mtl", 0.0).items()}
    write_run(root / "squad_stl" / "version_0", stl, scores)
    return tmp_path / "logs"


def test_differences_to_table4_by_hand(table4_logs: Path) -> None:
    runs = [report.load_run(d) for d in report.find_runs([table4_logs])]
    assert {r.experiment for r in runs} == {"mlqa"}
    mtl = next(r for r in runs if r.method == "squad_mtl")
    assert mtl.seen == ["squad_c0"] and mtl.zero_shot == [f"mlqa_{lang}" for lang in MLQA]
    assert mtl.pseudo_sources == ["squad"]
    [(table, group)] = report.group_runs(runs)
    assert table.key == "table4" and len(group) == 4
    t4 = TABLES["table4"]
    _, f1 = report.build_table(group, "f1", scale=t4.scale)
    diffs = pt.differences(t4, "f1", f1)
    # MTL: seeds at paper + 1 and paper + 3 -> mean paper + 2 in every language; the average of ours is the mean of
    # the paper's cells + 2 = 327.9 / 6 + 2, against the printed 54.6.
    assert diffs["squad_mtl"] == pytest.approx({**{lang: 2.0 for lang in MLQA}, "Avg.": 327.9 / 6 + 2 - 54.6}, abs=1e-4)
    assert "squad_stl" not in diffs  # no STL row in Table 4
    _, em = report.build_table(group, "exact_match", scale=t4.scale)
    sr = pt.differences(t4, "exact_match", em)["squad_sequential_reptile"]
    # Sequential Reptile EM: paper − 0.5 per language; the paper's cells average 40.3 but it prints 39.3.
    assert sr == pytest.approx({**{lang: -0.5 for lang in MLQA}, "Avg.": 40.3 - 0.5 - 39.3}, abs=1e-4)
    text = pt.comparison(t4, "exact_match", em, report.display_names(em))
    assert "| Seq. Reptile | -0.5 | -0.5 | -0.5 | -0.5 | -0.5 | -0.5 | +0.5 |" in text.splitlines()
    assert "| SWEP | 31.0 | 46.2 | 47.3 | 31.9 | 38.8 | 36.3 | 38.5 |" in text.splitlines()  # the paper's row
    assert "Not in the paper's table: STL." in text
    with pytest.raises(ValueError, match="reports f1, exact_match, not 'accuracy'"):
        pt.comparison(t4, "accuracy", em)


def test_report_main_writes_our_tables_the_papers_and_the_differences(table4_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report.main([str(table4_logs), "--out", str(out)]) == 0
    text = (out / "table.md").read_text()
    assert text.startswith("## Table 4: SQuAD -> MLQA")
    order = [text.index(s) for s in ("f1 (test)", "Paper, Table 4 (SQuAD -> MLQA), f1:", "exact_match (test)")]
    assert order == sorted(order)
    assert "Ours − paper, Table 4, exact_match" in text
    lines = text.splitlines()
    paper_mtl = [48.0, 59.1, 64.2, 44.6, 56.8, 55.2]  # our MTL F1: the paper's + 2 (mean of two seeds)
    row = " | ".join(f"{v + 2:.1f} ± 1.4" for v in paper_mtl)
    assert any(line.startswith("| MTL | 2 | 80.0 ± 0.0 | – | " + row) for line in lines)  # squad_c0, squad (STL)
    assert "squad_c0 is squad's whole evaluation split" in text
    # --paper none: the plain table, F1 only when asked for, no paper section
    assert report.main([str(table4_logs), "--out", str(out), "--paper", "none", "--metric", "f1"]) == 0
    assert "Paper" not in (out / "table.md").read_text()


def test_glue_average_takes_pearson_for_stsb(tmp_path: Path) -> None:
    t9 = TABLES["table9"]
    tasks = ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
    config = {
        "seed_everything": 1,
        "data": {"tasks": [{"class_path": "datamodules.glue.GlueTask", "init_args": {"task": t}} for t in tasks]},
    }
    paper = dict(zip(tasks, [t9.rows["sequential_reptile"][c][0] for c in t9.columns[:-1]]))
    scores = {f"test/{t}/accuracy": (paper[t] + 1.0) / 100 for t in tasks if t != "stsb"}
    scores["test/stsb/pearson"] = (paper["stsb"] - 7.0) / 100
    scores["test/stsb/spearmanr"] = 0.0
    write_run(tmp_path / "glue" / "sequential_reptile" / "version_0", config, scores)
    runs = [report.load_run(d) for d in report.find_runs([tmp_path])]
    [(table, group)] = report.group_runs(runs)
    assert table is t9
    _, summary = report.build_table(group, "accuracy", task_metrics=t9.task_metrics())
    diffs = pt.differences(t9, "accuracy", summary)["sequential_reptile"]
    # seven accuracies + 1 and STS-B − 7: the average moves by 0; the printed average is 85.44 (cells: 85.445).
    expected_avg = sum(paper.values()) / 8 - 85.44
    assert diffs == pytest.approx({**{c: 1.0 for c in t9.columns[:-2]}, "STSB": -7.0, "Avg.": expected_avg}, abs=1e-4)


def test_table10_columns_are_the_task_names_of_configs_table10(tmp_path: Path) -> None:
    t10 = TABLES["table10"]
    tasks = yaml.safe_load((REPO / "configs" / "table10" / "_data.yaml").read_text())["tasks"]
    config = {"seed_everything": 1, "data": {"tasks": tasks}}
    names = [t10.task(c) for c in t10.columns[:-1]]
    assert report._task_names(tasks) == names
    paper = dict(zip(names, [t10.rows["mtl"][c][0] for c in t10.columns[:-1]], strict=True))
    write_run(
        tmp_path / "table10" / "mtl" / "version_0",
        config,
        {f"test/{t}/accuracy": (v + 1.0) / 100 for t, v in paper.items()},
    )
    runs = [report.load_run(d) for d in report.find_runs([tmp_path])]
    [(table, group)] = report.group_runs(runs)
    assert table is t10
    _, summary = report.build_table(group, "accuracy")
    diffs = pt.differences(t10, "accuracy", summary)["mtl"]
    expected_avg = sum(paper.values()) / 8 + 1.0 - 56.22  # the printed average is rounded
    assert diffs == pytest.approx({**{c: 1.0 for c in t10.columns[:-1]}, "Avg.": expected_avg}, abs=1e-4)
