"""Which settings define a run, and how two runs' settings differ.

A resume must continue the run the checkpoint belongs to. Settings that change what is trained or how (the
model, the update rule, the optimizer, the data, the seed, the numeric precision) are compared with those the
checkpoint recorded; settings that only extend or observe a run (max_steps / max_epochs, logging, callbacks,
checkpoint intervals, devices) may change."""

from __future__ import annotations

from typing import Any

ABSENT = "(absent)"  # a key one side does not have
DEFINING_KEYS = ("seed_everything", "model", "data", "optimizer", "lr_scheduler", "trainer.precision")
# Settings a resume can never change, even on purpose: the random streams and the learning-rate schedule continue
# from the checkpoint's state, and another algorithm cannot take over this one's state.
FIXED_KEYS = ("seed_everything", "data.seed", "lr_scheduler", "model.algorithm.class_path")
PRECISION_ALIASES = {"None": "32-true", "32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
EVALUATION_KEYS = ("model",)  # validate / test load the weights into this model


def defining_config(config: dict[str, Any], keys: tuple[str, ...] = DEFINING_KEYS) -> dict[str, Any]:
    """The part of a (plain-data) CLI config that defines the run, keyed by dotted name."""
    picked: dict[str, Any] = {}
    for key in keys:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        picked[key] = node
    if "trainer.precision" in picked:  # None, 32, "32" and "32-true" are one setting
        picked["trainer.precision"] = PRECISION_ALIASES.get(
            str(picked["trainer.precision"]), picked["trainer.precision"]
        )
    return picked


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs, in key order. Where a `class_path`
    changed to another class, its `init_args` (the arguments of another class) are not listed."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    changed = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, ABSENT), flat_new.get(key, ABSENT)
        if a != b:
            changed.append((key, a, b))
    replaced = [
        key[: -len("class_path")] for key, a, b in changed if key.endswith("class_path") and ABSENT not in (a, b)
    ]
    return [c for c in changed if not any(c[0].startswith(f"{prefix}init_args.") for prefix in replaced)]


def is_fixed(key: str) -> bool:
    return any(key == fixed or key.startswith((f"{fixed}.", f"{fixed}[")) for fixed in FIXED_KEYS)


def format_differences(changed: list[tuple[str, Any, Any]]) -> str:
    return "\n".join(f"  {key}: {_show(old)} -> {_show(new)}" for key, old, new in changed)


def _show(value: Any) -> str:
    return value if value is ABSENT else repr(value)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        if not node and prefix:
            return {prefix: {}}
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(node, (list, tuple)):
        if not node and prefix:
            return {prefix: []}
        flat = {}
        for i, value in enumerate(node):
            flat.update(_flatten(value, f"{prefix}[{i}]"))
        return flat
    return {prefix: node}
