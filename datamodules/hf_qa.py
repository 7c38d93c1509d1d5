"""Extractive QA (TyDiQA gold passage, SQuAD, MLQA): question + passage windows, answer spans, evaluation batches
of whole examples. The raw-row helpers (`flatten_squad_json`, `_answer_matches`) stay in `hf_base`: `datasets`
fingerprints them by module and name, so moving them would rebuild every cached split."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Sampler

from datamodules.hf_base import QA_COLUMNS, _answer_dict, _answer_matches, flatten_squad_json
from datamodules.hf_loading import Encoder, Kind, split_source
from datamodules.hf_task import HFTaskDataModule


class ExampleGroupedBatchSampler(Sampler[list[int]]):
    """Evaluation batches of whole examples: all windows of a question land in the same batch, so every batch
    can be turned into text answers on its own. A batch holds at most `max_features` features, unless one
    example alone has more."""

    def __init__(self, example_index: Sequence[int], max_features: int) -> None:
        if max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {max_features}")
        self.batches: list[list[int]] = []
        current: list[int] = []
        group: list[int] = []
        seen: set[int] = set()
        previous = None
        for feature, example in enumerate(list(example_index) + [None]):  # type: ignore[list-item]
            if example != previous and group:
                if previous in seen:
                    raise ValueError(f"the features of example {previous} are not contiguous")
                seen.add(previous)  # type: ignore[arg-type]
                if current and len(current) + len(group) > max_features:
                    self.batches.append(current)
                    current = []
                current.extend(group)
                group = []
            if example is not None:
                group.append(feature)
            previous = example
        if current:
            self.batches.append(current)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ExtractiveQATask(HFTaskDataModule):
    """Question + passage, split into windows of `max_length` tokens overlapping by `stride` tokens.

    Training features: input ids and the answer's token start/end (from the tokenizer's offsets; windows that do
    not contain the whole answer point at position 0, the [CLS] token). Evaluation features also keep
    `example_index` (position of the question in the split), `example_id`, `context`, the gold `answers` (texts)
    and `offset_mapping` (character span of each context token, (-1, -1) elsewhere), and are batched by whole
    examples so the model can turn start/end logits into text answers batch by batch.

    Questions are stripped of leading whitespace (as Hugging Face's run_qa does) and cut to `max_query_length`
    tokens (XTREME's 64), which keeps the window stride below the room left for the passage.

    Training rows whose answer text is not found at its `answer_start` in the context are dropped (counted and
    reported), as XTREME's SQuAD-style preprocessing drops answers it cannot locate.
    """

    REQUIRED_COLUMNS = QA_COLUMNS

    def __init__(
        self,
        name: str,
        tokenizer: str,
        stride: int = 128,
        max_query_length: int = 64,
        *,
        batch_size: int = 12,
        max_length: int = 384,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            name: the task name.
            tokenizer: as in `HFTaskDataModule`.
            stride: tokens shared by consecutive windows of a long passage (XTREME: 128).
            max_query_length: the question is cut to this many tokens (XTREME: 64).
            batch_size: training features per batch (paper §4.2: 12).
            max_length: tokens per window (XTREME: 384).
            **kwargs: the loading arguments of `HFTaskDataModule`.
        """
        super().__init__(name=name, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length, **kwargs)
        if max_query_length < 1:
            raise ValueError(f"task '{name}': max_query_length must be >= 1, got {max_query_length}")
        # [CLS] question [SEP] passage [SEP]: the passage gets at least max_length - max_query_length - 3 tokens,
        # and the tokenizer requires the stride to be smaller than that.
        room = max_length - max_query_length - 3
        if not 0 <= stride < room:
            raise ValueError(
                f"task '{name}': stride must be in [0, {room}) = [0, max_length - max_query_length - 3), "
                f"got stride={stride} with max_length={max_length}, max_query_length={max_query_length}"
            )
        self.stride = stride
        self.max_query_length = max_query_length

    def pad_values(self) -> dict[str, int]:
        return {**super().pad_values(), "offset_mapping": -1}

    # ----------------------------------------------------------------- raw rows
    def prepare_raw(self, raw: Any, split: str, kind: Kind) -> Any:
        if "paragraphs" in raw.column_names:  # official SQuAD-format json (SQuAD, MLQA, TyDiQA-GoldP files)
            raw = raw.map(flatten_squad_json, batched=True, remove_columns=raw.column_names, desc="flattening")
        elif {"data", "version"} <= set(raw.column_names) and not set(QA_COLUMNS) & set(raw.column_names):
            raise ValueError(
                f"task '{self.name}': split '{split}' of {split_source(self.data_files, split, self.source())} has "
                f"the columns {raw.column_names} of an official SQuAD-format file (its questions sit under 'data'): "
                "set data_field: data"
            )
        self.check_columns(raw, split)
        raw = self.select_rows(raw, split)
        self.check_gold_answers(raw, split, kind)
        if kind == "train":
            before = len(raw)
            raw = raw.filter(_answer_matches, desc=f"{self.name}: checking answers")
            dropped = before - len(raw)
            if dropped:
                rank_zero_warn(
                    f"task '{self.name}': dropped {dropped} of {before} training examples of split '{split}' whose "
                    "answer text is not at its answer_start in the context"
                )
        return raw

    def check_gold_answers(self, raw: Any, split: str, kind: Kind) -> None:
        """Refuses a split whose gold answers were blanked (text ""), as XTREME's download script leaves TyDiQA-GoldP
        dev and MLQA test: scored against them every prediction gets 0, and trained on them the model learns
        nothing. An evaluated question also needs at least one answer; a training question may have none (its
        windows then point at [CLS])."""
        blank = [
            example_id
            for example_id, answers in zip(raw["id"], raw["answers"])
            if _is_blank(_answer_dict(answers, example_id)["text"], kind)
        ]
        if blank:
            raise ValueError(
                f"task '{self.name}': split '{split}' of {self.source()}: {len(blank)} of {len(raw)} questions have "
                f"no gold answer text in column 'answers' (e.g. ids {blank[:3]}). XTREME's download script "
                "(utils_preprocess.py, remove_qa_test_annotations) blanks the answers of TyDiQA-GoldP dev and MLQA "
                "test in place, and every prediction would score 0. Use the files as originally published "
                "(tydiqa-goldp-v1.1-dev.json; MLQA_V1/dev and MLQA_V1/test) or the hub dataset."
            )

    def select_rows(self, raw: Any, split: str) -> Any:
        """The rows of this task (TyDiQA keeps one language); all rows by default."""
        return raw

    def encoder(self) -> QAEncoder:
        return QAEncoder(self.tokenizer_name, self.max_length, self.stride, self.max_query_length)

    # ----------------------------------------------------------------- loaders
    def _eval_loader(self, dataset: Any, split: str) -> DataLoader:
        if dataset is None or len(dataset) == 0:
            raise ValueError(f"task '{self.name}' has an empty {split} split")
        sampler = ExampleGroupedBatchSampler(dataset["example_index"], self.eval_batch_size)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate)


def _is_blank(texts: list[str], kind: Kind) -> bool:
    """A blanked answer list: an empty answer text, or (for evaluation) no answer at all."""
    if not texts:
        return kind == "eval"
    return any(not str(text).strip() for text in texts)


@dataclass(frozen=True)
class QAEncoder(Encoder):
    """Question + passage windows with span positions (see `ExtractiveQATask`)."""

    stride: int = 128
    max_query_length: int = 64

    def cut_questions(self, questions: list[str]) -> list[str]:
        """Questions of more than `max_query_length` tokens are cut after that token."""
        encoded = self.tok(questions, add_special_tokens=False, return_offsets_mapping=True)
        limit = self.max_query_length
        return [
            q[: offsets[limit - 1][1]] if len(offsets) > limit else q
            for q, offsets in zip(questions, encoded["offset_mapping"])
        ]

    def __call__(self, batch: dict[str, list[Any]], indices: list[int], kind: Kind) -> dict[str, list[Any]]:
        questions = self.cut_questions([q.lstrip() for q in batch["question"]])
        encoded = self.tok(
            questions,
            batch["context"],
            truncation="only_second",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        sample_map = encoded.pop("overflow_to_sample_mapping")
        all_offsets = encoded.pop("offset_mapping")
        out: dict[str, list[Any]] = {k: list(v) for k, v in encoded.items()}
        out["start_positions"], out["end_positions"] = [], []
        if kind == "eval":
            for key in ("example_index", "example_id", "context", "answers", "offset_mapping"):
                out[key] = []
        for i, offsets in enumerate(all_offsets):
            example = sample_map[i]
            sequence_ids = encoded.sequence_ids(i)
            context_tokens = [k for k, s in enumerate(sequence_ids) if s == 1]
            answers = _answer_dict(batch["answers"][example], batch["id"][example])
            start, end = 0, 0
            if context_tokens and answers["text"]:
                start_char = int(answers["answer_start"][0])
                end_char = start_char + len(answers["text"][0])
                start, end = answer_token_span(offsets, context_tokens[0], context_tokens[-1], start_char, end_char)
            out["start_positions"].append(start)
            out["end_positions"].append(end)
            if kind == "eval":
                in_context = set(context_tokens)
                out["example_index"].append(int(indices[example]))
                out["example_id"].append(str(batch["id"][example]))
                out["context"].append(batch["context"][example])
                out["answers"].append(list(answers["text"]))
                out["offset_mapping"].append([list(o) if k in in_context else [-1, -1] for k, o in enumerate(offsets)])
        return out


def answer_token_span(
    offsets: Sequence[Sequence[int]], context_start: int, context_end: int, start_char: int, end_char: int
) -> tuple[int, int]:
    """Token positions (start, end) of the characters [start_char, end_char) inside the context tokens
    [context_start, context_end] of one window; (0, 0) (the [CLS] token) when the window does not contain the
    whole answer. An answer that starts or ends inside a token gets that whole token."""
    if not (offsets[context_start][0] <= start_char and offsets[context_end][1] >= end_char):
        return 0, 0
    start = context_start
    while start <= context_end and offsets[start][0] <= start_char:
        start += 1
    end = context_end
    while end >= context_start and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1
