"""Errors that stop training, shared by the module and the update rules (which must not import the module)."""


class NonFiniteLossError(RuntimeError):
    """A task loss became NaN or infinite; raised before the parameters are touched."""


class NonFiniteParametersError(RuntimeError):
    """An update made parameters NaN or infinite; raised before any checkpoint can hold them."""
