"""Tiny files in the published schemas of the paper's datasets, a tiny WordPiece tokenizer and a tiny BERT config.

The schemas are the dataset cards' field lists (Hugging Face hub, and the official SQuAD-format json files):

- TyDiQA gold passage (`google-research-datasets/tydiqa`, secondary_task), SQuAD (`rajpurkar/squad`), MLQA
  (parquet conversion of `facebook/mlqa`): id, title (not MLQA), context, question,
  answers{text: list[str], answer_start: list[int32]}.
- official SQuAD-format json (SQuAD v1.1, TyDiQA-GoldP v1.1, MLQA v1): {"data": [{"title", "paragraphs":
  [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}], "version"}.
- WikiANN (`unimelb-nlp/wikiann`): tokens: list[str], ner_tags: list[int] (O B-PER I-PER B-ORG I-ORG B-LOC I-LOC),
  langs: list[str], spans: list[str] ("PER: Barack Obama").
- MNLI (`nyu-mll/multi_nli`): promptID, pairID, premise, premise_binary_parse, premise_parse, hypothesis,
  hypothesis_binary_parse, hypothesis_parse, genre, label (0 entailment, 1 neutral, 2 contradiction).
- XNLI (`facebook/xnli`, per language): premise, hypothesis, label.
- GLUE (`nyu-mll/glue`, per task): the task's text fields (see `datamodules.glue.GLUE_SPECS`), label, idx.

Every writer returns the `data_files` mapping (hub split name -> path) that the datamodules take. The file is long
because it is mostly data: every dataset's rows sit together so that the one fixture tokenizer covers them all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

WIKIANN_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


# --------------------------------------------------------------------------- writing rows
def write_rows(path: Path, rows: Sequence[dict[str, Any]], schema: pa.Schema | None = None) -> str:
    """Rows -> parquet (with the given Arrow schema) or json lines, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        table = pa.Table.from_pylist(list(rows), schema=schema)
        pq.write_table(table, path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        raise ValueError(f"write_rows writes .parquet or .jsonl, not {path}")
    return str(path)


# --------------------------------------------------------------------------- extractive QA
QA_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("context", pa.string()),
        ("question", pa.string()),
        ("answers", pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])),
    ]
)
MLQA_SCHEMA = pa.schema([f for f in QA_SCHEMA if f.name != "title"])


def qa_row(example_id: str, context: str, question: str, answers: Iterable[str], title: str = "") -> dict[str, Any]:
    """A row whose answer_start values are the first occurrences of the answer texts in the context."""
    answers = list(answers)
    starts = []
    for text in answers:
        start = context.find(text)
        if start < 0:
            raise ValueError(f"answer {text!r} is not in the context of {example_id}")
        starts.append(start)
    return {
        "id": example_id,
        "title": title,
        "context": context,
        "question": question,
        "answers": {"text": answers, "answer_start": starts},
    }


LONG_EN = (
    "The river starts in the mountains and runs through many small villages before it reaches the plain. "
    "Farmers along the banks grow rice, maize and beans, and they sell their harvest at the weekly market. "
    "In the old town there is a stone bridge that was built by the engineers of the king many centuries ago. "
    "Travellers who cross the bridge in summer can see fishermen and children swimming in the water below. "
    "The river finally ends in a wide delta, where it flows into the Atlantic Ocean near the harbour of Porto."
)

TYDIQA_TRAIN: list[dict[str, Any]] = [
    qa_row("english-101-1", LONG_EN, "Into which ocean does the river flow?", ["Atlantic Ocean"], "River"),
    qa_row(
        "english-102-1",
        "Paris is the capital of France. It lies on the Seine.",
        "What is the capital of France?",
        ["Paris"],
    ),
    qa_row("arabic-201-1", "القاهرة هي عاصمة مصر وأكبر مدنها.", "ما هي عاصمة مصر؟", ["القاهرة"], "القاهرة"),
    qa_row("arabic-202-1", "يقع نهر النيل في أفريقيا وهو أطول نهر في العالم.", "أين يقع نهر النيل؟", ["أفريقيا"]),
    qa_row(
        "swahili-301-1",
        "Nairobi ni mji mkuu wa Kenya. Mji huo una watu wengi.",
        "Mji mkuu wa Kenya ni upi?",
        ["Nairobi"],
    ),
    qa_row("bengali-401-1", "ঢাকা বাংলাদেশের রাজধানী এবং বৃহত্তম শহর।", "বাংলাদেশের রাজধানী কী?", ["ঢাকা"]),
    qa_row(
        "korean-501-1", "서울은 대한민국의 수도이다. 한강이 서울을 흐른다.", "대한민국의 수도는 어디인가?", ["서울"]
    ),
    qa_row(
        "finnish-601-1",
        "Helsinki on Suomen pääkaupunki ja suurin kaupunki.",
        "Mikä on Suomen pääkaupunki?",
        ["Helsinki"],
    ),
    qa_row("indonesian-701-1", "Jakarta adalah ibu kota Indonesia.", "Apa ibu kota Indonesia?", ["Jakarta"]),
    qa_row("russian-801-1", "Москва является столицей России.", "Какой город является столицей России?", ["Москва"]),
    qa_row("telugu-851-1", "హైదరాబాద్ తెలంగాణ రాజధాని.", "తెలంగాణ రాజధాని ఏది?", ["హైదరాబాద్"]),
]
# A training row whose answer_start does not point at its text: dropped by the QA pipeline.
TYDIQA_BAD = {
    "id": "english-103-1",
    "title": "",
    "context": "Rome is the capital of Italy.",
    "question": "What is the capital of Italy?",
    "answers": {"text": ["Rome"], "answer_start": [5]},
}
TYDIQA_VALIDATION: list[dict[str, Any]] = [
    qa_row("english-901-1", LONG_EN, "What did the engineers of the king build?", ["a stone bridge", "stone bridge"]),
    qa_row("english-902-1", "Berlin is the capital of Germany.", "What is the capital of Germany?", ["Berlin"]),
    qa_row("arabic-911-1", "الرياض هي عاصمة المملكة العربية السعودية.", "ما هي عاصمة السعودية؟", ["الرياض"]),
    qa_row("swahili-921-1", "Dodoma ni mji mkuu wa Tanzania.", "Mji mkuu wa Tanzania ni upi?", ["Dodoma"]),
    qa_row("bengali-931-1", "কলকাতা পশ্চিমবঙ্গের রাজধানী।", "পশ্চিমবঙ্গের রাজধানী কী?", ["কলকাতা"]),
    qa_row("finnish-941-1", "Tampere on kaupunki Suomessa.", "Missä Tampere on?", ["Suomessa"]),
    qa_row("indonesian-951-1", "Bandung terletak di Jawa Barat.", "Di mana Bandung terletak?", ["Jawa Barat"]),
    qa_row("korean-961-1", "부산은 한국의 항구 도시이다.", "부산은 어떤 도시인가?", ["항구 도시"]),
    qa_row("russian-971-1", "Волга впадает в Каспийское море.", "Куда впадает Волга?", ["Каспийское море"]),
    qa_row("telugu-981-1", "విజయవాడ కృష్ణా నది ఒడ్డున ఉంది.", "విజయవాడ ఏ నది ఒడ్డున ఉంది?", ["కృష్ణా"]),
]


def write_tydiqa(directory: Path, fmt: str = "parquet", with_bad_row: bool = True) -> dict[str, str]:
    """TyDiQA gold passage (hub schema), train and validation, several languages mixed as on the hub."""
    train = TYDIQA_TRAIN + ([TYDIQA_BAD] if with_bad_row else [])
    return {
        "train": write_rows(directory / f"tydiqa-train.{fmt}", train, QA_SCHEMA),
        "validation": write_rows(directory / f"tydiqa-validation.{fmt}", TYDIQA_VALIDATION, QA_SCHEMA),
    }


def squad_json(rows: Sequence[dict[str, Any]], version: str = "1.1") -> dict[str, Any]:
    """Hub-schema rows -> the official nested SQuAD format (one article per title, one paragraph per context)."""
    articles: dict[str, dict[str, Any]] = {}
    for row in rows:
        article = articles.setdefault(row.get("title", ""), {"title": row.get("title", ""), "paragraphs": []})
        paragraph = next((p for p in article["paragraphs"] if p["context"] == row["context"]), None)
        if paragraph is None:
            paragraph = {"context": row["context"], "qas": []}
            article["paragraphs"].append(paragraph)
        answers = [
            {"text": t, "answer_start": s} for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])
        ]
        paragraph["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    return {"data": list(articles.values()), "version": version}


def write_squad_json(path: Path, rows: Sequence[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(squad_json(rows), ensure_ascii=False), encoding="utf-8")
    return str(path)


SQUAD_TRAIN: list[dict[str, Any]] = [
    qa_row("5733be284776f41900661182", LONG_EN, "What do the farmers grow?", ["rice, maize and beans"], "Farming"),
    qa_row(
        "5733be284776f41900661183", "The Eiffel Tower is in Paris.", "Where is the Eiffel Tower?", ["Paris"], "Tower"
    ),
    qa_row(
        "5733be284776f41900661184",
        "Water boils at 100 degrees.",
        "At what temperature does water boil?",
        ["100 degrees"],
        "Water",
    ),
]
SQUAD_VALIDATION: list[dict[str, Any]] = [
    qa_row(
        "56be4db0acb8001400a502ec", LONG_EN, "Where does the river start?", ["in the mountains", "mountains"], "River"
    ),
    qa_row(
        "56be4db0acb8001400a502ed",
        "The Moon orbits the Earth.",
        "What does the Moon orbit?",
        ["the Earth", "Earth"],
        "Moon",
    ),
]


def write_squad(directory: Path) -> dict[str, str]:
    """SQuAD v1.1 in the official json format (train-v1.1.json / dev-v1.1.json), to be read with data_field=data."""
    return {
        "train": write_squad_json(directory / "train-v1.1.json", SQUAD_TRAIN),
        "validation": write_squad_json(directory / "dev-v1.1.json", SQUAD_VALIDATION),
    }


MLQA_ROWS: dict[str, list[dict[str, Any]]] = {
    "de": [
        qa_row(
            "de-1", "Berlin ist die Hauptstadt von Deutschland.", "Was ist die Hauptstadt von Deutschland?", ["Berlin"]
        ),
        qa_row(
            "de-2",
            "Der Rhein fließt durch Köln und Düsseldorf.",
            "Durch welche Städte fließt der Rhein?",
            ["Köln und Düsseldorf"],
        ),
    ],
    "es": [qa_row("es-1", "Madrid es la capital de España.", "¿Cuál es la capital de España?", ["Madrid"])],
    "hi": [qa_row("hi-1", "नई दिल्ली भारत की राजधानी है।", "भारत की राजधानी क्या है?", ["नई दिल्ली"])],
    "vi": [qa_row("vi-1", "Hà Nội là thủ đô của Việt Nam.", "Thủ đô của Việt Nam là gì?", ["Hà Nội"])],
    "zh": [qa_row("zh-1", "北京是中国的首都，也是一座历史名城。", "中国的首都是哪里？", ["北京"])],
    "ar": [qa_row("ar-1", "بيروت هي عاصمة لبنان.", "ما هي عاصمة لبنان؟", ["بيروت"])],
}


def write_mlqa(directory: Path, language: str, fmt: str = "parquet") -> dict[str, str]:
    """MLQA (context language = question language) as the hub's parquet conversion (`fmt="parquet"`) or the
    official `test-context-xx-question-xx.json` files (`fmt="json"`); validation and test splits."""
    rows = MLQA_ROWS[language]
    if fmt == "json":
        return {
            split: write_squad_json(directory / split / f"{split}-context-{language}-question-{language}.json", rows)
            for split in ("validation", "test")
        }
    parquet_rows = [{k: v for k, v in r.items() if k != "title"} for r in rows]
    return {
        split: write_rows(directory / f"mlqa.{language}.{language}" / split / "0000.parquet", parquet_rows, MLQA_SCHEMA)
        for split in ("validation", "test")
    }


# --------------------------------------------------------------------------- WikiANN
WIKIANN_SCHEMA = pa.schema(
    [
        ("tokens", pa.list_(pa.string())),
        ("ner_tags", pa.list_(pa.int64())),
        ("langs", pa.list_(pa.string())),
        ("spans", pa.list_(pa.string())),
    ]
)


def wikiann_row(tagged: Sequence[tuple[str, str]], language: str) -> dict[str, Any]:
    """[(word, IOB2 tag)] -> a WikiANN row (spans as the card writes them: "PER: Barack Obama")."""
    tokens = [w for w, _ in tagged]
    tags = [WIKIANN_TAGS.index(t) for _, t in tagged]
    spans, current = [], None
    for word, tag in tagged + [("", "O")]:
        if tag.startswith("I-") and current is not None and current[0] == tag[2:]:
            current[1].append(word)
            continue
        if current is not None:
            spans.append(f"{current[0]}: {' '.join(current[1])}")
            current = None
        if tag.startswith("B-"):
            current = (tag[2:], [word])
    return {"tokens": tokens, "ner_tags": tags, "langs": [language] * len(tokens), "spans": spans}


WIKIANN_ROWS: dict[str, list[list[tuple[str, str]]]] = {
    "en": [
        [("Barack", "B-PER"), ("Obama", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")],
        [("The", "O"), ("United", "B-ORG"), ("Nations", "I-ORG"), ("met", "O"), ("in", "O"), ("Geneva", "B-LOC")],
        [("Angela", "B-PER"), ("Merkel", "I-PER"), ("led", "O"), ("Germany", "B-LOC")],
    ],
    "sw": [
        [("Rais", "O"), ("Uhuru", "B-PER"), ("Kenyatta", "I-PER"), ("alizuru", "O"), ("Nairobi", "B-LOC")],
        # "\u200b" (a zero-width space) normalises to nothing: the word must still keep its label.
        [("Benki", "B-ORG"), ("Kuu", "I-ORG"), ("\u200b", "I-ORG"), ("ya", "I-ORG"), ("Kenya", "I-ORG")],
    ],
    "de": [
        [("Angela", "B-PER"), ("Merkel", "I-PER"), ("besuchte", "O"), ("München", "B-LOC")],
        [("Die", "O"), ("Deutsche", "B-ORG"), ("Bahn", "I-ORG"), ("fährt", "O"), ("nach", "O"), ("Berlin", "B-LOC")],
    ],
}


def write_wikiann(directory: Path, language: str, fmt: str = "parquet", long_words: int = 0) -> dict[str, str]:
    """One WikiANN language, train/validation/test (the same tiny sentences in each; languages without their own
    sentences get the English ones). `long_words` > 0 adds a sentence of that many words to validation."""
    rows = [wikiann_row(sentence, language) for sentence in WIKIANN_ROWS.get(language, WIKIANN_ROWS["en"])]
    validation = list(rows)
    if long_words:
        validation.append(
            wikiann_row([(f"word{i % 7}", "B-LOC" if i % 5 == 0 else "O") for i in range(long_words)], language)
        )
    return {
        split: write_rows(directory / language / f"{split}.{fmt}", split_rows, WIKIANN_SCHEMA)
        for split, split_rows in (("train", rows), ("validation", validation), ("test", rows))
    }


# --------------------------------------------------------------------------- NLI
NLI_PAIRS = [
    ("A man is playing a guitar on stage.", "A man is performing music.", 0),
    ("A man is playing a guitar on stage.", "The stage is empty.", 2),
    ("Two dogs run across a green field.", "The dogs are outside.", 0),
    ("Two dogs run across a green field.", "The dogs are chasing a ball.", 1),
    ("A woman reads a book in the library.", "A woman is sleeping at home.", 2),
    ("Children are building a sandcastle.", "Kids are at the beach.", 1),
]


def write_mnli(directory: Path) -> dict[str, str]:
    """MNLI as json lines in the hub schema (with the parse fields), train and both validation splits."""
    rows = []
    for i, (premise, hypothesis, label) in enumerate(NLI_PAIRS):
        rows.append(
            {
                "promptID": 1000 + i,
                "pairID": f"{1000 + i}e",
                "premise": premise,
                "premise_binary_parse": "( " + premise + " )",
                "premise_parse": "(ROOT " + premise + ")",
                "hypothesis": hypothesis,
                "hypothesis_binary_parse": "( " + hypothesis + " )",
                "hypothesis_parse": "(ROOT " + hypothesis + ")",
                "genre": "fiction",
                "label": label,
            }
        )
    return {
        split: write_rows(directory / f"mnli-{split}.jsonl", rows)
        for split in ("train", "validation_matched", "validation_mismatched")
    }


XNLI_PAIRS: dict[str, list[tuple[str, str, int]]] = {
    "de": [("Ein Mann spielt Gitarre.", "Ein Mann macht Musik.", 0), ("Ein Hund schläft.", "Der Hund rennt.", 2)],
    "sw": [("Mtoto anasoma kitabu.", "Mtoto yuko shuleni.", 1), ("Mbwa analala.", "Mbwa anakimbia.", 2)],
    "zh": [("一个男人在弹吉他。", "一个男人在演奏音乐。", 0), ("狗在睡觉。", "狗在跑。", 2)],
}
XNLI_SCHEMA = pa.schema([("premise", pa.string()), ("hypothesis", pa.string()), ("label", pa.int64())])


def write_xnli(directory: Path, language: str) -> dict[str, str]:
    """One XNLI language, validation and test (languages without their own pairs get the German ones)."""
    rows = [{"premise": p, "hypothesis": h, "label": y} for p, h, y in XNLI_PAIRS.get(language, XNLI_PAIRS["de"])]
    return {
        split: write_rows(directory / language / f"{split}.parquet", rows, XNLI_SCHEMA)
        for split in ("validation", "test")
    }


# --------------------------------------------------------------------------- GLUE
GLUE_ROWS: dict[str, list[dict[str, Any]]] = {
    "cola": [
        {"sentence": "The cat sat on the mat.", "label": 1},
        {"sentence": "Cat the mat on sat the.", "label": 0},
        {"sentence": "She reads books.", "label": 1},
        {"sentence": "Books she reads reads.", "label": 0},
    ],
    "sst2": [
        {"sentence": "a wonderful , moving film", "label": 1},
        {"sentence": "dull and far too long", "label": 0},
        {"sentence": "the best film of the year", "label": 1},
        {"sentence": "a waste of time", "label": 0},
    ],
    "mrpc": [
        {"sentence1": "The company posted a profit.", "sentence2": "The firm reported a profit.", "label": 1},
        {"sentence1": "He left early.", "sentence2": "The weather was cold.", "label": 0},
        {"sentence1": "Stocks rose on Monday.", "sentence2": "On Monday stocks went up.", "label": 1},
    ],
    "qqp": [
        {"question1": "How do I learn Python?", "question2": "What is the best way to learn Python?", "label": 1},
        {"question1": "How tall is Everest?", "question2": "Where is Paris?", "label": 0},
        {"question1": "Why is the sky blue?", "question2": "What makes the sky blue?", "label": 1},
    ],
    "stsb": [
        {"sentence1": "A man is playing a flute.", "sentence2": "A man is playing a flute.", "label": 5.0},
        {"sentence1": "A woman is cooking.", "sentence2": "A man is driving.", "label": 0.4},
        {"sentence1": "A dog runs.", "sentence2": "A dog is running.", "label": 4.6},
        {"sentence1": "Kids play football.", "sentence2": "Children play a game.", "label": 3.2},
    ],
    "mnli": [{"premise": p, "hypothesis": h, "label": y} for p, h, y in NLI_PAIRS],
    "qnli": [
        {"question": "Where is the Eiffel Tower?", "sentence": "The Eiffel Tower is in Paris.", "label": 0},
        {"question": "Who wrote Hamlet?", "sentence": "Paris has many museums.", "label": 1},
        {"question": "What do cows eat?", "sentence": "Cows eat grass.", "label": 0},
    ],
    "rte": [
        {"sentence1": "Dana Reeve died of lung cancer.", "sentence2": "Dana Reeve is dead.", "label": 0},
        {"sentence1": "The dog barked all night.", "sentence2": "The cat slept.", "label": 1},
        {"sentence1": "Oil prices fell sharply.", "sentence2": "Oil became cheaper.", "label": 0},
    ],
}
GLUE_VALIDATION_SPLIT = {"mnli": "validation_matched"}


def write_glue(directory: Path, task: str, test_split: bool = True) -> dict[str, str]:
    """One GLUE task in the hub schema (+ idx): train, its validation split, and an unlabelled test split (-1)."""
    rows = [{**r, "idx": i} for i, r in enumerate(GLUE_ROWS[task])]
    files = {
        "train": write_rows(directory / task / "train.parquet", rows),
        GLUE_VALIDATION_SPLIT.get(task, "validation"): write_rows(directory / task / "validation.parquet", rows),
    }
    if test_split:
        unlabelled = [{**r, "label": -1 if task != "stsb" else -1.0} for r in rows]
        files["test"] = write_rows(directory / task / "test.parquet", unlabelled)
    return files


# --------------------------------------------------------------------------- tokenizer and model
def all_fixture_texts() -> list[str]:
    texts: list[str] = []
    for row in TYDIQA_TRAIN + TYDIQA_VALIDATION + SQUAD_TRAIN + SQUAD_VALIDATION:
        texts += [row["context"], row["question"]]
    for rows in MLQA_ROWS.values():
        for row in rows:
            texts += [row["context"], row["question"]]
    for sentences in WIKIANN_ROWS.values():
        texts += [" ".join(w for w, _ in s) for s in sentences]
    texts += [p + " " + h for p, h, _ in NLI_PAIRS]
    texts += [p + " " + h for pairs in XNLI_PAIRS.values() for p, h, _ in pairs]
    texts += [" ".join(str(v) for v in r.values()) for rows in GLUE_ROWS.values() for r in rows]
    return texts


def build_tokenizer(directory: Path, min_count: int = 2) -> str:
    """A BERT-style WordPiece tokenizer (cased, CJK characters split, [CLS] a [SEP] b [SEP] with token types)
    saved as a Hugging Face fast tokenizer; returns its directory. Its vocabulary is built deterministically
    (WordPiece training breaks ties in a random order): every character of the fixture texts, alone and as a
    "##" continuation, plus the words seen at least `min_count` times, so rarer words split into several
    sub-tokens."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in all_fixture_texts():
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters)]
    vocab += sorted(w for w, n in words.items() if n >= min_count and len(w) > 1)
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return str(directory)


def tiny_bert_config(vocab_size: int, max_positions: int = 128) -> dict[str, Any]:
    """A 2-layer BERT of hidden size 16 (`EncoderClassifier(config=...)`)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": max_positions,
    }


# --------------------------------------------------------------------------- files as distributed (not the hub)
# The layouts of the files users download: XNLI-1.0 and GLUE tsv, MultiNLI 1.0 jsonl, PAN-X CoNLL-style text. Their
# rows are those of the hub-schema writers above, so that a task reading either gives the same features.
XNLI_TSV_HEADER = (
    "language gold_label sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse sentence1 "
    "sentence2 promptID pairID genre label1 label2 label3 label4 label5 sentence1_tokenized sentence2_tokenized match"
).split()


def write_tsv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[Any]], bom: bool = False) -> str:
    """Tab-separated lines, written as they are (no quoting), with an optional header and UTF-8 byte-order mark."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([list(header)] if header is not None else []) + [list(r) for r in rows]
    text = "".join("\t".join(str(v) for v in line) + "\n" for line in lines)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return str(path)


def write_xnli_tsv(path: Path, languages: Sequence[str]) -> str:
    """One XNLI-1.0 file (xnli.dev.tsv / xnli.test.tsv): every language's pairs, label names in gold_label."""
    rows = []
    for language in languages:
        for i, (premise, hypothesis, label) in enumerate(XNLI_PAIRS[language]):
            name = ("entailment", "neutral", "contradiction")[label]
            parses = ["", "", "", ""] if language != "en" else ["( x )", "( y )", "(ROOT x)", "(ROOT y)"]
            rows.append(
                [language, name, *parses, premise, hypothesis, 10 + i, 20 + i, "facetoface"]
                + [name] * 5
                + [premise, hypothesis, "True"]
            )
    return write_tsv(path, XNLI_TSV_HEADER, rows)


def multinli_record(premise: str, hypothesis: str, gold_label: str, index: int) -> dict[str, Any]:
    """A line of multinli_1.0_*.jsonl (its keys; label names, "-" when the annotators did not agree)."""
    return {
        "annotator_labels": [gold_label if gold_label != "-" else "neutral"],
        "genre": "fiction",
        "gold_label": gold_label,
        "pairID": f"{1000 + index}e",
        "promptID": 1000 + index,
        "sentence1": premise,
        "sentence1_binary_parse": "( " + premise + " )",
        "sentence1_parse": "(ROOT " + premise + ")",
        "sentence2": hypothesis,
        "sentence2_binary_parse": "( " + hypothesis + " )",
        "sentence2_parse": "(ROOT " + hypothesis + ")",
    }


def write_multinli_jsonl(path: Path, unlabelled: int = 0) -> str:
    """NLI_PAIRS as MultiNLI 1.0 jsonl, plus `unlabelled` rows whose gold_label is "-"."""
    names = ("entailment", "neutral", "contradiction")
    records = [multinli_record(p, h, names[y], i) for i, (p, h, y) in enumerate(NLI_PAIRS)]
    records += [multinli_record(NLI_PAIRS[0][0], "A man sleeps.", "-", 100 + i) for i in range(unlabelled)]
    return write_rows(path, records)


GLUE_LABEL_NAMES = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}


GLUE_SPECS_TEXT = {
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


def glue_tsv_lines(task: str) -> tuple[list[str] | None, list[list[Any]]]:
    """GLUE_ROWS[task] as the header and lines of GLUE's own train.tsv / dev.tsv (glue_data/<TASK>/)."""
    rows = GLUE_ROWS[task]
    if task == "cola":  # no header: source, label, original label ("*" = unacceptable), sentence
        return None, [["gj04", r["label"], "" if r["label"] else "*", r["sentence"]] for r in rows]
    if task == "sst2":
        return ["sentence", "label"], [[r["sentence"], r["label"]] for r in rows]
    if task == "mrpc":
        header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
        return header, [[r["label"], 100 + i, 200 + i, r["sentence1"], r["sentence2"]] for i, r in enumerate(rows)]
    if task == "qqp":
        header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        return header, [[i, 2 * i, 2 * i + 1, r["question1"], r["question2"], r["label"]] for i, r in enumerate(rows)]
    if task == "stsb":
        header = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()
        return header, [
            [i, "main-captions", "MSRvid", "2012test", i, "none", "none", r["sentence1"], r["sentence2"], r["label"]]
            for i, r in enumerate(rows)
        ]
    if task == "mnli":
        header = (
            "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
            "sentence2_parse sentence1 sentence2 label1 gold_label"
        ).split()
        names = GLUE_LABEL_NAMES["mnli"]
        return header, [
            [i, 10 + i, f"{10 + i}e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", r["premise"]]
            + [r["hypothesis"], names[r["label"]], names[r["label"]]]
            for i, r in enumerate(rows)
        ]
    fields = GLUE_SPECS_TEXT[task]  # qnli, rte, wnli: index, the two texts, the label name or "0"/"1"
    label = (lambda y: y) if task == "wnli" else (lambda y: GLUE_LABEL_NAMES[task][y])
    return ["index", *fields, "label"], [[i, *(r[f] for f in fields), label(r["label"])] for i, r in enumerate(rows)]


def write_glue_tsv(directory: Path, task: str) -> dict[str, str]:
    """One GLUE task as GLUE's train.tsv and dev.tsv (MNLI: dev_matched.tsv); MRPC with MSR's byte-order mark."""
    header, rows = glue_tsv_lines(task)
    validation = GLUE_VALIDATION_SPLIT.get(task, "validation")
    dev = "dev_matched.tsv" if task == "mnli" else "dev.tsv"
    return {
        "train": write_tsv(directory / task / "train.tsv", header, rows, bom=task == "mrpc"),
        validation: write_tsv(directory / task / dev, header, rows, bom=task == "mrpc"),
    }


def write_panx(directory: Path, language: str, raw: bool = False) -> dict[str, str]:
    """WIKIANN_ROWS[language] as PAN-X: XTREME's `{split}-{lang}.tsv` (token<TAB>tag), or with `raw` the PAN-X
    download's `{lang}/train`, `dev`, `test` (lang:token<TAB>tag, no suffix); sentences end with a blank line."""
    sentences = WIKIANN_ROWS.get(language, WIKIANN_ROWS["en"])
    prefix = f"{language}:" if raw else ""
    text = "".join("".join(f"{prefix}{w}\t{t}\n" for w, t in s) + "\n" for s in sentences)
    files = {}
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        path = directory / language / name if raw else directory / f"{name}-{language}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files[split] = str(path)
    return files
