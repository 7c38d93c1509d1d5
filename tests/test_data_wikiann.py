"""WikiANN: first-sub-token labels, words that vanish in tokenization, truncation, padding, parquet vs jsonl,
the token classifier's loss and span F1; a few steps of the Table 2 configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from datamodules.hf_base import load_tokenizer
from datamodules.wikiann import WIKIANN_LABELS, WikiANNTask
from lightning_modules.models.token_classifier import TokenClassifier
from tests.helpers import run_cli
from tests.schema_fixtures import (
    WIKIANN_ROWS,
    WIKIANN_SCHEMA,
    tiny_bert_config,
    wikiann_row,
    write_rows,
    write_wikiann,
)
from tests.table_configs import check_paper_hyperparameters, table_configs, table_run_args


def make_task(language: str, tokenizer: str, files: dict, cache: Path, **kwargs) -> WikiANNTask:
    return WikiANNTask(language, tokenizer, data_files=files, cache_dir=str(cache), **kwargs)


def expected_labels(words: list[str], tags: list[int], tokenizer: str) -> list[int]:
    """Independently: each word tokenized alone; its tag on the first piece, -100 on the rest; a word with no
    piece counts as one [UNK]; [CLS] and [SEP] get -100."""
    tok = load_tokenizer(tokenizer)
    labels = [-100]
    for word, tag in zip(words, tags):
        pieces = len(tok(word, add_special_tokens=False)["input_ids"]) or 1
        labels += [tag] + [-100] * (pieces - 1)
    return labels + [-100]


def test_tags_sit_on_first_sub_tokens_only(tokenizer: str, tmp_path: Path) -> None:
    files = write_wikiann(tmp_path / "data", "sw")
    task = make_task("sw", tokenizer, files, tmp_path / "cache")
    task.setup("fit")
    rows = [wikiann_row(s, "sw") for s in WIKIANN_ROWS["sw"]]
    split_words = 0
    for feature, row in zip(task.train_dataset, rows):
        labels = feature["labels"]
        assert labels == expected_labels(row["tokens"], row["ner_tags"], tokenizer)
        assert len(labels) == len(feature["input_ids"])
        assert sum(label != -100 for label in labels) == len(row["tokens"])  # every word keeps its tag
        split_words += sum(1 for a, b in zip(labels[1:-1], labels[2:-1]) if b == -100)
    assert split_words > 0  # the check above covered words of several sub-tokens
    # The zero-width word became one [UNK] that carries its I-ORG tag.
    unk = load_tokenizer(tokenizer).unk_token_id
    bank = task.train_dataset[1]
    assert bank["labels"][bank["input_ids"].index(unk)] == WIKIANN_LABELS.index("I-ORG")


def test_long_sentences_are_cut_and_reported(tokenizer: str, tmp_path: Path) -> None:
    files = write_wikiann(tmp_path / "data", "en", long_words=40)
    task = make_task("en", tokenizer, files, tmp_path / "cache", max_length=48)
    with pytest.warns(UserWarning, match="1 of 4 sentences are longer than max_length=48"):
        task.setup("validate")
    long = task.val_dataset[3]
    words = [f"word{i % 7}" for i in range(40)]
    tags = [WIKIANN_LABELS.index("B-LOC") if i % 5 == 0 else 0 for i in range(40)]
    assert len(long["input_ids"]) == 48
    assert long["labels"] == expected_labels(words, tags, tokenizer)[:47] + [-100]
    assert "words_kept" not in task.val_dataset.column_names


def test_batches_pad_labels_with_the_ignore_index(tokenizer: str, tmp_path: Path) -> None:
    files = write_wikiann(tmp_path / "data", "de")
    task = make_task("de", tokenizer, files, tmp_path / "cache", eval_batch_size=2, pad_to_multiple_of=8)
    task.setup("test")
    batch = next(iter(task.test_dataloader()))
    lengths = [len(f["input_ids"]) for f in task.test_dataset.select(range(2))]
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] >= max(lengths)
    for row, n in enumerate(lengths):
        assert (batch["labels"][row, n:] == -100).all()
        assert (batch["input_ids"][row, n:] == load_tokenizer(tokenizer).pad_token_id).all()
        assert (batch["attention_mask"][row, n:] == 0).all() and (batch["attention_mask"][row, :n] == 1).all()


def test_parquet_and_jsonl_give_the_same_features(tokenizer: str, tmp_path: Path) -> None:
    parquet = write_wikiann(tmp_path / "p", "en")
    jsonl = write_wikiann(tmp_path / "j", "en", fmt="jsonl")
    a = make_task("en", tokenizer, parquet, tmp_path / "cache")
    b = make_task("en", tokenizer, jsonl, tmp_path / "cache")
    a.setup("fit")
    b.setup("fit")
    assert a.train_dataset["input_ids"] == b.train_dataset["input_ids"]
    assert a.train_dataset["labels"] == b.train_dataset["labels"]


def test_malformed_rows_are_named(tokenizer: str, tmp_path: Path) -> None:
    bad_tag = {"tokens": ["Paris"], "ner_tags": [9], "langs": ["en"], "spans": []}
    files = {s: write_rows(tmp_path / f"{s}.parquet", [bad_tag], WIKIANN_SCHEMA) for s in ("train", "validation")}
    with pytest.raises(ValueError, match=r"ner_tags \[9\] outside \[0, 7\)"):
        make_task("en", tokenizer, files, tmp_path / "cache").setup("fit")
    wrong = {"words": ["Paris"], "ner_tags": [0]}
    files = {s: write_rows(tmp_path / f"w{s}.jsonl", [wrong]) for s in ("train", "validation")}
    with pytest.raises(ValueError, match=r"lacks the columns \['tokens'\]"):
        make_task("en", tokenizer, files, tmp_path / "cache").setup("fit")


def test_token_classifier_loss_and_span_f1(tokenizer: str, tmp_path: Path) -> None:
    files = write_wikiann(tmp_path / "data", "en")
    task = make_task("en", tokenizer, files, tmp_path / "cache", eval_batch_size=3)
    task.setup("validate")
    batch = next(iter(task.val_dataloader()))
    torch.manual_seed(0)
    model = TokenClassifier(config=tiny_bert_config(len(load_tokenizer(tokenizer)))).eval()
    output = model("en", batch)
    logits = model.head(model.encoder(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state)
    keep = batch["labels"] != -100
    torch.testing.assert_close(output.loss, F.cross_entropy(logits[keep], batch["labels"][keep]))
    assert output.preds.shape == batch["labels"].shape
    # Perfect tags on first sub-tokens and garbage on the ignored positions: F1 = 1.
    metrics = model.eval_metrics("en")
    perfect = torch.where(keep, batch["labels"], torch.full_like(batch["labels"], WIKIANN_LABELS.index("I-PER")))
    output.preds = perfect
    model.update_metrics(metrics, output)
    assert float(metrics.compute()["f1"]) == 1.0
    with pytest.raises(ValueError, match="is not an IOB2 label"):
        TokenClassifier(config=tiny_bert_config(50), label_names=["O", "PER"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mtl", "gradvac", "reptile"])
def test_table2_configs_train_a_few_steps_offline(method: str, tmp_path: Path) -> None:
    cli = run_cli(table_run_args("wikiann", method, tmp_path, steps=4), tmp_path / "logs")
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 4 and len(cli.datamodule.task_names) == 12
    assert all(f"val/{t}/f1" in metrics for t in cli.datamodule.task_names)
    assert 0.0 <= float(metrics["val/avg/f1"]) <= 1.0


def test_table2_configs_have_every_method_with_the_paper_hyperparameters() -> None:
    configs = table_configs("wikiann")
    check_paper_hyperparameters("wikiann", configs, batch_size=16)
    expected = ["de", "en", "es", "hi", "jv", "kk", "mr", "my", "sw", "te", "tl", "yo"]
    for name, config in configs.items():
        languages = [t["init_args"]["language"] for t in config["data"]["tasks"]]
        assert languages == (["sw"] if name == "stl" else expected), name
        model = config["model"]["model"]
        assert model["class_path"].endswith("TokenClassifier") and model["init_args"]["head"] == "shared"
