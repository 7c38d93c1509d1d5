"""MaskedLMLoss against BertForMaskedLM's own loss, hand-built masked batches, deterministic masks, seen/unseen
averages, CC-100 files (.txt and .xz), the probe head's cache, and no effect on training."""

from __future__ import annotations

import copy
import csv
import json
import lzma
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from callbacks.mlm import MaskedLMLoss, group_means, read_cc100
from datamodules.bible import BibleGenreTask
from datamodules.hf_base import load_tokenizer
from datamodules.multitask import MultiTaskDataModule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.models.encoder import EncoderClassifier
from lightning_modules.models.mlm_probe import (
    IGNORE,
    MaskedBatch,
    mask_texts,
    masked_lm_loss,
    pretrained_head,
    vocabulary_rows,
)
from lightning_modules.models.mlm_probe_fit import ProbeSettings, load_or_fit_probe_head
from lightning_modules.multitask import MultiTaskModule
from pretrained.vocab_trim import trim_vocabulary
from tests.bible_fixture import fixture_words, verse_text
from tests.schema_fixtures import tiny_bert_config
from tests.trainer_fixtures import RecordingLogger, fit

SPECIALS = 5  # [PAD] [UNK] [CLS] [SEP] [MASK]
VOCAB = SPECIALS + len(fixture_words())
TINY = {**tiny_bert_config(VOCAB, max_positions=32), "hidden_dropout_prob": 0.3, "attention_probs_dropout_prob": 0.0}


@pytest.fixture(scope="module")
def assets(bible_db: Path, bible_tokenizer: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture Bible, and a tiny BERT with a (random, saved) MLM head in a copy of its tokenizer's dir."""
    from transformers import BertConfig, BertForMaskedLM

    model_dir = Path(shutil.copytree(bible_tokenizer, tmp_path_factory.mktemp("mlm") / "tiny-bert"))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(**TINY)).save_pretrained(model_dir)
    return {"db": bible_db, "model": model_dir}


def texts(language: str, n: int = 12) -> list[str]:
    return [verse_text(language, 1, 1 + i // 4, 1 + i % 4) for i in range(n)]


def data(assets: dict[str, Path], cache: Path) -> MultiTaskDataModule:
    def task(lang: str, train: int) -> BibleGenreTask:
        return BibleGenreTask(
            lang, tokenizer=str(assets["model"]), train_size=train, val_size=4, test_size=4,
            max_length=16, batch_size=4, db_path=str(assets["db"]), cache_dir=str(cache),
        )  # fmt: skip

    return MultiTaskDataModule([task("en", 16), task("ar", 16)], zero_shot_tasks=[task("es", 0)], seed=1)


# ------------------------------------------------------------------------------------------------- masking
def test_masks_are_deterministic_and_follow_the_rule(assets: dict[str, Path]) -> None:
    tok = load_tokenizer(str(assets["model"]))
    sample = texts("en", 40)
    first = mask_texts(sample, tok, torch.Generator().manual_seed(5), max_length=16, batch_size=8)
    again = mask_texts(sample, tok, torch.Generator().manual_seed(5), max_length=16, batch_size=8)
    other = mask_texts(sample, tok, torch.Generator().manual_seed(6), max_length=16, batch_size=8)
    assert len(first) == 5
    for a, b in zip(first, again):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert any(not torch.equal(a.labels, b.labels) for a, b in zip(first, other))
    original = tok(sample, truncation=True, max_length=16)["input_ids"]
    counts = {"mask": 0, "random": 0, "kept": 0}
    for b, batch in enumerate(first):
        for i in range(batch.input_ids.shape[0]):
            ids = original[8 * b + i]
            n = len(ids)
            assert batch.attention_mask[i].sum() == n
            masked = (batch.labels[i] != IGNORE).nonzero().flatten().tolist()
            # "<lang> <genre>word b1 cN vM": 5 words, so round(0.15 * 5) = 1 masked token, never [CLS]/[SEP]
            assert len(masked) == max(1, round(0.15 * (n - 2))) == 1
            assert all(0 < p < n - 1 for p in masked)
            for p in masked:
                assert batch.labels[i, p] == ids[p]
                got = int(batch.input_ids[i, p])
                key = "mask" if got == tok.mask_token_id else "kept" if got == ids[p] else "random"
                counts[key] += 1
                assert got == tok.mask_token_id or got >= SPECIALS  # random tokens are non-special
            unmasked = [p for p in range(n) if p not in masked]
            assert batch.input_ids[i, unmasked].tolist() == [ids[p] for p in unmasked]
            assert (batch.input_ids[i, n:] == tok.pad_token_id).all()
    assert counts["mask"] >= 24  # 80 % of 40 in expectation


# ------------------------------------------------------------------------------------------ loss, by hand
def hand_batch() -> MaskedBatch:
    """Two rows (the second padded), masked tokens at hand-chosen places: ids 7, 9 and 12."""
    input_ids = torch.tensor([[2, 4, 8, 4, 3], [2, 10, 4, 3, 0]])
    labels = torch.full_like(input_ids, IGNORE)
    labels[0, 1], labels[0, 3], labels[1, 2] = 7, 9, 12
    return MaskedBatch(input_ids, (input_ids != 0).long(), labels)


def test_loss_equals_bert_for_masked_lm_on_a_hand_built_batch(assets: dict[str, Path]) -> None:
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM.from_pretrained(assets["model"]).eval()
    encoder = copy.deepcopy(mlm.bert)
    head = pretrained_head(mlm, vocabulary_rows(encoder, 1)[0])
    batch = hand_batch()
    result = masked_lm_loss(encoder.eval(), head, [batch], None)
    reference = mlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert result.tokens == 3 and result.skipped == 0
    torch.testing.assert_close(torch.tensor(result.total / result.tokens), reference.detach(), rtol=1e-5, atol=1e-6)


def test_trimmed_vocabulary_scores_over_kept_rows_and_skips_dropped_targets(assets: dict[str, Path]) -> None:
    from transformers import BertForMaskedLM

    mlm = BertForMaskedLM.from_pretrained(assets["model"]).eval()
    encoder = copy.deepcopy(mlm.bert)
    keep = [0, 2, 3, 4, 7, 8, 10, 12]  # 9 (a target) is dropped; 1 is [UNK]
    trim_vocabulary(encoder, keep, unk_id=1)
    row_ids, id_to_row = vocabulary_rows(encoder, 1)
    assert row_ids.tolist() == [0, 1, 2, 3, 4, 7, 8, 10, 12]
    assert id_to_row[9] == -1 and id_to_row[12] == 8 and id_to_row[1] == 1
    head = pretrained_head(mlm, row_ids)
    batch = hand_batch()
    result = masked_lm_loss(encoder.eval(), head, [batch], id_to_row)
    # By hand: inputs use only kept ids, so the hidden states are the untrimmed model's; logits over the kept
    # columns; targets 7 and 12 are rows 5 and 8; target 9 is not scored.
    logits = mlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.detach()
    kept = logits[:, :, row_ids]
    expected = F.cross_entropy(kept[0, 1], torch.tensor(5)) + F.cross_entropy(kept[1, 2], torch.tensor(8))
    assert result.tokens == 2 and result.skipped == 1
    assert result.total == pytest.approx(float(expected), rel=1e-5)


def test_seen_and_unseen_are_unweighted_means_over_languages() -> None:
    losses = {"en": 2.0, "ar": 4.0, "es": 7.0, "de": 9.0}
    groups = {"en": "seen", "ar": "seen", "es": "unseen", "de": "unseen"}
    assert group_means(losses, groups) == {"mlm/seen": 3.0, "mlm/unseen": 8.0}
    assert group_means({"en": 2.0}, {"en": "seen"}) == {"mlm/seen": 2.0}


# ------------------------------------------------------------------------------------------------- CC-100
def test_cc100_files_are_read_as_txt_and_xz(tmp_path: Path) -> None:
    lines = ["first sentence", "", "second one", "  third  ", "fourth", "fifth"]
    (tmp_path / "sw.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with lzma.open(tmp_path / "ko.txt.xz", "wt", encoding="utf-8") as f:
        f.write("\n".join(["한국어 문장", "둘째", "", "셋째"]) + "\n")
    assert read_cc100(tmp_path, "sw", 2, 2) == (["first sentence", "second one"], ["third", "fourth"])
    assert read_cc100(tmp_path, "ko", 2, 5) == (["한국어 문장", "둘째"], ["셋째"])
    with pytest.raises(FileNotFoundError, match=r"'de'.*de\.txt or .*de\.txt\.xz"):
        read_cc100(tmp_path, "de", 2)
    with pytest.raises(ValueError, match="has 3 non-empty lines; the masked-LM callback needs 4"):
        read_cc100(tmp_path, "ko", 4)
    (tmp_path / "vi.txt.xz").write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_cc100(tmp_path, "vi", 1)


# ------------------------------------------------------------------------------------------------- probe
def test_probe_head_is_fitted_once_cached_and_tied_to_the_pretrained_embedding(
    assets: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import BertModel

    tok = load_tokenizer(str(assets["model"]))
    encoder = BertModel.from_pretrained(assets["model"], add_pooling_layer=False).eval()
    fitting = {"en": texts("en", 24), "ar": texts("ar", 24)}
    settings = ProbeSettings(texts_per_language=24, epochs=30, batch_tokens=16, lr=1e-2, holdout=0.25)
    head, record = load_or_fit_probe_head(encoder, tok, fitting, "tok", tmp_path, 16, 0.15, settings)
    report = record["report"]
    assert not record["cached"] and report["tokens_fit"] + report["tokens_holdout"] == 48
    assert report["holdout_loss_after"] < report["holdout_loss_before"]
    assert torch.equal(head.decoder, encoder.get_input_embeddings().weight)
    assert not any(p.requires_grad for p in head.parameters())
    files = list(tmp_path.glob("probe-*.pt"))
    assert len(files) == 1
    assert "decoder" not in torch.load(files[0], weights_only=True)["state"]  # the decoder is never stored

    again, record2 = load_or_fit_probe_head(encoder, tok, fitting, "tok", tmp_path, 16, 0.15, settings)
    assert record2["cached"] and record2["report"] == report
    for (name, a), (_, b) in zip(head.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name

    # Another encoder (weights), other texts or other settings: a new head.
    changed = copy.deepcopy(encoder)
    with torch.no_grad():
        changed.encoder.layer[0].output.dense.bias.add_(0.01)
    load_or_fit_probe_head(changed, tok, fitting, "tok", tmp_path, 16, 0.15, settings)
    load_or_fit_probe_head(encoder, tok, {"en": fitting["en"]}, "tok", tmp_path, 16, 0.15, settings)
    assert len(list(tmp_path.glob("probe-*.pt"))) == 3


# -------------------------------------------------------------------------------------------- the callback
def test_callback_matches_bert_for_masked_lm_and_logs_seen_and_unseen(assets: dict[str, Path], tmp_path: Path) -> None:
    from transformers import BertForMaskedLM

    model = EncoderClassifier(backbone=str(assets["model"]), num_labels=6)
    callback = MaskedLMLoss(every_n_steps=2, texts_per_language=6, max_length=16, batch_size=4)
    recorder = RecordingLogger()
    fit(MultiTaskModule(model, MTL(tasks_per_step=1)), data(assets, tmp_path / "data"), 2, tmp_path, [callback],
        recorder, lr=0.5)  # fmt: skip
    assert callback.head_info["head"] == "pretrained"
    assert callback.groups == {"en": "seen", "ar": "seen", "es": "unseen"}
    logged = [(step, m) for step, m in recorder.records if "mlm/seen" in m]
    assert [step for step, _ in logged] == [0, 2]
    # Step 0 is the pretrained model: the callback's numbers are BertForMaskedLM's loss on the same batches.
    mlm = BertForMaskedLM.from_pretrained(assets["model"]).eval()
    at_start = logged[0][1]
    for lang, batches in callback.batches.items():
        total = tokens = 0.0
        for b in batches:
            n = int((b.labels != IGNORE).sum())
            total += (
                float(mlm(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels).loss.detach()) * n
            )
            tokens += n
        assert at_start[f"mlm/{lang}/loss"] == pytest.approx(total / tokens, rel=1e-5)
    assert at_start["mlm/seen"] == pytest.approx((at_start["mlm/en/loss"] + at_start["mlm/ar/loss"]) / 2)
    assert at_start["mlm/unseen"] == at_start["mlm/es/loss"]
    assert logged[1][1]["mlm/en/loss"] != at_start["mlm/en/loss"]  # lr 0.5 moved the encoder
    rows = list(csv.DictReader(open(tmp_path / "mlm.csv")))
    assert [(r["step"], r["language"], r["group"]) for r in rows[:3]] == [
        ("0", "en", "seen"), ("0", "ar", "seen"), ("0", "es", "unseen")
    ]  # fmt: skip
    assert float(rows[0]["loss"]) == at_start["mlm/en/loss"]
    info = json.loads((tmp_path / "mlm_head.json").read_text())
    assert info["head"] == "pretrained" and info["vocabulary"] == "full"


def test_probe_callback_leaves_training_unchanged(assets: dict[str, Path], tmp_path: Path) -> None:
    """A config-built encoder (no pretrained head): the probe head is fitted on its initial weights; the run's
    weights after 3 steps (dropout on) equal those of a run without the callback."""

    def run(callbacks: list, root: Path) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = EncoderClassifier(config=TINY, num_labels=6)
        module = MultiTaskModule(model, MTL(tasks_per_step=1))
        fit(module, data(assets, tmp_path / "data"), 3, root, callbacks, RecordingLogger(), lr=0.1)
        return {k: v.clone() for k, v in module.state_dict().items()}

    callback = MaskedLMLoss(every_n_steps=1, texts_per_language=4, max_length=16, probe_texts_per_language=8,
                            probe_epochs=2, cache_dir=str(tmp_path / "probe"))  # fmt: skip
    with_callback = run([callback], tmp_path / "a")
    without = run([], tmp_path / "b")
    assert callback.head_info["head"] == "probe" and "probe head" in callback.head_info["note"]
    assert len(callback.last_losses) == 3
    assert with_callback.keys() == without.keys()
    for name in without:
        assert torch.equal(with_callback[name], without[name]), name


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every_n_steps"):
        MaskedLMLoss(every_n_steps=0)
    with pytest.raises(ValueError, match="head must be"):
        MaskedLMLoss(head="mine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give `cc100_dir`"):
        MaskedLMLoss(languages=["en"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        MaskedLMLoss(cc100_dir=str(tmp_path / "missing"))


def test_cc100_texts_feed_the_callback_with_seen_and_unseen_groups(tmp_path: Path) -> None:
    from types import SimpleNamespace

    for lang in ("en", "sw"):
        (tmp_path / f"{lang}.txt").write_text("\n".join(f"{lang} sentence {i}" for i in range(6)) + "\n")
    with lzma.open(tmp_path / "de.txt.xz", "wt", encoding="utf-8") as f:
        f.write("\n".join(f"de Satz {i}" for i in range(6)) + "\n")
    datamodule = SimpleNamespace(task_names=["en", "sw"], zero_shot_task_names=["de"])
    callback = MaskedLMLoss(texts_per_language=4, cc100_dir=str(tmp_path), probe_texts_per_language=2)
    held_out, fitting, groups = callback.read_texts(datamodule)
    assert held_out["de"] == [f"de Satz {i}" for i in range(4)] and fitting["de"] == ["de Satz 4", "de Satz 5"]
    assert groups == {"en": "seen", "sw": "seen", "de": "unseen"}
    only = MaskedLMLoss(texts_per_language=4, cc100_dir=str(tmp_path), languages=["sw", "de"])
    assert only.read_texts(datamodule)[2] == {"sw": "seen", "de": "unseen"}
    with pytest.raises(FileNotFoundError, match="'fr'"):
        MaskedLMLoss(cc100_dir=str(tmp_path), languages=["fr"]).read_texts(datamodule)


def test_cc100_files_follow_the_tasks_language_not_their_names(tmp_path: Path) -> None:
    from types import SimpleNamespace

    for lang in ("en", "sw", "de"):
        (tmp_path / f"{lang}.txt").write_text("\n".join(f"{lang} sentence {i}" for i in range(6)) + "\n")
    tasks = {"clusterA": "en", "clusterB": "en", "swahili": "sw", "german": "de"}  # pseudo-tasks, renamed tasks
    datamodule = SimpleNamespace(
        task_names=["clusterA", "clusterB", "swahili"],
        zero_shot_task_names=["german"],
        task=lambda name: SimpleNamespace(language=tasks[name]),
    )
    held_out, _, groups = MaskedLMLoss(texts_per_language=4, cc100_dir=str(tmp_path)).read_texts(datamodule)
    assert groups == {"en": "seen", "sw": "seen", "de": "unseen"}
    assert held_out["sw"] == [f"sw sentence {i}" for i in range(4)]
