from lightning_modules.multitask import MultiTaskModule, NonFiniteLossError, NonFiniteParametersError

__all__ = ["MultiTaskModule", "NonFiniteLossError", "NonFiniteParametersError"]
