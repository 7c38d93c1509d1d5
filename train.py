"""Entry point: `python train.py fit --config configs/<experiment>/<method>.yaml` (see README)."""

from lightning_modules.cli import MultiTaskCLI


def main() -> None:
    MultiTaskCLI()


if __name__ == "__main__":
    main()
