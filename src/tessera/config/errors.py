"""Configuration problems, collected and reported all at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tessera.errors import TesseraError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, located as precisely as we can.

    Attributes:
        message: what is wrong, in a sentence.
        file: the file at fault, relative to the project root when possible.
        line: 1-based line in ``file``.
        stage: the stage concerned.
        key: the dotted key path inside the stage (or file) at fault.
        expected: what was expected there.
        got: what was found.
        hint: how to fix it ("did you mean ...").
    """

    message: str
    file: str | None = None
    line: int | None = None
    stage: str | None = None
    key: str | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None

    def location(self) -> str:
        where = self.file or ""
        if self.file and self.line:
            where += f":{self.line}"
        parts = [where] if where else []
        if self.stage:
            parts.append(f"stage '{self.stage}'")
        if self.key:
            parts.append(f"key '{self.key}'")
        return " ".join(parts)

    def render(self) -> str:
        text = self.message
        if self.expected is not None:
            text += f"; expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got}"
        if self.hint:
            text += f" ({self.hint})"
        loc = self.location()
        return f"{loc}: {text}" if loc else text

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ConfigError(TesseraError):
    """The project's configuration is wrong; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: Problem | Sequence[Problem]) -> None:
        self.problems: list[Problem] = (
            [problems] if isinstance(problems, Problem) else list(problems)
        )
        super().__init__(self.render())

    def render(self) -> str:
        """One problem as is (the CLI prefixes "error: "); several as a numbered list.

        Problems are listed by file and line; those without both keep their order, at the end.
        """
        if len(self.problems) == 1:
            return self.problems[0].render()
        lines = [f"{len(self.problems)} configuration errors:"]
        lines += [f"  {i}. {p.render()}" for i, p in enumerate(self.sorted_problems(), 1)]
        return "\n".join(lines)

    def sorted_problems(self) -> list[Problem]:
        """The problems ordered by (file, line); unlocated ones last, in their original order."""
        located = [p for p in self.problems if p.file is not None and p.line is not None]
        others = [p for p in self.problems if p.file is None or p.line is None]
        return sorted(located, key=lambda p: (p.file or "", p.line or 0)) + others


def raise_if(problems: Iterable[Problem]) -> None:
    """Raise one ``ConfigError`` carrying all ``problems``, if there are any."""
    found = list(problems)
    if found:
        raise ConfigError(found)


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A "did you mean 'x'?" hint for a mistyped name, or None."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def describe(value: Any, limit: int = 60) -> str:
    """A short, typed description of a value for "got ..." messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"
