"""Errors the historian raises to its callers; the API maps them to HTTP statuses."""


class HistorianError(Exception):
    """Base of every error the historian raises on purpose."""


class UnknownTagError(HistorianError, LookupError):
    """A tag name that is not in the registry."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tag {name!r}")
        self.name = name


class InvalidParameterError(HistorianError, ValueError):
    """A query parameter that is out of range or inconsistent with another; names the parameter."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


class WriterClosedError(HistorianError):
    """A batch submitted to a writer that is closing or closed."""
