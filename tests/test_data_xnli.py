"""MNLI (hub schema as json lines) and XNLI (per-language parquet): pair encoding, labels, splits, unlabelled
rows; the shared 3-way classifier on these batches; a few steps of the Table 5 configs."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import ANY

import pytest
import torch
import torch.nn.functional as F

from datamodules.hf_base import load_tokenizer
from datamodules.xnli import NLI_LABELS, XNLI_LANGUAGES, MNLITask, XNLITask
from lightning_modules.models.encoder import EncoderClassifier
from tests.helpers import run_cli
from tests.schema_fixtures import (
    NLI_PAIRS,
    XNLI_PAIRS,
    XNLI_SCHEMA,
    tiny_bert_config,
    write_mnli,
    write_rows,
    write_xnli,
)
from tests.table_configs import check_paper_hyperparameters, check_pseudo_tasks, table_configs, table_run_args


def test_mnli_pairs_are_encoded_as_two_segments(tokenizer: str, tmp_path: Path) -> None:
    task = MNLITask(tokenizer, data_files=write_mnli(tmp_path / "mnli"), cache_dir=str(tmp_path / "c"))
    task.setup("fit")
    assert task.name == "mnli" and task.splits["validation"] == "validation_matched"
    tok = load_tokenizer(tokenizer)
    assert task.train_dataset["labels"] == [y for _, _, y in NLI_PAIRS]
    for feature, (premise, hypothesis, _) in zip(task.train_dataset, NLI_PAIRS):
        reference = tok(premise, hypothesis)
        assert feature["input_ids"] == reference["input_ids"]
        segments = feature["token_type_ids"]
        assert segments[0] == 0 and segments[-1] == 1 and sorted(set(segments)) == [0, 1]
    assert sorted(task.train_dataset.column_names) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    assert NLI_LABELS == ("entailment", "neutral", "contradiction")


def test_xnli_is_an_evaluation_task_per_language(tokenizer: str, tmp_path: Path) -> None:
    task = XNLITask("zh", tokenizer, data_files=write_xnli(tmp_path / "xnli", "zh"), cache_dir=str(tmp_path / "c"))
    assert task.name == "xnli_zh" and task.config_name == "zh" and task.splits["train"] is None
    task.setup("test")
    assert task.test_dataset["labels"] == [y for _, _, y in XNLI_PAIRS["zh"]]
    batch = next(iter(task.test_dataloader()))
    assert batch["labels"].dtype == torch.long and batch["input_ids"].shape[0] == 2
    with pytest.raises(ValueError, match="has no training split"):
        task.setup("fit")
    with pytest.raises(ValueError, match="unknown XNLI language 'ja'"):
        XNLITask("ja", tokenizer)
    assert len(XNLI_LANGUAGES) == 15


def test_unlabelled_rows_are_dropped(tokenizer: str, tmp_path: Path) -> None:
    rows = [
        {"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": 0},
        {"premise": "A man sleeps.", "hypothesis": "A man runs.", "label": -1},
    ]
    files = {"validation": write_rows(tmp_path / "v.parquet", rows, XNLI_SCHEMA)}
    task = XNLITask("de", tokenizer, data_files=files, test_split=None, cache_dir=str(tmp_path / "c"))
    task.setup("validate")
    assert task.val_dataset["labels"] == [0]


def test_the_shared_classifier_trains_on_nli_batches(tokenizer: str, tmp_path: Path) -> None:
    task = MNLITask(tokenizer, data_files=write_mnli(tmp_path / "mnli"), cache_dir=str(tmp_path / "c"), batch_size=4)
    task.setup("fit")
    batch = task.collate([task.train_dataset[i] for i in range(4)])
    torch.manual_seed(0)
    model = EncoderClassifier(config=tiny_bert_config(len(load_tokenizer(tokenizer))), num_labels=3).eval()
    output = model("xnli_de", batch)  # one shared head serves every language
    hidden = model.encoder(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    logits = model.head(hidden.last_hidden_state[:, 0])
    torch.testing.assert_close(output.loss, F.cross_entropy(logits, batch["labels"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "data"), [("mtl", "_data.yaml"), ("sequential_reptile", "_data.yaml"), ("stl", "_data_stl.yaml")]
)
def test_table5_configs_train_a_few_steps_offline(method: str, data: str, tmp_path: Path) -> None:
    cli = run_cli(table_run_args("xnli", method, tmp_path, data_yaml=data, steps=4), tmp_path / "logs")
    metrics = cli.trainer.callback_metrics
    tasks = ["mnli"] if method == "stl" else [f"mnli_c{c}" for c in range(4)]  # the four MNLI pseudo-tasks
    assert cli.datamodule.task_names == tasks
    assert float(metrics["val/avg/accuracy"]) == float(metrics[f"val/{tasks[0]}/accuracy"])  # MNLI-m, once
    assert len(cli.datamodule.zero_shot_task_names) == 14
    assert all(f"val/{t}/accuracy" in metrics for t in cli.datamodule.zero_shot_task_names)
    assert "val/zero_shot_avg/accuracy" in metrics and "val/avg/accuracy" in metrics


def test_table5_configs_have_every_method_with_the_paper_hyperparameters() -> None:
    configs = table_configs("xnli")
    check_paper_hyperparameters("xnli", configs, batch_size=32)
    for name, config in configs.items():
        data = config["data"]
        mnli = {"class_path": "datamodules.xnli.MNLITask", "init_args": ANY}
        if name == "stl":  # plain English fine-tuning, for reference
            assert data["tasks"] == [mnli], name
        else:  # Table 5: the same MNLI source, clusters 0-3 of k = 4, embedded by mBERT, PCA 50
            check_pseudo_tasks(data["tasks"], mnli, name)
        languages = [t["init_args"]["language"] for t in data["zero_shot_tasks"]]
        assert languages == [lang for lang in XNLI_LANGUAGES if lang != "en"], name
        model = config["model"]["model"]["init_args"]
        assert (model["num_labels"], model["head"]) == (3, "shared"), name
    assert configs["swep"]["model"]["algorithm"] == {
        "class_path": "lightning_modules.algorithms.swep.SWEP",
        "init_args": {"tasks_per_step": 4, "q": 0.0, "beta": 1.0, "noise_dropout": 0.0},
    }
