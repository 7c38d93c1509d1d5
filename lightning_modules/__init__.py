from lightning_modules.multitask import MultiTaskModule, NonFiniteLossError

__all__ = ["MultiTaskModule", "NonFiniteLossError"]
