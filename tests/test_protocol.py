"""The algorithm interface: `TrainingModule` lists exactly what the update rules use of their module, and
MultiTaskModule and every test fake provide it with signatures the algorithms can call."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lightning_modules.algorithms import MTL
from lightning_modules.algorithms.protocol import TrainingModule
from lightning_modules.multitask import MultiTaskModule
from tests.helpers import REPO, LinearStepModule, TinyTaskModel
from tests.test_gradnorm import FakeModule as GradNormFake
from tests.test_recadam import FakeModule as RecAdamFake
from tests.test_recadam import PretrainedEncoder
from tests.test_swep import FakeModule as SwepFake
from tests.test_swep import classifier

MEMBERS = sorted(name for name in vars(TrainingModule) | TrainingModule.__annotations__ if not name.startswith("_"))
METHODS = [name for name in MEMBERS if inspect.isfunction(vars(TrainingModule).get(name))]


def _multitask_module() -> MultiTaskModule:
    module = MultiTaskModule(TinyTaskModel(["a", "b"]), MTL())
    module.trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return module


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1)


MODULES = {
    "MultiTaskModule": _multitask_module,
    "LinearStepModule": lambda: LinearStepModule([0.0], ["a"]),
    "test_gradnorm.FakeModule": lambda: GradNormFake((m := PretrainedEncoder()), ["t1", "t2"], _sgd(m)),
    "test_recadam.FakeModule": lambda: RecAdamFake((m := PretrainedEncoder()), _sgd(m)),
    "test_swep.FakeModule": lambda: SwepFake((m := classifier()), _sgd(m)),
}


def test_the_protocol_lists_what_the_algorithms_use() -> None:
    sources = sorted((REPO / "lightning_modules" / "algorithms").glob("*.py"))
    sources.append(REPO / "lightning_modules" / "task_gradients.py")
    used = {name for path in sources for name in re.findall(r"\bmodule\.(\w+)", _code(path))}
    assert used == set(MEMBERS)


def _code(path: Path) -> str:
    """The file without its docstrings and comments' prose, which may mention `module.<word>` in passing."""
    text = path.read_text()
    text = re.sub(r'""".*?"""', "", text, flags=re.S)
    return re.sub(r"#.*", "", text)


@pytest.mark.parametrize("name", list(MODULES))
def test_modules_satisfy_the_protocol(name: str) -> None:
    module = MODULES[name]()
    assert isinstance(module, TrainingModule), [m for m in MEMBERS if not hasattr(module, m)]
    for name in METHODS:
        _assert_callable_as(getattr(type(module), name), getattr(TrainingModule, name), f"{type(module)}.{name}")


def _assert_callable_as(implementation: Any, declared: Any, where: str) -> None:
    """Every call the declared signature allows binds to the implementation: its parameters after `self` by
    position and by name, and no further required parameter."""
    have = inspect.signature(implementation)
    want = inspect.signature(declared)
    named = [p.name for p in want.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)][1:]
    try:
        have.bind(object(), *[object() for _ in named])
        have.bind(object(), **{name: object() for name in named})
    except TypeError as error:
        pytest.fail(f"{where}{have} cannot be called as {want}: {error}")
    if any(p.kind == p.VAR_KEYWORD for p in want.parameters.values()):
        assert (
            any(p.kind == p.VAR_KEYWORD for p in have.parameters.values()) or len(have.parameters) > len(named) + 1
        ), f"{where}{have} takes no keyword arguments beyond {want}"


def test_the_algorithm_modules_do_not_import_the_lightning_module() -> None:
    for path in sorted((REPO / "lightning_modules" / "algorithms").glob("*.py")):
        imports = re.findall(r"^\s*from (\S+) import .*MultiTaskModule", path.read_text(), flags=re.M)
        assert not imports, f"{path.name} imports MultiTaskModule"


def _imports(package: str) -> set[str]:
    """Top-level packages the package's modules import (function-local and TYPE_CHECKING imports included)."""
    found = set()
    for path in (REPO / package).rglob("*.py"):
        found |= set(re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), flags=re.M))
    return found


def test_the_pretrained_layer_imports_neither_side_and_the_data_does_not_import_the_models() -> None:
    assert not {"lightning_modules", "datamodules"} & _imports("pretrained")
    assert "lightning_modules" not in _imports("datamodules")
