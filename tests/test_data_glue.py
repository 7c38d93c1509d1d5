"""GLUE: each task's fields, label types and splits; per-task heads of different sizes with cross-entropy or
MSE and the GLUE metrics; a few steps of the Table 9 configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from datamodules.glue import GLUE_SPECS, TABLE9_TASKS, GlueTask
from datamodules.hf_base import load_tokenizer
from lightning_modules.models.pair_classifier import GlueClassifier
from tests.helpers import run_cli
from tests.schema_fixtures import (
    GLUE_ROWS,
    tiny_bert_config,
    write_glue,
)
from tests.table_configs import check_paper_hyperparameters, table_configs, table_run_args


@pytest.fixture(scope="module")
def tasks(tokenizer: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, GlueTask]:
    root = tmp_path_factory.mktemp("glue")
    out = {}
    for name in TABLE9_TASKS:
        task = GlueTask(name, tokenizer, data_files=write_glue(root / "data", name), cache_dir=str(root / "c"))
        task.setup("fit")
        out[name] = task
    return out


def test_every_task_reads_its_fields_and_labels(tasks: dict[str, GlueTask], tokenizer: str) -> None:
    tok = load_tokenizer(tokenizer)
    for name, task in tasks.items():
        spec = GLUE_SPECS[name]
        rows = GLUE_ROWS[name]
        for feature, row in zip(task.train_dataset, rows):
            assert feature["input_ids"] == tok(*[row[f] for f in spec.text_fields])["input_ids"]
            assert (1 in feature["token_type_ids"]) == (len(spec.text_fields) == 2)
        labels = task.train_dataset["labels"]
        assert labels == [r["label"] for r in rows]
        assert all(isinstance(y, float) for y in labels) == (name == "stsb")
    assert tasks["mnli"].splits["validation"] == tasks["mnli"].splits["test"] == "validation_matched"
    assert tasks["stsb"].regression and not tasks["cola"].regression


def test_unlabelled_test_rows_are_dropped_but_regression_scores_are_kept(tokenizer: str, tmp_path: Path) -> None:
    files = write_glue(tmp_path, "rte")
    task = GlueTask("rte", tokenizer, data_files=files, test_split="test", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="no usable examples"):  # every GLUE test label is -1
        task.setup("test")
    stsb = GlueTask("stsb", tokenizer, data_files=write_glue(tmp_path, "stsb"), cache_dir=str(tmp_path / "c"))
    stsb.setup("validate")
    batch = next(iter(stsb.val_dataloader()))
    assert batch["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="unknown GLUE task 'ax'"):
        GlueTask("ax", tokenizer)


def test_per_task_heads_losses_and_metrics(tasks: dict[str, GlueTask], tokenizer: str) -> None:
    torch.manual_seed(0)
    vocab = len(load_tokenizer(tokenizer))
    model = GlueClassifier(list(TABLE9_TASKS), config=tiny_bert_config(vocab)).eval()
    assert {t: model.heads[t].out_features for t in TABLE9_TASKS} == {
        "cola": 2, "mnli": 3, "mrpc": 2, "qnli": 2, "qqp": 2, "rte": 2, "sst2": 2, "stsb": 1
    }  # fmt: skip
    shared = {n for n, _ in model.shared_named_parameters()}
    assert not any(n.startswith("heads.") for n in shared)
    for name in ("stsb", "mnli"):
        task = tasks[name]
        batch = task.collate([task.train_dataset[i] for i in range(3)])
        output = model(name, batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = model.heads[name](model.encoder(**inputs).last_hidden_state[:, 0])
        if name == "stsb":
            torch.testing.assert_close(output.loss, F.mse_loss(logits.squeeze(-1), batch["labels"]))
        else:
            torch.testing.assert_close(output.loss, F.cross_entropy(logits, batch["labels"]))
        metrics = model.eval_metrics(name)
        model.update_metrics(metrics, output)
        assert set(metrics.compute()) == ({"pearson", "spearmanr"} if name == "stsb" else {"accuracy"})
    assert set(model.eval_metrics("cola").keys()) == {"matthews_correlation", "accuracy"}
    renamed = GlueTask("cola", tokenizer, name="acceptability")  # the data's GLUE config decides, not the name
    assert set(model.eval_metrics(renamed.name, **renamed.metric_options()).keys()) == {
        "matthews_correlation",
        "accuracy",
    }
    with pytest.raises(ValueError, match="not in tasks"):
        GlueClassifier(["cola"], config=tiny_bert_config(vocab), num_labels={"rte": 2})


def test_heads_from_the_data_are_those_of_the_task_list(tokenizer: str) -> None:
    """`tasks="data"`: `attach_data` draws what the constructor draws for the same list (both sets of heads)."""
    from tests.helpers import assert_identical

    vocab = len(load_tokenizer(tokenizer))
    torch.manual_seed(0)
    listed = GlueClassifier(list(TABLE9_TASKS), config=tiny_bert_config(vocab), num_labels={"rte": 3})
    torch.manual_seed(0)
    late = GlueClassifier("data", config=tiny_bert_config(vocab), num_labels={"rte": 3})
    late.attach_data(list(TABLE9_TASKS), None)
    assert late.task_num_labels == listed.task_num_labels and late.heads["rte"].out_features == 3
    assert [n for n, _ in late.named_parameters()] == [n for n, _ in listed.named_parameters()]
    assert_identical(late.state_dict(), listed.state_dict())
    rebuilt = GlueClassifier("data", config=tiny_bert_config(vocab), num_labels={"rte": 3})
    rebuilt.load_state_dict(listed.state_dict())
    assert_identical(rebuilt.state_dict(), listed.state_dict())


def test_heads_follow_the_data_whatever_the_tasks_are_named(tokenizer: str) -> None:
    vocab = len(load_tokenizer(tokenizer))
    data = [GlueTask("mnli", tokenizer, name="entailment"), GlueTask("stsb", tokenizer, name="similarity")]
    counts = {task.name: task.class_count() for task in data}
    assert counts == {"entailment": 3, "similarity": 1}
    model = GlueClassifier("data", config=tiny_bert_config(vocab))
    model.attach_data(list(counts), None, counts)
    assert {t: h.out_features for t, h in model.heads.items()} == counts and model.task_num_labels == counts
    rebuilt = GlueClassifier("data", config=tiny_bert_config(vocab))  # from a checkpoint: the saved sizes
    rebuilt.load_state_dict(model.state_dict())
    assert {t: h.out_features for t, h in rebuilt.heads.items()} == counts and rebuilt.task_num_labels == counts

    with pytest.raises(ValueError, match=r"'mnli' has 3 outputs, its data defines 2.*tasks: data"):
        GlueClassifier(["mnli"], config=tiny_bert_config(vocab)).attach_data(["mnli"], None, {"mnli": 2})
    with pytest.raises(ValueError, match=r"task 'entailment' num_labels 2, its data defines 3"):
        GlueClassifier("data", config=tiny_bert_config(vocab), num_labels={"entailment": 2}).attach_data(
            list(counts), None, counts
        )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mtl", "sequential_reptile", "pcgrad"])
def test_table9_configs_train_a_few_steps_offline(method: str, tmp_path: Path) -> None:
    cli = run_cli(table_run_args("glue", method, tmp_path, steps=4), tmp_path / "logs")
    metrics = cli.trainer.callback_metrics
    assert cli.datamodule.task_names == list(TABLE9_TASKS)
    assert "val/stsb/pearson" in metrics and "val/cola/matthews_correlation" in metrics
    assert "val/mnli/accuracy" in metrics and "val/avg/accuracy" in metrics


def test_table9_configs_have_every_method_with_one_head_per_task() -> None:
    configs = table_configs("glue")
    check_paper_hyperparameters("glue", configs, batch_size=32)
    for name, config in configs.items():
        tasks = [t["init_args"]["task"] for t in config["data"]["tasks"]]
        assert tasks == list(TABLE9_TASKS), name
        assert config["model"]["model"]["init_args"]["tasks"] == "data", name  # the heads: one per data task
