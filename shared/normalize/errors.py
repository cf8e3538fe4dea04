"""The one error the normalisers raise."""


class InvalidValue(ValueError):
    """A value that cannot be normalised; `str(exc)` is the reason, quoting the value."""

    def __init__(self, kind: str, value: str, why: str) -> None:
        self.kind = kind
        self.value = value
        self.why = why
        super().__init__(f"invalid {kind} {_quoted(value)}: {why}")


def _quoted(value: str, limit: int = 60) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(shown)
