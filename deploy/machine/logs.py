"""Search ``compose logs --no-color`` output in Python: a pattern is only ever a pattern.

Compose prefixes each line with the container's short name, padded, then ``" | "``:
``backend_1  | message`` (v1) or ``backend-1  | message`` (v2). Matching applies to
the message, so ``--grep backend`` does not match every line of the backend service.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator

from deploy.errors import CheckFailed, ConfigError

_SEP = " | "
_DIGITS = "0123456789"


def compile_pattern(pattern: str, case_sensitive: bool = False) -> re.Pattern[str]:
    """The ``--grep`` regex; case-insensitive unless asked, like ``grep -i``."""
    try:
        return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
    except re.error as err:
        raise ConfigError(f"--grep: invalid regular expression '{pattern}': {err}") from None


def service_of(container: str) -> str:
    """``backend_1`` / ``backend-1`` → ``backend``: drop the replica number."""
    base = container.rstrip(_DIGITS)
    if len(base) > 1 and base != container and base[-1] in "-_":
        return base[:-1]
    return container


def parse_line(line: str) -> tuple[str, str]:
    """``(service, message)``; ``("", line)`` for lines without a container prefix."""
    line = line.rstrip("\r\n")
    head, sep, message = line.partition(_SEP)
    if sep:
        name = head.rstrip()
        if name and " " not in name:
            return service_of(name), message
    return "", line


_META = frozenset(".^$*+?{}[]\\|()")


def _literal(pattern: re.Pattern[str]) -> str | None:
    """The pattern's text when it is a plain ASCII word or phrase (the usual --grep)."""
    src = pattern.pattern
    if src.isascii() and not _META.intersection(src) and not pattern.flags & re.VERBOSE:
        return src.lower() if pattern.flags & re.IGNORECASE else src
    return None


def filter_lines(
    lines: Iterable[str], pattern: re.Pattern[str] | str, context: int = 0
) -> Iterator[str]:
    """Matching lines as ``service | message``, grep-style.

    ``context`` lines before and after each match are taken from the same service, and
    ``--`` separates a service's non-adjacent groups. A ``str`` pattern is compiled
    case-insensitively. Nothing is yielded when nothing matched.
    """
    if isinstance(pattern, str):
        pattern = compile_pattern(pattern)
    if isinstance(lines, str):  # a whole captured stdout, not an iterable of characters
        lines = lines.splitlines()
    if context < 0:
        raise ConfigError(f"--context: must be 0 or more, got {context}")
    if context == 0:
        return _matches(lines, pattern)
    return _with_context(lines, pattern, context)


def _matches(lines: Iterable[str], pattern: re.Pattern[str]) -> Iterator[str]:
    search = pattern.search
    # Python's case-insensitive regex scan is ~5x slower than `in`. For a plain ASCII
    # literal on an ASCII line (isascii() is O(1)), `needle in line.lower()` is exactly
    # what re.IGNORECASE would decide; non-ASCII lines (where e.g. 'ſ' matches 's') go
    # to the regex. The regex still decides on the message, after the prefix is split off.
    needle = _literal(pattern)
    fold = bool(pattern.flags & re.IGNORECASE)
    services: dict[str, str] = {}  # container name → service; a handful of names
    for line in lines:
        if needle is not None and line.isascii() and needle not in (line.lower() if fold else line):
            continue
        line = line.rstrip("\r\n")
        head, sep, message = line.partition(_SEP)
        if sep:
            name = head.rstrip()
            if name and " " not in name:
                if search(message):
                    svc = services.get(name)
                    if svc is None:
                        svc = services[name] = service_of(name)
                    yield f"{svc}{_SEP}{message}"
                continue
        if search(line):
            yield line


def _with_context(lines: Iterable[str], pattern: re.Pattern[str], context: int) -> Iterator[str]:
    search = pattern.search
    before: dict[str, deque[str]] = {}
    after_left: dict[str, int] = {}
    index: dict[str, int] = {}
    last_out: dict[str, int] = {}

    def render(svc: str, message: str) -> str:
        return f"{svc}{_SEP}{message}" if svc else message

    for line in lines:
        svc, message = parse_line(line)
        i = index[svc] = index.get(svc, -1) + 1
        if search(message):
            buf = before.get(svc)
            first = i - (len(buf) if buf else 0)
            if svc in last_out and first > last_out[svc] + 1:
                yield "--"
            if buf:
                for old in buf:
                    yield render(svc, old)
                buf.clear()
            yield render(svc, message)
            after_left[svc] = context
            last_out[svc] = i
        elif after_left.get(svc, 0) > 0:
            after_left[svc] -= 1
            last_out[svc] = i
            yield render(svc, message)
        else:
            buf = before.get(svc)
            if buf is None:
                buf = before[svc] = deque(maxlen=context)
            buf.append(message)


def no_match(pattern: str) -> CheckFailed:
    return CheckFailed(f"logs: no line matched {pattern!r}")
