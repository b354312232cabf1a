"""The one error type a curator can cause, and its structured forms.

The CLI prints these without a traceback and the app shows them in an error box; anything else
that escapes is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


class CuratorError(Exception):
    """A problem the user can fix (bad input, unknown dataset, wrong option)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input row: where it is and what is wrong."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" [{self.field}]"
        return f"{where}: {self.message}"


class ImportFailed(CuratorError):
    """An import found problems and wrote nothing."""

    def __init__(self, problems: list[Problem], truncated: int = 0):
        self.problems = problems
        self.truncated = truncated
        lines = [str(p) for p in problems]
        if truncated:
            lines.append(f"... and {truncated} more problem{'s' * (truncated != 1)}")
        if len(problems) == 1 and not truncated and problems[0].line is None:
            # A refusal of the whole file (an existing dataset, an ambiguous scale): one line.
            super().__init__(f"import refused, nothing was written: {lines[0]}")
            return
        total = len(problems) + truncated
        noun = "problem" if total == 1 else "problems"
        super().__init__(
            f"import failed, nothing was written ({total} {noun}):\n" + "\n".join(lines)
        )
