"""The one exception type users see: a message that names the problem and the fix."""


class De3Error(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with status 2."""


def one_line(exc: BaseException) -> str:
    """A library's error text folded onto one line (transformers' offline errors span several)."""
    return " ".join(str(exc).split())
