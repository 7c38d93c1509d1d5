"""scripts/sweep_figure.py: a score and the last probe's cosine against one grid key of a sweep (Fig. 7b / 8b),
from done.json markers and alignment summaries written as sweep.py and GradientAlignment write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_registry import script

LR = "optimizer.init_args.lr"


def finished(sweep: Path, lr: str, seed: int, score: float, probes: list[tuple[float, float]] | None) -> None:
    root = sweep / "runs" / f"lr={lr}" / f"seed{seed}"
    run = root / "offline" / "sequential_reptile" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 0\n")  # what marks a run directory in sweep.py's layout
    if probes is not None:
        rows = ["step,cos_mean,cos_mean_se,mtl_loss"] + [f"{100 * i},{c},{se},1.0" for i, (c, se) in enumerate(probes)]
        (run / "alignment_summary.csv").write_text("\n".join(rows) + "\n")
    row = {LR: lr, "seed": seed, "run_dir": str(run), "val/avg/accuracy": 0.5, "test/avg/accuracy": score}
    (root / "done.json").write_text(json.dumps(row))


def test_mean_and_spread_per_value_in_numeric_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "alpha"
    finished(sweep, "0.0001", 0, 0.50, [(0.6, 0.1), (0.20, 0.05)])
    finished(sweep, "0.0001", 1, 0.54, [(0.6, 0.1), (0.30, 0.07)])
    finished(sweep, "3e-05", 0, 0.40, [(0.6, 0.1), (0.40, 0.06)])
    finished(sweep, "3e-05", 1, 0.44, None)  # a run without the alignment probe
    out = tmp_path / "fig" / "fig7b.png"
    assert script("sweep_figure").main([str(sweep), "--key", LR, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 3e-05 before 0.0001 (numeric order); mean ± sample std: (0.40, 0.44) -> 0.42 ± 0.0283, (0.50, 0.54) -> 0.52;
    # a cosine from fewer runs than the score says so, and one value is shown alone (its spread is unknown)
    assert lines[2] == "| 3e-05 | 2 | 0.4200 ± 0.0283 | 0.400 (1 of the runs) | 0.060 |"
    assert lines[3] == "| 0.0001 | 2 | 0.5200 ± 0.0283 | 0.250 ± 0.071 | 0.060 |"
    assert out.is_file() and out.with_suffix(".md").read_text().splitlines()[2:] == lines[2:]


def test_a_moved_sweep_directory_still_finds_its_runs_probes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    finished(tmp_path / "alpha", "0.0001", 0, 0.50, [(0.6, 0.1), (0.20, 0.05)])
    moved = shutil.move(tmp_path / "alpha", tmp_path / "docs" / "alpha")  # done.json records the old path
    assert script("sweep_figure").main([str(moved), "--key", LR, "--out", str(tmp_path / "f.png")]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| 0.0001 | 1 | 0.5000 | 0.200 | 0.050 |"
    shutil.rmtree(moved / "runs" / "lr=0.0001" / "seed0" / "offline")  # the run itself gone: refused, named
    with pytest.raises(SystemExit):
        script("sweep_figure").main([str(moved), "--key", LR, "--out", str(tmp_path / "f.png")])
    assert "expected exactly one run" in capsys.readouterr().err


def test_refusals_name_the_missing_key_or_metric(tmp_path: Path) -> None:
    sweep = tmp_path / "k"
    finished(sweep, "0.0001", 0, 0.5, None)
    out = str(tmp_path / "f.png")
    with pytest.raises(SystemExit):
        script("sweep_figure").main([str(sweep), "--key", "model.algorithm.init_args.inner_steps", "--out", out])
    with pytest.raises(SystemExit):
        script("sweep_figure").main([str(sweep), "--key", LR, "--metric", "test/avg/macro_f1", "--out", out])
    with pytest.raises(SystemExit):
        script("sweep_figure").main([str(tmp_path / "empty"), "--key", LR, "--out", out])
