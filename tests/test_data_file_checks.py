"""Users' data files: a task given another language's files is refused, naming the file, the column and the fix
(WikiANN rows name their language in `langs`; no two languages may read one single-language file, the YAML-anchor
mistake), and a split the stage does not use is not required."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datamodules.multitask import MultiTaskDataModule
from datamodules.tydiqa import TyDiQATask
from datamodules.wikiann import WikiANNTask
from datamodules.xnli import XNLITask
from tests.schema_fixtures import write_tydiqa, write_wikiann, write_xnli


def test_a_wikiann_task_given_german_files_is_refused(tokenizer: str, tmp_path: Path) -> None:
    german = write_wikiann(tmp_path, "de")
    task = WikiANNTask("hi", tokenizer, data_files=german, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError) as err:
        task.setup("fit")
    message = str(err.value)
    assert "task 'hi' (language hi)" in message and "language de (column 'langs')" in message
    assert str(tmp_path / "de" / "train.parquet") in message
    assert WikiANNTask("de", tokenizer, data_files=german, cache_dir=str(tmp_path / "c")).setup("fit") is None


def test_a_data_files_anchor_copied_to_every_language_is_refused(tokenizer: str, tmp_path: Path) -> None:
    files = write_xnli(tmp_path, "de")
    entries = yaml.safe_load(
        f"""
        - &task {{language: de, tokenizer: {tokenizer}, data_files: {files}}}
        - {{<<: *task, language: hi}}
        """
    )
    tasks = [XNLITask(**entry) for entry in entries]
    with pytest.raises(
        ValueError,
        match=r"'xnli_de' \(language de\) and 'xnli_hi' \(language hi\) read the same file .*validation\.parquet",
    ):
        MultiTaskDataModule([tasks[0]], zero_shot_tasks=[tasks[1]])


def test_languages_selected_from_shared_files_may_share_them(tokenizer: str, tmp_path: Path) -> None:
    files = write_tydiqa(tmp_path)
    tasks = [
        TyDiQATask(language, tokenizer, data_files=files, max_length=64, stride=16, max_query_length=16)
        for language in ("en", "ar")
    ]
    assert MultiTaskDataModule(tasks).task_names == ["en", "ar"]


def test_fit_needs_no_test_file_and_test_names_the_missing_one(tokenizer: str, tmp_path: Path) -> None:
    files = write_wikiann(tmp_path, "sw")
    del files["test"]
    task = WikiANNTask("sw", tokenizer, data_files=files, cache_dir=str(tmp_path / "c"))
    task.prepare_data()
    task.setup("fit")
    assert len(task.train_dataset) > 0 and len(task.val_dataset) > 0
    with pytest.raises(ValueError, match=r"task 'sw': no file for its test split 'test' .*set test_split: null"):
        task.setup("test")
