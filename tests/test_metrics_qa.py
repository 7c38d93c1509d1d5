"""SQuAD v1.1 and MLQA exact match / F1 against hand-worked values and the official scripts' rules."""

from __future__ import annotations

import string
import unicodedata

import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from lightning_modules.metrics.qa import (
    MLQAMetric,
    SquadMetric,
    exact_match_score,
    f1_score,
    is_mlqa_punctuation,
    mlqa_normalize_answer,
    squad_normalize_answer,
)

# ----------------------------------------------------------------------------- SQuAD normalization


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),  # article + punctuation + case
        ("  New\tYork \n", "new york"),  # whitespace fix
        ("Anthem of an apple", "anthem of apple"),  # \b: 'an' inside 'Anthem' stays
        ("U.S.A.", "usa"),  # punctuation removed before articles: no 'a' word appears
        ("A-team", "ateam"),  # '-' removed, so 'a' is no longer a word
        ("the the a an", ""),  # nothing left
        ("$5.00 + tax", "500 tax"),  # $ and + are in string.punctuation
        ("“Hello”, ¿qué?", "“hello” ¿qué"),  # Unicode quotes and ¿ are NOT in string.punctuation
    ],
)
def test_squad_normalize(text: str, expected: str) -> None:
    assert squad_normalize_answer(text) == expected


def test_squad_scores_hand_worked() -> None:
    norm = squad_normalize_answer
    # tokens: pred [cat, sat, on, mat], gold [cat, on, mat]: P = 3/4, R = 1, F1 = 6/7
    assert f1_score("the cat sat on the mat", "a cat on a mat", norm) == pytest.approx(6 / 7)
    assert exact_match_score("The cat.", "cat", norm) == 1.0
    # both normalize to "": EM 1 but F1 0 (v1.1 gives 0 when no token is shared)
    assert exact_match_score("the", "a", norm) == 1.0
    assert f1_score("the", "a", norm) == 0.0
    # repeated tokens count with multiplicity: pred [paris, paris], gold [paris]: P = 1/2, R = 1
    assert f1_score("Paris Paris", "Paris", norm) == pytest.approx(2 / 3)


def test_squad_metric_max_over_golds_and_mean() -> None:
    metric = SquadMetric()
    metric.update(
        ["Denver Broncos", "the cat sat on the mat"],
        [["Denver Broncos", "The Denver Broncos", "Broncos"], ["a cat on a mat"]],
    )
    # HF `answers` dict format; max over golds: [denver, broncos] -> F1 1/2, [broncos] -> F1 2/3
    metric.update(["the Broncos team"], [{"text": ["Denver Broncos", "Broncos"], "answer_start": [0, 7]}])
    metric.update(["the"], ["a"])  # a single gold string; EM 1, F1 0
    out = metric.compute()
    assert set(out) == {"exact_match", "f1"}
    assert out["exact_match"].item() == pytest.approx(100 * 2 / 4)
    assert out["f1"].item() == pytest.approx(100 * (1 + 6 / 7 + 2 / 3 + 0) / 4, rel=1e-6)
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert metric.compute()["f1"].item() == 0.0  # no examples -> 0, not NaN


def test_squad_metric_bad_input() -> None:
    metric = SquadMetric()
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metric.update(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no gold answer"):
        metric.update(["a"], [[]])
    with pytest.raises(TypeError, match="must be a string"):
        metric.update([3], [["3"]])
    with pytest.raises(ValueError, match="'text' key"):
        metric.update(["a"], [{"answer": ["a"]}])


# ----------------------------------------------------------------------------- MLQA normalization


def test_mlqa_punctuation_is_the_scripts_set() -> None:
    """PUNCT = {chr(i) for i in range(sys.maxunicode) if category starts with 'P'} | string.punctuation.

    Checked on the Basic Multilingual Plane (every script MLQA covers) to keep the test fast."""
    script_punct = {chr(i) for i in range(0x10000) if unicodedata.category(chr(i)).startswith("P")}
    script_punct |= set(string.punctuation)
    ours = {chr(i) for i in range(0x10000) if is_mlqa_punctuation(chr(i))}
    assert ours == script_punct
    assert {"¿", "¡", "“", "”", "。", "，", "《", "》", "「", "।", "،", "$", "^", "|"} <= ours
    assert not {"€", "£", "©", "a", "年", " "} & ours


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The “quoted” answer.", "en", "quoted answer"),  # Unicode quotes go, unlike SQuAD v1.1
        ("€5 and $5", "en", "€5 and 5"),  # € is a symbol (Sc), not in PUNCT; $ is in string.punctuation
        ("¿Qué es El Niño?", "es", "qué es niño"),
        ("Unas casas de Carlos", "es", "casas de carlos"),  # 'los' inside 'Carlos' stays
        ("Der Bundestag", "de", "bundestag"),
        ("Einstein und dem Haus", "de", "einstein und haus"),  # 'ein' inside a word stays
        ("cái bàn của tôi, những", "vi", "bàn tôi"),
        ("भारत। a cat", "hi", "भारत a cat"),  # danda is punctuation; Hindi removes no article
        ("الكتاب", "ar", "كتاب"),  # the article ال
        ("مع الكتاب", "ar", "مع كتاب"),
        ("سؤال", "ar", "سؤ"),  # the script removes every 'ال', also at a word's end (faithful quirk)
        ("2008年", "zh", "2008 年"),  # mixed segmentation: Latin digits stay together, CJK split
        ("iPhone 6s手机。", "zh", "iphone 6s 手 机"),
        ("《红楼梦》", "zh", "红 楼 梦"),
        ("The Beatles乐队", "zh", "the beatles 乐 队"),  # no article removal for zh
        ("  多  空格 ", "zh", "多 空 格"),
    ],
)
def test_mlqa_normalize(text: str, lang: str, expected: str) -> None:
    assert mlqa_normalize_answer(text, lang) == expected


def test_mlqa_scores_hand_worked() -> None:
    def zh(s: str) -> str:
        return mlqa_normalize_answer(s, "zh")

    # mixed-script: [2008] vs [2008, 年]: P = 1, R = 1/2, F1 = 2/3; SQuAD sees one token each -> 0
    assert f1_score("2008", "2008年", zh) == pytest.approx(2 / 3)
    assert f1_score("2008", "2008年", squad_normalize_answer) == 0.0
    # per character: [北 京 大 学] vs [北 京]: P = 1/2, R = 1
    assert f1_score("北京大学", "北京", zh) == pytest.approx(2 / 3)
    assert exact_match_score("《红楼梦》", "红楼梦", zh) == 1.0

    metric = MLQAMetric("zh")
    metric.update(["2008", "北京大学", "《红楼梦》"], [["2008年"], ["北京", "清华大学"], ["红楼梦"]])
    out = metric.compute()
    # example 2: vs 清华大学 [清 华 大 学] shares [大 学]: F1 1/2 < 2/3, so the max is 2/3
    assert out["exact_match"].item() == pytest.approx(100 / 3)
    assert out["f1"].item() == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3, rel=1e-6)

    ar = MLQAMetric("ar")
    ar.update(["الكتاب الأحمر"], [["كتاب"]])  # [كتاب, أحمر] vs [كتاب]: P = 1/2, R = 1
    assert ar.compute()["f1"].item() == pytest.approx(100 * 2 / 3, rel=1e-6)

    en = MLQAMetric("en")
    en.update(["“The Beatles”"], ["Beatles"])  # EM only with Unicode punctuation removed
    squad = SquadMetric()
    squad.update(["“The Beatles”"], ["Beatles"])
    assert en.compute()["exact_match"].item() == 100.0
    assert squad.compute()["exact_match"].item() == 0.0


def test_mlqa_unknown_language() -> None:
    with pytest.raises(ValueError, match="unknown MLQA language 'fr'"):
        MLQAMetric("fr")
    with pytest.raises(ValueError, match="unknown MLQA language"):
        mlqa_normalize_answer("x", "ja")


# ----------------------------------------------------------------------------- DDP safety


def test_states_are_sum_reduced_tensors() -> None:
    for metric in (SquadMetric(), MLQAMetric("de")):
        assert set(metric._defaults) == {"exact_match_sum", "f1_sum", "total"}
        assert all(fx is dim_zero_sum for fx in metric._reductions.values())
        assert all(isinstance(metric._defaults[k], torch.Tensor) for k in metric._defaults)


def test_merged_shards_equal_one_pass() -> None:
    preds = ["Denver Broncos", "the cat sat on the mat", "the Broncos team", "the", "nothing"]
    golds = [["Denver Broncos"], ["a cat on a mat"], ["Denver Broncos", "Broncos"], ["a"], ["something"]]
    whole = SquadMetric()
    whole.update(preds, golds)
    rank0, rank1 = SquadMetric(), SquadMetric()
    rank0.update(preds[:2], golds[:2])
    rank1.update(preds[2:], golds[2:])
    rank0.merge_state(rank1)
    for key, value in whole.compute().items():
        assert rank0.compute()[key].item() == pytest.approx(value.item())
