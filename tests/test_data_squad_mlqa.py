"""SQuAD (official json) and MLQA (parquet conversion, official json): span alignment in several scripts, the
default hub source of MLQA, file-format errors; a few steps of the Table 3 and Table 4 configs."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import ANY

import pytest

from datamodules.hf_base import builder_for
from datamodules.squad_mlqa import MLQATask, SquadTask
from lightning_modules.metrics import MLQAMetric, SquadMetric
from lightning_modules.models.span_qa import SpanQA
from tests.helpers import run_cli
from tests.schema_fixtures import (
    MLQA_ROWS,
    SQUAD_VALIDATION,
    tiny_bert_config,
    write_mlqa,
    write_squad,
)
from tests.table_configs import check_paper_hyperparameters, check_pseudo_tasks, table_configs, table_run_args

SMALL = {"max_length": 64, "stride": 16, "max_query_length": 16}  # several windows for the long passage


def check_spans(features) -> int:
    """Every window that covers the first gold answer points at exactly its text; the others at [CLS]."""
    inside = 0
    for f in features:
        answer, context, offsets = f["answers"][0], f["context"], f["offset_mapping"]
        start = context.find(answer)
        spans = [o for o in offsets if o[0] >= 0]
        s, e = f["start_positions"], f["end_positions"]
        if spans[0][0] <= start and spans[-1][1] >= start + len(answer):
            assert context[offsets[s][0] : offsets[e][1]] == answer
            inside += 1
        else:
            assert (s, e) == (0, 0)
    return inside


def test_squad_official_json_is_flattened_and_aligned(tokenizer: str, tmp_path: Path) -> None:
    files = write_squad(tmp_path / "squad")
    task = SquadTask(tokenizer, data_files=files, data_field="data", cache_dir=str(tmp_path / "c"), **SMALL)
    task.setup("fit")
    assert task.name == "squad" and task.splits == {"train": "train", "validation": "validation", "test": "validation"}
    assert check_spans(task.val_dataset) == len(SQUAD_VALIDATION)
    gold = {f["example_id"]: f["answers"] for f in task.val_dataset}
    assert gold == {r["id"]: r["answers"]["text"] for r in SQUAD_VALIDATION}  # all gold answers kept
    assert len(task.train_dataset) >= 3


@pytest.mark.parametrize("language", ["de", "zh", "ar", "hi"])
def test_mlqa_parquet_export_and_official_json_agree(language: str, tokenizer: str, tmp_path: Path) -> None:
    parquet = write_mlqa(tmp_path / "parquet", language)
    official = write_mlqa(tmp_path / "json", language, fmt="json")
    features = []
    for files, field in ((parquet, None), (official, "data")):
        task = MLQATask(language, tokenizer, data_files=files, data_field=field, cache_dir=str(tmp_path / "c"))
        task.setup("test")
        features.append(task.test_dataset)
        assert check_spans(task.test_dataset) == len(MLQA_ROWS[language])
    assert features[0]["input_ids"] == features[1]["input_ids"]
    assert features[0]["example_id"] == features[1]["example_id"]


def test_mlqa_reads_the_hub_parquet_conversion_by_default(tokenizer: str) -> None:
    task = MLQATask("de", tokenizer)
    assert task.name == "mlqa_de" and task.config_name == "mlqa.de.de"
    assert task.data_files == {
        "validation": "hf://datasets/facebook/mlqa@refs%2Fconvert%2Fparquet/mlqa.de.de/validation/*.parquet",
        "test": "hf://datasets/facebook/mlqa@refs%2Fconvert%2Fparquet/mlqa.de.de/test/*.parquet",
    }
    assert builder_for(task.data_files["test"]) == "parquet"
    cross = MLQATask(
        "de", tokenizer, question_language="en", path="google/xtreme", config_name="MLQA.de.en", parquet_export=False
    )
    assert cross.data_files is None and (cross.path, cross.config_name) == ("google/xtreme", "MLQA.de.en")
    with pytest.raises(ValueError, match="has no training split"):
        task.setup("fit")
    with pytest.raises(ValueError, match="unknown MLQA language 'fr'"):
        MLQATask("fr", tokenizer)


def test_file_formats_are_checked() -> None:
    assert builder_for(["a.jsonl", "b.json.gz"]) == "json"
    with pytest.raises(ValueError, match="is not one of"):
        builder_for("train.csv")
    with pytest.raises(ValueError, match="must share a format"):
        builder_for(["a.parquet", "b.jsonl"])


def test_mlqa_tasks_are_scored_with_the_language_their_data_gives(tokenizer: str) -> None:
    model = SpanQA(config=tiny_bert_config(64))
    renamed = MLQATask("de", tokenizer, name="my_german_test")
    de = next(iter(model.eval_metrics(renamed.name, **renamed.metric_options()).values()))
    assert isinstance(de, MLQAMetric) and de.language == "de"
    de.update(["der Rhein"], [["Rhein"]])  # German articles are dropped by MLQA's normalization
    assert float(de.compute()["exact_match"]) == 100.0
    squad = SquadTask(tokenizer, name="mlqa_de")  # a name is not a language: SQuAD rules
    assert isinstance(next(iter(model.eval_metrics(squad.name, **squad.metric_options()).values())), SquadMetric)
    with pytest.raises(ValueError, match="MLQA languages are"):
        model.eval_metrics("x", mlqa_language="fr")
    with pytest.raises(ValueError, match=r"task 'x': its data asks to be scored with \{'glue_task': 'cola'\}"):
        model.eval_metrics("x", glue_task="cola")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "data"),
    [
        ("tydiqa_mtl", "_data_tydiqa.yaml"),
        ("squad_sequential_reptile", "_data_squad.yaml"),
        ("squad_swep", "_data_squad.yaml"),
    ],
)
def test_table3_and_table4_configs_train_a_few_steps_offline(config: str, data: str, tmp_path: Path) -> None:
    cli = run_cli(table_run_args("mlqa", config, tmp_path, data_yaml=data, steps=4), tmp_path / "logs")
    metrics = cli.trainer.callback_metrics
    if config.startswith("squad_"):  # Table 4: the four SQuAD pseudo-tasks
        tasks = [f"squad_c{c}" for c in range(4)]
        assert cli.datamodule.task_names == tasks
        assert f"val/{tasks[0]}/f1" in metrics and all(f"val/{t}/f1" not in metrics for t in tasks[1:])
        assert float(metrics["val/avg/f1"]) == float(metrics[f"val/{tasks[0]}/f1"])  # SQuAD dev, once
    zero_shot = cli.datamodule.zero_shot_task_names
    expected = ["de", "es", "hi", "vi", "zh"] if config.startswith("tydiqa") else ["ar", "de", "es", "hi", "vi", "zh"]
    for name in zero_shot:  # scored by the language the task's data gives
        metric = cli.model.eval_metrics[name]["qa"]
        assert isinstance(metric, MLQAMetric) and metric.language == cli.datamodule.task(name).language
    assert zero_shot == [f"mlqa_{lang}" for lang in expected]
    assert all(f"val/{t}/f1" in metrics for t in zero_shot)
    assert "val/zero_shot_avg/f1" in metrics and "val/avg/f1" in metrics
    assert all(isinstance(next(iter(cli.model.eval_metrics[t].values())), MLQAMetric) for t in zero_shot)


def test_table3_and_table4_configs_have_every_method_with_the_paper_hyperparameters() -> None:
    configs = table_configs("mlqa")
    check_paper_hyperparameters("mlqa", configs, batch_size=12)
    for name, config in configs.items():
        data = config["data"]
        zero_shot = [t["init_args"]["language"] for t in data["zero_shot_tasks"]]
        assert "mlqa_languages" not in config["model"]["model"]["init_args"], name  # the data says it
        if name.startswith("tydiqa_"):
            assert len(data["tasks"]) == 9 and zero_shot == ["de", "es", "hi", "vi", "zh"], name
            continue
        assert zero_shot == ["ar", "de", "es", "hi", "vi", "zh"], name
        squad = {"class_path": "datamodules.squad_mlqa.SquadTask", "init_args": ANY}
        if name == "squad_stl":  # plain English fine-tuning, for reference
            assert data["tasks"] == [squad], name
        else:  # Table 4: the same SQuAD source, clusters 0-3 of k = 4, embedded by mBERT, PCA 50
            check_pseudo_tasks(data["tasks"], squad, name)
    algorithms = {name: c["model"]["algorithm"] for name, c in configs.items()}
    assert algorithms["squad_swep"] == {
        "class_path": "lightning_modules.algorithms.swep.SWEP",
        "init_args": {"tasks_per_step": 4, "q": 0.0, "beta": 1.0, "noise_dropout": 0.0},
    }


def test_mlqa_default_source_is_loaded_as_parquet_files(tokenizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, data_files=None, **kwargs):
        calls.append((path, data_files))
        rows = [{k: v for k, v in r.items() if k != "title"} for r in MLQA_ROWS["vi"]]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = MLQATask("vi", tokenizer)
    task.setup("validate")
    url = "hf://datasets/facebook/mlqa@refs%2Fconvert%2Fparquet/mlqa.vi.vi/validation/*.parquet"
    assert calls == [("parquet", {"validation": [url]})]
    assert task.val_dataset["answers"] == [["Hà Nội"]]
