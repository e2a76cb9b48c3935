"""Acknowledging a deploy-safety finding: ``-- lint: allow RULE -- REASON``.

A directive acknowledges ONE finding of its rule in the statement it covers: the
statement it is written in (a ``DO`` block counts as one statement, and the directive may
sit inside its body), the statement it trails on the same line, else the next statement.
Two findings of a rule in one statement need two directives. The reason is required.
A directive naming an unknown rule or giving no reason is an error; one that matches no
finding is a stale warning. Acknowledged findings are reported with severity "info" and
the reason in ``Finding.acknowledged``: ``lint-migrations --json`` lists them, the text
output does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pglast import ast, parser

from deploy.migrate.files import line_col
from deploy.migrate.sql import Executed, split_statements
from deploy.sqllint.findings import Finding
from deploy.sqllint.safety import RULES, risky_changes

DIRECTIVE = "-- lint: allow <rule> -- <reason>"


@dataclass(frozen=True)
class Directive:
    at: int  # offset of the comment
    rule: str
    reason: str


def _comments(text: str, do_blocks: Iterable[tuple[int, int]]) -> Iterator[tuple[int, str]]:
    """(offset, text) of every ``--`` comment: the file's, then those inside DO bodies.

    pglast's scanner finds them, so ``--`` inside a string is no comment. A DO body is a
    string to the SQL scanner; PL/pgSQL comments are SQL comments, so it is scanned too.
    """
    for token in parser.scan(text):
        if token.name == "SQL_COMMENT":
            yield token.start, text[token.start : token.end + 1]
    for start, end in do_blocks:
        body = next((t for t in parser.scan(text[start:end]) if t.name == "SCONST"), None)
        quoted = text[start + body.start : start + body.end + 1] if body else ""
        if not quoted.startswith(("$", "'")):
            continue
        quote = quoted[: quoted.index("$", 1) + 1] if quoted.startswith("$") else "'"
        inner = start + body.start + len(quote)
        try:
            tokens = parser.scan(quoted[len(quote) : -len(quote)])
        except parser.ParseError:
            continue  # not SQL-like enough to scan: its comments are not seen
        for token in tokens:
            if token.name == "SQL_COMMENT":
                yield inner + token.start, text[inner + token.start : inner + token.end + 1]


def directives(
    text: str, do_blocks: Iterable[tuple[int, int]] = ()
) -> tuple[list[Directive], list[tuple[int, str]]]:
    """The file's ``-- lint:`` comments: (valid directives, (offset, error) for bad ones).

    Only ``--`` comments whose text starts with ``lint:`` are directives, in the file or
    in the bodies of the DO blocks spanning ``do_blocks``.
    """
    valid, bad = [], []
    for at, comment in sorted(_comments(text, do_blocks)):
        body = comment[2:].strip()
        if not body.startswith("lint:"):
            continue
        head, _, reason = body[len("lint:") :].partition("--")
        words, reason = head.split(), reason.strip()
        if len(words) != 2 or words[0] != "allow":
            bad.append((at, f'"{comment}": write "{DIRECTIVE}"'))
        elif words[1] not in RULES:
            bad.append((at, f'"-- lint: allow {words[1]}": unknown rule; the rules a '
                            f'directive can acknowledge are {", ".join(RULES)}'))
        elif not reason:
            bad.append((at, f'"-- lint: allow {words[1]}" needs a reason: write '
                            f'"-- lint: allow {words[1]} -- <why it is safe here>"'))
        else:
            valid.append(Directive(at, words[1], reason))
    return valid, bad


def _covered_statement(text: str, spans: list[tuple[int, int]], at: int) -> int | None:
    """Index of the statement a directive at ``at`` covers: the one it is in, the one it
    trails on the same line, else the next one."""
    for i, (start, end) in enumerate(spans):
        if start <= at < end:
            return i
    before = [i for i, (_, end) in enumerate(spans) if end <= at]
    if before and "\n" not in text[spans[before[-1]][1] : at]:
        return before[-1]
    return next((i for i, (start, _) in enumerate(spans) if start > at), None)


def deploy_safety_findings(filename: str, text: str, executed: list[Executed]) -> list[Finding]:
    """Warnings for risky changes, minus those acknowledged; directive errors; stale ones.

    One directive acknowledges one finding of its rule in the statement it covers (a DO
    block is one statement); two such findings need two directives.
    """
    def finding(at: int, severity: str, code: str, message: str, reason: str | None = None):
        line, col = line_col(text, at)
        return Finding(filename, line, col, severity, code, message, reason)

    spans = [(s.start, s.end) for s in split_statements(text)]
    changes = risky_changes(executed)
    statement_of = [_covered_statement(text, spans, at) for at, _, _ in changes]
    reasons: dict[int, str] = {}
    do_starts = {ex.at for ex in executed if isinstance(ex.stmt, ast.DoStmt)}
    valid, bad = directives(text, [span for span in spans if span[0] in do_starts])
    out = [finding(at, "error", "lint-directive", message) for at, message in bad]
    for d in valid:
        target = _covered_statement(text, spans, d.at)
        # In a DO block (one statement) the nearest finding after the directive comes first.
        candidates = sorted(
            (at < d.at, at, i) for i, (at, rule, _) in enumerate(changes)
            if rule == d.rule and statement_of[i] == target and i not in reasons
        )
        match = candidates[0][2] if candidates else None
        if match is not None:
            reasons[match] = d.reason
            continue
        where = (f"the statement it covers (line {line_col(text, spans[target][0])[0]}) has no "
                 f"{d.rule} finding" if target is not None else "no statement follows it")
        out.append(finding(d.at, "warning", "stale-allow",
                           f'"-- lint: allow {d.rule}" acknowledges nothing: {where}; remove it'))
    for i, (at, rule, message) in enumerate(changes):
        if i in reasons:
            out.append(finding(at, "info", rule, message, reasons[i]))
        else:
            out.append(finding(at, "warning", rule, message))
    return out
