"""shell.run hands a secret to a command on stdin, never on its command line."""

from __future__ import annotations

import invoke

from deploy import shell


def test_input_reaches_the_commands_stdin_which_is_then_closed():
    # `cat` ends only when its stdin is closed: a hang here means it never was.
    result = shell.run(invoke.Context(), ["sh", "-c", "cat; echo end"], input="s3cret\n")
    assert result.stdout == "s3cret\nend\n"
    assert "s3cret" not in result.command

