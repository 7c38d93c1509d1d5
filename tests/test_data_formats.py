"""The files users have on disk, read as they are distributed: XNLI-1.0 tsv (every language in one file), MultiNLI
1.0 jsonl and XNLI-MT tsv (label names, "-" rows), GLUE's tsv, PAN-X's CoNLL-style text (XTREME's `.tsv` and the
raw `lang:token` files). Each gives the same features as the same rows in the hub schema (written by the
independent hub-schema writers of `schema_fixtures`), and each refusal names the file, the column and the fix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from datamodules.glue import TABLE9_TASKS, GlueTask
from datamodules.hf_base import TextClassificationTask
from datamodules.hf_task import HFTaskDataModule
from datamodules.multitask import MultiTaskDataModule
from datamodules.squad_mlqa import SquadTask
from datamodules.wikiann import WikiANNTask
from datamodules.xnli import MNLITask, XNLITask
from tests.schema_fixtures import (
    NLI_PAIRS,
    XNLI_PAIRS,
    write_glue,
    write_glue_tsv,
    write_mnli,
    write_multinli_jsonl,
    write_panx,
    write_rows,
    write_squad,
    write_tsv,
    write_wikiann,
    write_xnli,
    write_xnli_tsv,
)


def columns(task: HFTaskDataModule, role: str) -> dict[str, list[Any]]:
    return task.features(role)[:]


# --------------------------------------------------------------------------- NLI
def test_xnli_1_0_tsv_gives_each_language_its_own_rows(tokenizer: str, tmp_path: Path) -> None:
    tsv = write_xnli_tsv(tmp_path / "XNLI-1.0" / "xnli.test.tsv", ["de", "sw", "zh"])
    files = {"validation": tsv, "test": tsv}
    cache = str(tmp_path / "c")
    tasks = [XNLITask(language, tokenizer, data_files=files, cache_dir=cache) for language in ("de", "zh")]
    MultiTaskDataModule([tasks[0]], zero_shot_tasks=[tasks[1]])  # the languages may share the file
    assert tasks[0].single_language_files() == ("de", [])
    for task in tasks:
        hub = XNLITask(
            task.language, tokenizer, data_files=write_xnli(tmp_path / "hub", task.language), cache_dir=cache
        )
        assert columns(task, "test") == columns(hub, "test")
        assert len(columns(task, "test")["labels"]) == len(XNLI_PAIRS[task.language])
    with pytest.raises(ValueError) as refused:
        XNLITask("ar", tokenizer, data_files=files, cache_dir=cache).features("test")
    assert f"split 'test' of file {tsv} has no rows of language ar (column 'language' has de, sw, zh)" in str(
        refused.value
    )


def test_multinli_jsonl_drops_rows_without_a_gold_label(tokenizer: str, tmp_path: Path) -> None:
    jsonl = write_multinli_jsonl(tmp_path / "multinli_1.0_train.jsonl", unlabelled=2)
    task = MNLITask(tokenizer, data_files={"train": jsonl}, cache_dir=str(tmp_path / "c"))
    hub = MNLITask(tokenizer, data_files=write_mnli(tmp_path / "hub"), cache_dir=str(tmp_path / "c"))
    assert columns(task, "train") == columns(hub, "train")
    assert len(columns(task, "train")["labels"]) == len(NLI_PAIRS)  # the two "-" rows are dropped


def test_xnli_mt_tsv_and_hub_json_with_label_names(tokenizer: str, tmp_path: Path) -> None:
    names = {0: "entailment", 1: "neutral", 2: "contradictory"}  # XNLI-MT's name of class 2
    pairs = XNLI_PAIRS["de"]
    mt = write_tsv(
        tmp_path / "multinli.train.de.tsv", ["premise", "hypo", "label"], [[p, h, names[y]] for p, h, y in pairs]
    )
    hub_names = [{"premise": p, "hypothesis": h, "label": names[y].replace("ory", "ion")} for p, h, y in pairs]
    named = write_rows(tmp_path / "named.jsonl", hub_names)
    hub = XNLITask("de", tokenizer, data_files=write_xnli(tmp_path / "hub", "de"), cache_dir=str(tmp_path / "c"))
    for files in ({"test": mt}, {"test": named}):
        task = XNLITask("de", tokenizer, data_files=files, cache_dir=str(tmp_path / "c"))
        assert columns(task, "test") == columns(hub, "test")


def test_an_unknown_label_name_is_refused_naming_file_column_and_names(tokenizer: str, tmp_path: Path) -> None:
    bad = write_rows(tmp_path / "bad.jsonl", [{"premise": "a", "hypothesis": "b", "label": "entails"}])
    with pytest.raises(ValueError) as refused:
        XNLITask("de", tokenizer, data_files={"test": bad}, cache_dir=str(tmp_path / "c")).features("test")
    message = str(refused.value)
    assert f"split 'test' of file {bad}, column 'label': unknown label name(s) ['entails']" in message
    assert "entailment (0), neutral (1), contradiction (2) (also contradictory)" in message
    record = json.loads(Path(write_multinli_jsonl(tmp_path / "m.jsonl")).read_text().splitlines()[0])
    gold = write_rows(tmp_path / "gold.jsonl", [{**record, "gold_label": "maybe"}])
    with pytest.raises(ValueError, match=r"gold\.jsonl, column 'gold_label': unknown label name\(s\) \['maybe'\]"):
        MNLITask(tokenizer, data_files={"train": gold}, cache_dir=str(tmp_path / "c")).features("train")
    plain = TextClassificationTask(
        "nli", tokenizer, ["premise", "hypothesis"], data_files={"test": bad}, cache_dir=str(tmp_path)
    )
    with pytest.raises(
        ValueError, match=r"column 'label': label names \['entails'\], but this task has no class names"
    ):
        plain.features("test")
    ids = write_rows(tmp_path / "ids.jsonl", [{"premise": "a", "hypothesis": "b", "label": 3}])
    with pytest.raises(ValueError, match=r"ids\.jsonl, column 'label': label ids \[3\] outside \[0, 3\)"):
        XNLITask("de", tokenizer, data_files={"test": ids}, cache_dir=str(tmp_path / "c")).features("test")


# --------------------------------------------------------------------------- GLUE
@pytest.mark.parametrize("task", TABLE9_TASKS)
def test_glue_tsv_files_give_the_hub_features(tokenizer: str, tmp_path: Path, task: str) -> None:
    tsv = GlueTask(task, tokenizer, data_files=write_glue_tsv(tmp_path / "glue_data", task), cache_dir=str(tmp_path))
    hub = GlueTask(task, tokenizer, data_files=write_glue(tmp_path / "hub", task), cache_dir=str(tmp_path / "c"))
    assert columns(tsv, "train") == columns(hub, "train")


def test_tsv_quotes_and_missing_value_words_stay_text(tokenizer: str, tmp_path: Path) -> None:
    rows = [['"a wonderful , moving film', 1], ["NA", 0], ['dull "and" far too long"', 0], ["null", 1]]
    tsv = write_tsv(tmp_path / "train.tsv", ["sentence", "label"], rows)
    gz = tmp_path / "train.tsv.gz"
    gz.write_bytes(gzip.compress(Path(tsv).read_bytes()))
    hub = write_rows(tmp_path / "train.jsonl", [{"sentence": s, "label": y, "idx": i} for i, (s, y) in enumerate(rows)])
    expected = columns(GlueTask("sst2", tokenizer, data_files={"train": hub}, cache_dir=str(tmp_path / "c")), "train")
    for path in (tsv, str(gz)):
        task = GlueTask("sst2", tokenizer, data_files={"train": path}, cache_dir=str(tmp_path / "c"))
        assert columns(task, "train") == expected


def test_a_malformed_tsv_line_names_the_file(tokenizer: str, tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "train.tsv", ["sentence", "label"], [["a film", 1], ["a\tstray tab", 0, 1]])
    with pytest.raises(ValueError, match=rf"cannot read \['{path}'\] with the csv builder: .*Expected 2 fields"):
        GlueTask("sst2", tokenizer, data_files={"train": path}, cache_dir=str(tmp_path / "c")).features("train")


# --------------------------------------------------------------------------- PAN-X
@pytest.mark.parametrize("raw", [False, True], ids=["xtreme-tsv", "raw-panx"])
def test_panx_files_give_the_hub_features(tokenizer: str, tmp_path: Path, raw: bool) -> None:
    fmt = "conll" if raw else None
    panx = WikiANNTask(
        "sw", tokenizer, data_files=write_panx(tmp_path, "sw", raw=raw), file_format=fmt, cache_dir=str(tmp_path / "c")
    )
    hub = WikiANNTask("sw", tokenizer, data_files=write_wikiann(tmp_path / "hub", "sw"), cache_dir=str(tmp_path / "c"))
    assert columns(panx, "validation") == columns(hub, "validation")


def test_panx_refusals_name_the_file_and_the_fix(tokenizer: str, tmp_path: Path) -> None:
    cache = str(tmp_path / "c")
    german = write_panx(tmp_path / "raw", "de", raw=True)
    with pytest.raises(ValueError, match=r"data file .*/de/train is not one of .*set file_format: conll"):
        WikiANNTask("de", tokenizer, data_files=german, cache_dir=cache).features("train")
    with pytest.raises(ValueError, match=r"task 'hi' \(language hi\): .* holds rows of language de"):
        WikiANNTask("hi", tokenizer, data_files=german, file_format="conll", cache_dir=cache).features("train")
    misc = tmp_path / "train-en.tsv"
    misc.write_text("Obama\tB-PER\nspoke\tO\n\nEnglish\tB-MISC\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"file {misc}: unknown NER tag\(s\) \['B-MISC'\] .*IOB2 O B-PER"):
        WikiANNTask("en", tokenizer, data_files={"train": str(misc)}, cache_dir=cache).features("train")
    untagged = tmp_path / "test-en.tsv"
    untagged.write_text("Obama\nspoke\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"file {untagged}: line 'Obama' has no tag; PAN-X lines are token<TAB>tag"):
        WikiANNTask("en", tokenizer, data_files={"test": str(untagged)}, cache_dir=cache).features("test")


# --------------------------------------------------------------------------- SQuAD-format json
def test_squad_json_without_data_field_names_the_setting(tokenizer: str, tmp_path: Path) -> None:
    files = write_squad(tmp_path)
    task = SquadTask(
        tokenizer, data_files=files, cache_dir=str(tmp_path / "c"), max_length=64, stride=16, max_query_length=16
    )
    with pytest.raises(ValueError) as refused:
        task.features("train")
    message = str(refused.value)
    assert f"split 'train' of file {files['train']} has the columns ['data', 'version']" in message
    assert message.endswith("official SQuAD-format file (its questions sit under 'data'): set data_field: data")
