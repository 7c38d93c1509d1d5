"""TyDiQA gold passage: loading (parquet, jsonl, official json), language selection, windows and span positions,
evaluation batching, caching; QA post-processing on hand-made logits; a few steps of the Table 1 configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.hf_qa import ExampleGroupedBatchSampler, QAEncoder, answer_token_span
from datamodules.tydiqa import TYDIQA_LANGUAGES, TyDiQATask, tydiqa_language
from lightning_modules.metrics import MLQAMetric, SquadMetric
from lightning_modules.models.span_qa import SpanQA, best_answers
from tests.helpers import run_cli
from tests.schema_fixtures import (
    TYDIQA_BAD,
    TYDIQA_TRAIN,
    TYDIQA_VALIDATION,
    tiny_bert_config,
    write_rows,
    write_squad_json,
    write_tydiqa,
)
from tests.table_configs import check_paper_hyperparameters, table_configs, table_run_args


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_tydiqa(tmp_path_factory.mktemp("tydiqa"))


def make_task(language: str, tokenizer: str, files: dict, cache: Path, **kwargs) -> TyDiQATask:
    args = {"max_length": 64, "stride": 16, "max_query_length": 16, "cache_dir": str(cache)}
    return TyDiQATask(language, tokenizer, data_files=files, **{**args, **kwargs})


def answer_in_window(feature: dict, answer: str) -> bool:
    """Independently of the pipeline: do the window's context tokens cover the answer's first occurrence?"""
    start = feature["context"].find(answer)
    spans = [o for o in feature["offset_mapping"] if o[0] >= 0]
    return bool(spans) and spans[0][0] <= start and spans[-1][1] >= start + len(answer)


def test_language_comes_from_the_example_id() -> None:
    assert tydiqa_language("arabic-2387335860751143628-1") == "ar"
    assert tydiqa_language("telugu-1") == "te"
    assert tydiqa_language("japanese-1-1") is None  # not in the gold-passage task
    assert set(TYDIQA_LANGUAGES) == {"ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"}


def test_answers_map_back_through_offsets_and_windows_without_the_answer_point_at_cls(
    tokenizer: str, files: dict, tmp_path: Path
) -> None:
    task = make_task("en", tokenizer, files, tmp_path)
    task.setup("fit")
    # The training split with evaluation columns (offsets, contexts): the same windows and positions.
    train_with_offsets = task._build("train", "eval")
    checked = {"inside": 0, "outside": 0}
    found = set()
    for features in (task.val_dataset, train_with_offsets):
        for f in features:
            if f["example_id"] == TYDIQA_BAD["id"]:
                continue
            s, e = f["start_positions"], f["end_positions"]
            if answer_in_window(f, f["answers"][0]):
                assert 0 < s <= e
                context, offsets = f["context"], f["offset_mapping"]
                assert context[offsets[s][0] : offsets[e][1]] == f["answers"][0]
                checked["inside"] += 1
                found.add(f["example_id"])
            else:
                assert (s, e) == (0, 0)
                checked["outside"] += 1
    # 2 validation + 2 usable training questions each have a window with their answer, while the long passage
    # also gives windows without it
    assert found == {"english-901-1", "english-902-1", "english-101-1", "english-102-1"}
    assert checked["outside"] > 0
    train = task.train_dataset
    kept = [f for f in train_with_offsets if f["example_id"] != TYDIQA_BAD["id"]]
    assert [f["input_ids"] for f in train] == [f["input_ids"] for f in kept]
    assert [(f["start_positions"], f["end_positions"]) for f in train] == [
        (f["start_positions"], f["end_positions"]) for f in kept
    ]
    assert "offset_mapping" not in train.column_names and "context" not in train.column_names


def test_windows_overlap_by_the_stride_and_respect_max_length(tokenizer: str, files: dict, tmp_path: Path) -> None:
    task = make_task("en", tokenizer, files, tmp_path)
    task.setup("validate")
    windows = [f for f in task.val_dataset if f["example_id"] == "english-901-1"]
    assert len(windows) > 2
    for f in windows:
        assert len(f["input_ids"]) <= 64
    for a, b in zip(windows, windows[1:]):
        context_a = [tuple(o) for o in a["offset_mapping"] if o[0] >= 0]
        context_b = [tuple(o) for o in b["offset_mapping"] if o[0] >= 0]
        assert context_a[-16:] == context_b[:16]  # stride 16: the next window repeats the last 16 tokens


def test_answer_token_span_by_hand() -> None:
    # tokens: [CLS] q [SEP] "Pa" "ris" "is" "big" [SEP]; context "Paris is big"
    offsets = [(0, 0), (0, 1), (0, 0), (0, 2), (2, 5), (6, 8), (9, 12), (0, 0)]
    assert answer_token_span(offsets, 3, 6, 0, 5) == (3, 4)  # "Paris" = two sub-tokens
    assert answer_token_span(offsets, 3, 6, 6, 12) == (5, 6)  # "is big"
    assert answer_token_span(offsets, 3, 6, 3, 5) == (4, 4)  # "is" inside "Paris" -> its whole token
    assert answer_token_span(offsets, 3, 5, 9, 12) == (0, 0)  # a window that ends before "big"


def test_each_task_keeps_its_language_and_bad_training_answers_are_dropped(
    tokenizer: str, files: dict, tmp_path: Path
) -> None:
    for language in ("ar", "sw", "ko"):
        task = make_task(language, tokenizer, files, tmp_path)
        task.setup("fit")
        ids = set(task.val_dataset["example_id"]) | set(task._build("train", "eval")["example_id"])
        prefix = TYDIQA_LANGUAGES[language] + "-"
        expected = {r["id"] for r in TYDIQA_TRAIN + TYDIQA_VALIDATION if r["id"].startswith(prefix)}
        assert ids == expected
    english = make_task("en", tokenizer, files, tmp_path)
    with pytest.warns(UserWarning, match="dropped 1 of 3 training examples"):
        raw = english.prepare_raw(english.load_raw("train"), "train", "train")
    assert sorted(raw["id"]) == ["english-101-1", "english-102-1"]


def test_official_json_jsonl_and_parquet_give_the_same_features(tokenizer: str, files: dict, tmp_path: Path) -> None:
    train = TYDIQA_TRAIN + [TYDIQA_BAD]
    official = {
        "train": write_squad_json(tmp_path / "tydiqa-goldp-v1.1-train.json", train),
        "validation": write_squad_json(tmp_path / "tydiqa-goldp-v1.1-dev.json", TYDIQA_VALIDATION),
    }
    jsonl = {
        "train": write_rows(tmp_path / "train.jsonl", train),
        "validation": write_rows(tmp_path / "validation.jsonl", TYDIQA_VALIDATION),
    }
    results = []
    for data_files, field in ((files, None), (official, "data"), (jsonl, None)):
        task = make_task("en", tokenizer, data_files, tmp_path / "cache", data_field=field)
        task.setup("fit")
        results.append(
            (
                task.train_dataset["input_ids"],
                task.train_dataset["start_positions"],
                task.val_dataset["example_id"],
                task.val_dataset["end_positions"],
                task.val_dataset["answers"],
            )
        )
    assert results[0] == results[1] == results[2]


def test_evaluation_batches_hold_whole_examples(tokenizer: str, files: dict, tmp_path: Path) -> None:
    task = make_task("en", tokenizer, files, tmp_path, eval_batch_size=3)
    task.setup("validate")
    seen: list[int] = []
    total = 0
    for batch in task.val_dataloader():
        examples = batch["example_index"].tolist()
        assert not set(examples) & set(seen)
        seen.extend(sorted(set(examples)))
        assert len(examples) <= 3 or len(set(examples)) == 1  # more than 3 only for one long example
        assert batch["offset_mapping"].shape == (*batch["input_ids"].shape, 2)
        assert (batch["offset_mapping"][batch["attention_mask"] == 0] == -1).all()
        total += len(examples)
    assert total == len(task.val_dataset) and len(seen) == 2
    assert ExampleGroupedBatchSampler([0, 0, 1, 2, 2, 2], 3).batches == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="not contiguous"):
        ExampleGroupedBatchSampler([0, 1, 0], 3)


def test_tokenized_features_are_read_back_from_the_cache(
    tokenizer: str, files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_task("sw", tokenizer, files, tmp_path)
    first.prepare_data()

    def fail(*args, **kwargs):
        raise AssertionError("the tokenizer ran again instead of reading the cache")

    monkeypatch.setattr(QAEncoder, "__call__", fail)
    second = make_task("sw", tokenizer, files, tmp_path)
    second.setup("fit")
    assert second.train_dataset.cache_files == first.features("train").cache_files
    assert second.val_dataset["input_ids"] == first.features("validation")["input_ids"]
    with pytest.raises(AssertionError, match="ran again"):  # other parameters: a new fingerprint
        make_task("sw", tokenizer, files, tmp_path, stride=8).setup("fit")


def test_long_questions_are_cut_and_bad_arguments_are_named(tokenizer: str, tmp_path: Path) -> None:
    question = " ".join(["river"] * 40) + "?"
    rows = [{**TYDIQA_TRAIN[1], "id": "english-7-1", "question": question}]
    data = {"train": write_rows(tmp_path / "t.parquet", rows), "validation": write_rows(tmp_path / "v.parquet", rows)}
    task = make_task("en", tokenizer, data, tmp_path, max_query_length=8)
    task.setup("fit")
    for f in task.train_dataset:
        first_segment = f["token_type_ids"].count(0) - 2  # [CLS] question [SEP]
        assert first_segment == 8
    with pytest.raises(ValueError, match="unknown TyDiQA gold-passage language 'ja'"):
        TyDiQATask("ja", tokenizer)
    with pytest.raises(ValueError, match=r"stride must be in \[0, 45\)"):
        TyDiQATask("en", tokenizer, max_length=64, max_query_length=16, stride=45)
    with pytest.raises(ValueError, match=r"no file for its validation split 'validation' .*set val_split: null"):
        make_task("en", tokenizer, {"train": data["train"]}, tmp_path).setup("fit")
    with pytest.raises(ValueError, match="no example whose id starts with 'finnish-'"):
        make_task("fi", tokenizer, data, tmp_path).setup("fit")


# ----------------------------------------------------------------------------- post-processing
def _offsets(spans: list[tuple[int, int] | None]) -> torch.Tensor:
    return torch.tensor([list(s) if s is not None else [-1, -1] for s in spans])


CONTEXT = "Paris is the capital of France"
# [CLS] Where [SEP] Paris is the capital of France [SEP]
SPANS = [None, None, None, (0, 5), (6, 8), (9, 12), (13, 20), (21, 23), (24, 30), None]


def test_best_answer_takes_the_best_valid_span_in_the_context() -> None:
    start = torch.tensor([[9.0, 8.0, 0, 1, 0, 0, 2.5, 0, 0, 0]])  # [CLS] and the question score highest
    end = torch.tensor([[9.0, 8.0, 0, 0, 0, 0, 0, 0, 3.0, 0]])
    order, texts = best_answers(start, end, _offsets(SPANS)[None], [7], [CONTEXT])
    assert (order, texts) == ([7], ["capital of France"])  # 2.5 + 3.0 beats "Paris ... France" 1 + 3
    # end before start is not a span: the best start (capital) and end (Paris) cannot pair
    start = torch.tensor([[0, 0, 0, 0, 0, 0, 5.0, 0, 0, 0]])
    end = torch.tensor([[0, 0, 0, 6.0, 0, 0, 0, 0, 1.0, 0]])
    assert best_answers(start, end, _offsets(SPANS)[None], [0], [CONTEXT])[1] == ["capital of France"]


def test_max_answer_length_and_n_best_restrict_the_candidates() -> None:
    start = torch.tensor([[0, 0, 0, 5.0, 0, 0, 1.0, 0, 0, 0]])
    end = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 5.0, 0]])
    offsets = _offsets(SPANS)[None]
    assert best_answers(start, end, offsets, [0], [CONTEXT])[1] == ["Paris is the capital of France"]
    # 6 tokens is too long with max_answer_length 4: the next best start, "capital", gives 3 tokens
    assert best_answers(start, end, offsets, [0], [CONTEXT], max_answer_length=4)[1] == ["capital of France"]
    assert best_answers(start, end, offsets, [0], [CONTEXT], n_best=1, max_answer_length=4)[1] == [""]
    # n_best counts the real tokens of the window (question and specials too), not only the context
    start = torch.tensor([[4.0, 3.0, 0, 2.0, 0, 0, 0, 0, 0, 0]])
    end = torch.tensor([[4.0, 3.0, 0, 0, 0, 0, 0, 0, 2.0, 0]])
    assert best_answers(start, end, offsets, [0], [CONTEXT], n_best=2)[1] == [""]
    assert best_answers(start, end, offsets, [0], [CONTEXT], n_best=3)[1] == ["Paris is the capital of France"]
    # padding (attention mask 0) never takes a place in the n best
    mask = torch.ones(1, 10, dtype=torch.long)
    mask[0, :2] = 0
    assert best_answers(start, end, offsets, [0], [CONTEXT], mask, n_best=1)[1] == ["Paris is the capital of France"]


def test_the_best_window_of_an_example_wins_and_examples_keep_their_order() -> None:
    second = "Berlin is big"
    offsets = torch.stack(
        [
            _offsets(SPANS),
            _offsets([None, None, None, (13, 20), (21, 23), (24, 30), None, None, None, None]),
            _offsets([None, None, (0, 6), (7, 9), (10, 13), None, None, None, None, None]),
        ]
    )
    start = torch.tensor([[0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 4.0, 0, 0, 0, 0], [0, 0, 2.0] + [0.0] * 7])
    end = torch.tensor([[0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 4.0, 0, 0, 0, 0], [0, 0, 2.0] + [0.0] * 7])
    order, texts = best_answers(start, end, offsets, [5, 5, 2], [CONTEXT, CONTEXT, second])
    assert order == [5, 2] and texts == ["France", "Berlin"]


def test_span_qa_turns_evaluation_batches_into_scored_answers(tokenizer: str, files: dict, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    vocab = len(AutoTokenizer.from_pretrained(tokenizer))
    model = SpanQA(config=tiny_bert_config(vocab, 512)).eval()
    task = make_task("en", tokenizer, files, tmp_path, eval_batch_size=4)
    task.setup("validate")
    batch = next(iter(task.val_dataloader()))
    output = model("en", batch)
    start, end = model.span_logits("en", batch)
    expected = best_answers(
        start, end, batch["offset_mapping"], batch["example_index"].tolist(), batch["context"], batch["attention_mask"]
    )
    assert output.preds == expected[1] and len(output.targets) == len(set(batch["example_index"].tolist()))
    torch.testing.assert_close(
        output.loss,
        (
            torch.nn.functional.cross_entropy(start, batch["start_positions"])
            + torch.nn.functional.cross_entropy(end, batch["end_positions"])
        )
        / 2,
    )
    metrics = model.eval_metrics("en")
    model.update_metrics(metrics, output)
    reference = SquadMetric()
    reference.update(output.preds, output.targets)
    assert metrics.compute()["f1"] == reference.compute()["f1"]
    assert isinstance(next(iter(model.eval_metrics("en", mlqa_language="de").values())), MLQAMetric)


# ----------------------------------------------------------------------------- Table 1 configs
@pytest.mark.slow
@pytest.mark.parametrize("method", ["mtl", "sequential_reptile", "stl"])
def test_table1_configs_train_a_few_steps_offline(method: str, tmp_path: Path) -> None:
    data = "_data_stl.yaml" if method == "stl" else "_data.yaml"
    cli = run_cli(table_run_args("tydiqa", method, tmp_path, data_yaml=data, steps=4), tmp_path / "logs")
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 4
    languages = ["sw"] if method == "stl" else list(TYDIQA_LANGUAGES)
    assert cli.datamodule.task_names == languages
    for language in languages:
        assert f"val/{language}/f1" in metrics and f"val/{language}/exact_match" in metrics
    assert 0.0 <= float(metrics["val/avg/f1"]) <= 100.0
    checkpoints = Path(cli.trainer.log_dir) / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and list(checkpoints.glob("best-step=*.ckpt"))


def test_table1_configs_have_every_method_with_the_paper_hyperparameters() -> None:
    configs = table_configs("tydiqa")
    check_paper_hyperparameters("tydiqa", configs, batch_size=12)
    for name, config in configs.items():
        tasks = config["data"]["tasks"]
        languages = [t["init_args"]["language"] for t in tasks]
        assert languages == (["sw"] if name == "stl" else list(TYDIQA_LANGUAGES)), name
        assert all((t["init_args"]["max_length"], t["init_args"]["stride"]) == (384, 128) for t in tasks)
        model = config["model"]["model"]["init_args"]
        assert (model["backbone"], model["n_best"], model["max_answer_length"]) == (
            "bert-base-multilingual-cased",
            20,
            30,
        )


def test_hub_data_goes_through_the_same_pipeline(tokenizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []
    rows = {"train": TYDIQA_TRAIN, "validation": TYDIQA_VALIDATION}

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs.get("revision")))
        return datasets.Dataset.from_list(rows[split])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = TyDiQATask("ar", tokenizer, max_length=64, stride=16, max_query_length=16)
    task.setup("fit")
    assert calls == [
        ("google-research-datasets/tydiqa", "secondary_task", "train", None),
        ("google-research-datasets/tydiqa", "secondary_task", "validation", None),
    ]
    assert len(task.train_dataset) == 2 and task.val_dataset["example_id"] == ["arabic-911-1"]
