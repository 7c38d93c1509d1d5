"""EncoderClassifier: shapes, loss, shared/specific split, metrics, reference weights, task checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.models.encoder import EncoderClassifier
from tests.schema_fixtures import tiny_bert_config

TINY = tiny_bert_config(50, max_positions=16)


def batch(n: int = 4, seq: int = 6, labels: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, 50, (n, seq), generator=g),
        "attention_mask": torch.ones(n, seq, dtype=torch.long),
        "token_type_ids": torch.zeros(n, seq, dtype=torch.long),
        "labels": torch.randint(0, labels, (n,), generator=g),
    }


def test_forward_shapes_and_loss_match_an_independent_computation() -> None:
    torch.manual_seed(0)
    model = EncoderClassifier(config=TINY, num_labels=3).eval()
    data = batch()
    out = model("en", data)
    hidden = model.encoder(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).last_hidden_state
    logits = hidden[:, 0] @ model.head.weight.T + model.head.bias
    assert out.preds.shape == (4,) and out.targets is data["labels"]
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, data["labels"]))
    assert torch.equal(out.preds, logits.argmax(-1))
    out.loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())


def test_shared_head_is_shared_and_per_task_heads_are_not() -> None:
    shared = EncoderClassifier(config=TINY)
    names = [n for n, _ in shared.shared_named_parameters()]
    assert "head.weight" in names and "head.bias" in names
    assert len(names) == len(list(shared.parameters()))

    per_task = EncoderClassifier(config=TINY, head="per_task", tasks=["a", "b"])
    names = {n for n, _ in per_task.shared_named_parameters()}
    assert all(n.startswith("encoder.") for n in names)
    all_names = {n for n, _ in per_task.named_parameters()}
    assert all_names - names == {"heads.a.weight", "heads.a.bias", "heads.b.weight", "heads.b.bias"}
    last = {id(p) for p in per_task.last_shared_parameters()}
    assert last == {id(p) for p in per_task.encoder.encoder.layer[-1].parameters()}


def test_per_task_heads_give_different_outputs_and_unknown_tasks_fail_clearly() -> None:
    torch.manual_seed(0)
    model = EncoderClassifier(config=TINY, head="per_task", tasks=["a", "b"]).eval()
    data = batch(labels=2)
    assert not torch.equal(model("a", data).loss, model("b", data).loss)
    model.check_tasks(["a", "b"])
    with pytest.raises(ValueError, match=r"task\(s\) \['c'\]"):
        model.check_tasks(["a", "c"])
    with pytest.raises(ValueError, match="no head for task 'c'"):
        model("c", data)
    EncoderClassifier(config=TINY).check_tasks(["anything"])  # a shared head serves every task


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        EncoderClassifier()
    with pytest.raises(ValueError, match="needs the task names"):
        EncoderClassifier(config=TINY, head="per_task")
    with pytest.raises(ValueError, match="num_labels"):
        EncoderClassifier(config=TINY, num_labels=1)
    with pytest.raises(KeyError, match="labels"):
        EncoderClassifier(config=TINY)("en", {"input_ids": torch.zeros(1, 3, dtype=torch.long)})


def test_metrics_are_accuracy_and_macro_f1() -> None:
    metrics = EncoderClassifier(config=TINY, num_labels=3).eval_metrics("en")
    assert set(metrics.keys()) == {"accuracy", "macro_f1"}
    preds, targets = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1])
    metrics.update(preds, targets)
    result = metrics.compute()
    assert result["accuracy"].item() == pytest.approx(0.5)  # micro: 2 of 4 right
    # per-class F1: class 0: p=1/2 r=1 -> 2/3; class 1: p=1 r=1/3 -> 1/2; class 2: 0 -> mean 7/18
    assert result["macro_f1"].item() == pytest.approx(7 / 18)


def test_pretrained_reference_config_built_is_the_initial_weights() -> None:
    model = EncoderClassifier(config=TINY)
    initial = {n: p.detach().clone() for n, p in model.shared_named_parameters() if n.startswith("encoder.")}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    reference = model.pretrained_reference()
    assert set(reference) == set(initial)  # heads are not pretrained
    assert all(torch.equal(reference[n], initial[n]) for n in initial)
    assert not any(k.startswith("_initial") for k in model.state_dict())  # not in checkpoints


def test_backbone_from_a_local_directory_reloads_its_weights(tmp_path) -> None:
    from transformers import BertConfig, BertModel

    saved = BertModel(BertConfig(**TINY))  # with a pooler, which the classifier drops
    saved.save_pretrained(tmp_path)
    model = EncoderClassifier(backbone=str(tmp_path), num_labels=2)
    assert model.encoder.pooler is None
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.zero_()
    reference = model.pretrained_reference()
    assert torch.equal(reference["encoder.embeddings.word_embeddings.weight"], saved.embeddings.word_embeddings.weight)
    assert not any("pooler" in k for k in reference)
    assert model("en", batch(labels=2)).loss.ndim == 0


def test_the_data_vocabulary_trims_exactly_as_an_explicit_one(bible_tokenizer) -> None:
    """`vocabulary="data"` trimmed after construction gives the model (weights, parameter order, pretrained
    reference) an explicit vocabulary gives: trimming draws no random numbers."""
    from lightning_modules.models.encoder import TokenIdsVocabulary
    from tests.helpers import assert_identical

    tokenizer = str(bible_tokenizer)
    config = {**TINY, "vocab_size": 40}
    vocabulary = TokenIdsVocabulary([5, 6, 7])
    torch.manual_seed(0)
    explicit = EncoderClassifier(config=config, tokenizer=tokenizer, num_labels=3, vocabulary=vocabulary)
    torch.manual_seed(0)
    late = EncoderClassifier(config=config, tokenizer=tokenizer, num_labels=3, vocabulary="data")
    with pytest.raises(ValueError, match="given no vocabulary"):
        late.check_tasks(["a"])
    late.attach_data(["a"], vocabulary)
    assert late.vocab_keep_ids == explicit.vocab_keep_ids and len(explicit.vocab_keep_ids) < 40
    assert [n for n, _ in late.named_parameters()] == [n for n, _ in explicit.named_parameters()]
    assert_identical(late.state_dict(), explicit.state_dict())
    assert_identical(late.pretrained_reference(), explicit.pretrained_reference())
    with pytest.raises(ValueError, match="already trimmed"):
        late.attach_data(["a"], vocabulary)
    explicit.attach_data(["a"], TokenIdsVocabulary([9]))  # it did not ask for the data's: ignored
    assert explicit.vocab_keep_ids == late.vocab_keep_ids
    with pytest.raises(ValueError, match="vocabulary must be"):
        EncoderClassifier(config=config, vocabulary="bible")  # type: ignore[arg-type]


def test_per_task_heads_from_the_data_are_those_of_a_task_list() -> None:
    """`tasks="data"`: the heads made by `attach_data` (and by loading a state dict into a rebuilt model) equal
    those the constructor makes from the same list after the same seed, in the same parameter order."""
    from tests.helpers import assert_identical

    torch.manual_seed(0)
    listed = EncoderClassifier(config=TINY, num_labels=3, head="per_task", tasks=["b", "a"])
    torch.manual_seed(0)
    late = EncoderClassifier(config=TINY, num_labels=3, head="per_task", tasks="data")
    with pytest.raises(ValueError, match="given no task names"):
        late.check_tasks(["b"])
    late.attach_data(["b", "a"], None)
    assert [n for n, _ in late.named_parameters()] == [n for n, _ in listed.named_parameters()]
    assert_identical(late.state_dict(), listed.state_dict())
    with pytest.raises(ValueError, match="already made"):
        late.attach_data(["b", "a"], None)
    rebuilt = EncoderClassifier(config=TINY, num_labels=3, head="per_task", tasks="data")
    rebuilt.load_state_dict(listed.state_dict())
    assert list(rebuilt.heads) == ["b", "a"]
    assert_identical(rebuilt.state_dict(), listed.state_dict())
