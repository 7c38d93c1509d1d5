"""QA files whose gold answers were blanked, as XTREME's download script leaves TyDiQA-GoldP dev and MLQA test,
are refused naming the file, the column and the fix, instead of scoring every prediction 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from datamodules.squad_mlqa import MLQATask
from datamodules.tydiqa import TyDiQATask
from tests.schema_fixtures import MLQA_ROWS, TYDIQA_TRAIN, TYDIQA_VALIDATION, squad_json, write_squad_json

SMALL = {"max_length": 64, "stride": 16, "max_query_length": 16}


def official_json_task(cls: type, language: str, tokenizer: str, files: dict[str, str], cache: Path, **splits: Any):
    """A task reading official SQuAD-format json files, with small windows."""
    return cls(language, tokenizer, data_files=files, data_field="data", cache_dir=str(cache), **SMALL, **splits)


def blank_like_xtreme(rows: list[dict[str, Any]], path: Path) -> str:
    """What XTREME's `remove_qa_test_annotations` writes: one paragraph per question, the title dropped, and the
    answers replaced by a single {"answer_start": 0, "text": ""}."""
    published = squad_json(rows)
    data = [
        {"paragraphs": [{"context": p["context"], "qas": [{**qa, "answers": [{"answer_start": 0, "text": ""}]}]}]}
        for article in published["data"]
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data, "version": published["version"]}, ensure_ascii=False))
    return str(path)


def test_blanked_tydiqa_dev_is_refused_naming_file_column_and_fix(tokenizer: str, tmp_path: Path) -> None:
    dev = blank_like_xtreme(TYDIQA_VALIDATION, tmp_path / "tydiqa.goldp.en.dev.json")
    train = write_squad_json(tmp_path / "train.json", TYDIQA_TRAIN)
    task = official_json_task(TyDiQATask, "en", tokenizer, {"train": train, "validation": dev}, tmp_path / "c")
    with pytest.raises(ValueError) as err:
        task.setup("validate")
    message = str(err.value)
    for part in (
        "tydiqa.goldp.en.dev.json",
        "'answers'",
        "2 of 2 questions",
        "english-901-1",
        "remove_qa_test_annotations",
        "tydiqa-goldp-v1.1-dev.json",
    ):
        assert part in message, part


def test_blanked_mlqa_test_is_refused_and_the_published_file_is_scored(tokenizer: str, tmp_path: Path) -> None:
    rows = MLQA_ROWS["de"]
    blanked = blank_like_xtreme(rows, tmp_path / "xtreme" / "test-context-de-question-de.json")
    task = official_json_task(MLQATask, "de", tokenizer, {"test": blanked}, tmp_path / "c", val_split=None)
    with pytest.raises(ValueError, match=r"test-context-de-question-de\.json.*2 of 2 questions.*MLQA_V1"):
        task.setup("test")
    published = write_squad_json(tmp_path / "MLQA_V1" / "test-context-de-question-de.json", rows)
    task = official_json_task(MLQATask, "de", tokenizer, {"test": published}, tmp_path / "c", val_split=None)
    task.setup("test")
    assert sorted(set(task.test_dataset["example_id"])) == ["de-1", "de-2"]


def test_one_blank_answer_among_good_ones_is_refused_by_its_id(tokenizer: str, tmp_path: Path) -> None:
    rows = [dict(r) for r in TYDIQA_VALIDATION[:2]]
    rows[1] = {**rows[1], "answers": {"text": [""], "answer_start": [0]}}
    dev = write_squad_json(tmp_path / "dev.json", rows)
    task = official_json_task(TyDiQATask, "en", tokenizer, {"validation": dev}, tmp_path / "c", train_split=None)
    with pytest.raises(ValueError, match=r"1 of 2 questions .*english-902-1"):
        task.setup("validate")


def test_a_training_question_without_answers_is_kept_but_a_blanked_one_is_refused(
    tokenizer: str, tmp_path: Path
) -> None:
    unanswerable = [
        *TYDIQA_TRAIN[:2],
        {**TYDIQA_TRAIN[0], "id": "english-103-1", "answers": {"text": [], "answer_start": []}},
    ]
    train = write_squad_json(tmp_path / "a" / "train.json", unanswerable)
    task = official_json_task(
        TyDiQATask, "en", tokenizer, {"train": train}, tmp_path / "c", val_split=None, test_split=None
    )
    task.setup("fit")
    assert len(task.train_dataset) >= 3
    blanked = blank_like_xtreme(TYDIQA_TRAIN[:2], tmp_path / "b" / "train.json")
    task = official_json_task(
        TyDiQATask, "en", tokenizer, {"train": blanked}, tmp_path / "c", val_split=None, test_split=None
    )
    with pytest.raises(ValueError, match="no gold answer text"):
        task.setup("fit")
