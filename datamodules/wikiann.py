"""WikiANN NER (paper §4.2, Table 2): one task per language, all sharing one token-classification head.

Hub: `unimelb-nlp/wikiann` (the Rahimi et al. 2019 splits used by XTREME), one config per language, splits
train / validation / test, fields tokens (words), ner_tags (ids of `WIKIANN_LABELS`), langs, spans. Offline: the
same splits as parquet or json(l) files via `data_files`, or PAN-X as XTREME distributes it (`panx.py`): its
`{split}-{lang}.tsv` files are read as CoNLL-style text by their suffix, and the raw PAN-X files (`train`, `dev`,
`test`, no suffix) with `file_format: conll`.

Labels follow XTREME: the tag of a word goes on its first sub-token, the other sub-tokens and the special tokens
get -100 (no loss, skipped by the span F1); a word the tokenizer turns into no token at all is replaced by the
unknown token, so every word keeps its label. Sentences are cut at `max_length` (128) tokens; the words past the
cut are then not scored (reported as a count; WikiANN sentences rarely come close).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_warn

from datamodules.file_formats import FILE_BUILDERS, is_tsv, suffix_of
from datamodules.hf_loading import IGNORE_INDEX, Encoder, Kind, load_split, split_source
from datamodules.hf_task import HFTaskDataModule
from datamodules.panx import CONLL_OPTIONS, ConllSentences

WIKIANN_LABELS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


@dataclass(frozen=True)
class NEREncoder(Encoder):
    """Words + tags -> sub-token ids + labels on first sub-tokens (plus `num_words` and `words_kept`, the words
    left after truncation, for the truncation report)."""

    num_labels: int = len(WIKIANN_LABELS)

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        tok = self.tok
        words = [[str(w) for w in ws] for ws in batch["tokens"]]
        encoded = tok(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        # Words that give no sub-token would lose their label: replace them by the unknown token (XTREME).
        patched = False
        for i, ws in enumerate(words):
            present = {w for w in encoded.word_ids(i) if w is not None}
            truncated = len(encoded["input_ids"][i]) >= self.max_length
            last = max(present, default=-1)
            for w in range(len(ws)):
                if w not in present and (w < last or not truncated):
                    if tok.unk_token is None:
                        raise ValueError(
                            f"row {indices[i]}: word {ws[w]!r} gives no token and the tokenizer has no unk"
                        )
                    ws[w] = tok.unk_token
                    patched = True
        if patched:
            encoded = tok(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        out: dict[str, list[Any]] = {k: list(v) for k, v in encoded.items()}
        out["labels"], out["words_kept"], out["num_words"] = [], [], []
        for i, tags in enumerate(batch["ner_tags"]):
            if len(tags) != len(words[i]):
                raise ValueError(f"row {indices[i]}: {len(words[i])} tokens but {len(tags)} ner_tags")
            bad = [t for t in tags if not 0 <= int(t) < self.num_labels]
            if bad:
                raise ValueError(f"row {indices[i]}: ner_tags {bad} outside [0, {self.num_labels})")
            labels, previous, kept = [], None, 0
            for w in encoded.word_ids(i):
                if w is None or w == previous:
                    labels.append(IGNORE_INDEX)
                else:
                    labels.append(int(tags[w]))
                    kept += 1
                previous = w
            out["labels"].append(labels)
            out["words_kept"].append(kept)
            out["num_words"].append(len(tags))
        return out


class WikiANNTask(HFTaskDataModule):
    """One WikiANN language as a task (name = the language code unless given); batch 16, max length 128."""

    REQUIRED_COLUMNS = ("tokens", "ner_tags")

    def __init__(
        self,
        language: str,
        tokenizer: str,
        name: str | None = None,
        *,
        path: str | None = "unimelb-nlp/wikiann",
        config_name: str | None = None,
        file_format: Literal["conll"] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            language: the language code (a config of unimelb-nlp/wikiann).
            tokenizer: as in `HFTaskDataModule`.
            name: the task name (default: the language code).
            path, config_name: the hub dataset and its config (default: the language).
            file_format: "conll" to read every data file as PAN-X's `token<TAB>tag` lines whatever its name (the
                raw PAN-X files have no suffix); None: by suffix (`.tsv`, `.tsv.gz`: PAN-X lines; parquet, json,
                jsonl: the hub schema).
            **kwargs: the loading arguments of `HFTaskDataModule`.
        """
        if not language:
            raise ValueError("WikiANNTask needs a language (a config of unimelb-nlp/wikiann, e.g. 'sw')")
        if file_format not in (None, "conll"):
            raise ValueError(f"WikiANNTask: file_format must be 'conll' or null, got {file_format!r}")
        super().__init__(
            name=name or language, tokenizer=tokenizer, path=path, config_name=config_name or language, **kwargs
        )
        self.language = language
        self.label_names = WIKIANN_LABELS
        self.file_format = file_format

    def encoder(self) -> NEREncoder:
        return NEREncoder(self.tokenizer_name, self.max_length, len(WIKIANN_LABELS))

    def pad_values(self) -> dict[str, int]:
        return {**super().pad_values(), "labels": IGNORE_INDEX}

    def reads_conll(self, split: str) -> bool:
        """Whether the split's files are PAN-X text (by `file_format`, else by their `.tsv` suffix)."""
        if self.data_files is None or split not in self.data_files:
            return False
        files = self.data_files[split]
        files = [files] if isinstance(files, str) else list(files)
        if self.file_format == "conll" or all(is_tsv(f) for f in files):
            return True
        unknown = [f for f in files if suffix_of(f) is None]
        if unknown:
            raise ValueError(
                f"task '{self.name}': data file {unknown[0]} is not one of {', '.join(FILE_BUILDERS)}; for raw PAN-X "
                "files (token<TAB>tag lines, no suffix) set file_format: conll"
            )
        return False

    def load_raw(self, split: str) -> Any:
        if not self.reads_conll(split):
            return super().load_raw(split)
        return load_split(
            split, data_files=self.data_files, cache_dir=self.cache_dir, builder="text", options=CONLL_OPTIONS
        )

    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        if self.reads_conll(split):
            source = split_source(self.data_files, split, self.source())
            parse = ConllSentences(WIKIANN_LABELS, self.config_name or self.language, source)
            raw = raw.map(parse, batched=True, remove_columns=raw.column_names, desc=f"{self.name}: PAN-X lines")
        self.check_columns(raw, split)
        self.check_language(raw, split)
        before = len(raw)
        raw = raw.filter(lambda row: len(row["tokens"]) > 0, desc=f"{self.name}: non-empty sentences")
        if len(raw) < before:
            rank_zero_warn(f"task '{self.name}': split '{split}': dropped {before - len(raw)} empty sentences")
        return raw

    def check_language(self, raw: Any, split: str) -> None:
        """The rows name their language (column `langs`, one code per token): a task given another language's
        files (a `data_files` copied to every task by a YAML anchor, a mislabelled download) is refused."""
        if "langs" not in raw.column_names:
            return
        expected = self.config_name or self.language
        seen = sorted({code for codes in raw["langs"] for code in (codes or [])})
        if seen and seen != [expected]:
            raise ValueError(
                f"task '{self.name}' (language {expected}): split '{split}' of {self.source()} holds rows of "
                f"language {', '.join(seen)} (column 'langs'); give this task the files of its own language"
            )

    def _build(self, split: str, kind: Kind) -> Any:
        features = super()._build(split, kind)
        cut = sum(1 for kept, total in zip(features["words_kept"], features["num_words"]) if kept < total)
        if cut:
            rank_zero_warn(
                f"task '{self.name}': split '{split}': {cut} of {len(features)} sentences are longer than "
                f"max_length={self.max_length} tokens; their words past the cut are not scored"
            )
        return features.remove_columns(["words_kept", "num_words"])
