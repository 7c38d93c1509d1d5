"""The 2-D landscape of paper §4.1 (Fig. 3, Appendix F).

The paper prints L_i(φ) = -200·exp(0.2·||φ - x_i||), which has no minimum (it decreases without bound
as φ moves away from x_i). The sign of the exponent is a typo: we use L_i(φ) = -200·exp(-0.2·||φ - x_i||),
a well of depth -200 at each optimum x_i, as the figure shows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lightning_modules.models.base import TaskModel, TaskOutput

PAPER_OPTIMA = {"t1": [0.0, 10.0], "t2": [0.0, 0.0], "t3": [10.0, 0.0]}
# (20, 5) is the paper's (§4.1, Fig. 3). Appendix F (Figs. 9-11) uses "three different initializations" without
# printing them; the other three are our choice, one outside each side of the triangle of optima:
# `--model.model.init_args.init [15,15]` etc.
INITS = {"fig3": [20.0, 5.0], "fig9": [15.0, 15.0], "fig10": [-5.0, 15.0], "fig11": [5.0, -5.0]}


class SyntheticLandscape(TaskModel):
    """φ ∈ R² shared by every task; task i's loss is -scale·exp(-rate·||φ - x_i||)."""

    def __init__(
        self,
        optima: dict[str, list[float]] | None = None,
        init: list[float] | None = None,
        scale: float = 200.0,
        rate: float = 0.2,
    ) -> None:
        super().__init__()
        optima = optima or PAPER_OPTIMA
        init = init if init is not None else INITS["fig3"]
        if len(init) != 2 or any(len(x) != 2 for x in optima.values()):
            raise ValueError("the synthetic landscape is 2-D: init and every optimum need two coordinates")
        self.optima = {name: torch.tensor(x, dtype=torch.float32) for name, x in optima.items()}
        self.init = torch.tensor(init, dtype=torch.float32)
        self.scale, self.rate = scale, rate
        self.phi = nn.Parameter(self.init.clone())

    def check_tasks(self, names: list[str]) -> None:
        unknown = [n for n in names if n not in self.optima]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown} for the synthetic landscape; it has {sorted(self.optima)}")

    def task_loss_at(self, task: str, point: torch.Tensor) -> torch.Tensor:
        optimum = self.optima[task].to(point)
        return -self.scale * torch.exp(-self.rate * torch.linalg.vector_norm(point - optimum))

    def forward(self, task: str, batch: Any) -> TaskOutput:
        return TaskOutput(loss=self.task_loss_at(task, self.phi))

    def pretrained_reference(self) -> dict[str, torch.Tensor]:
        return {"phi": self.init.clone()}

    def point(self) -> tuple[float, float]:
        x, y = self.phi.detach().cpu().tolist()
        return x, y
