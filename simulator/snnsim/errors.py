"""Typed errors of snnsim.

The library raises these; only the CLI turns them into one-paragraph messages and exit status 2.
Every error names where the problem is (file, key or array), what was expected, what was found,
and, when one can be guessed, a suggestion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# Longest text each part of a message keeps. A value quoted back to the user can be anything the
# input holds (a YAML alias bomb expands a 3 KB file to gigabytes); a message stays one paragraph.
MAX_FOUND_CHARS = 200  # found: and expected: (and the key)
MAX_SUGGESTION_CHARS = 500  # a hint may list a dozen valid names
MAX_MESSAGE_CHARS = 1000  # the message and the file (a path can be long, but not unbounded)

_CLIPPED_TAIL = re.compile(r"\.\.\. \(\d{1,20} more characters\)")


def clip(text: str | None, limit: int = MAX_FOUND_CHARS) -> str | None:
    """``text`` cut to ``limit`` characters, ending with "... (N more characters)" when cut.

    Idempotent: a text already clipped to ``limit`` (an error re-raised with another's ``found``)
    is kept as it is, so the count of what was cut stays the true one."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    if len(text) - limit <= 45 and _CLIPPED_TAIL.fullmatch(text, limit):
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class SnnsimError(Exception):
    """Base of every error snnsim raises on purpose (bad input, impossible configuration).

    Every text part is clipped here, once, for every error type (:func:`clip`): no input can make
    a message, or the error object that holds it, larger than a few kilobytes.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.message = clip(message, MAX_MESSAGE_CHARS)
        self.file = clip(file, MAX_MESSAGE_CHARS)
        self.key = clip(key, MAX_FOUND_CHARS)
        self.expected = clip(expected, MAX_FOUND_CHARS)
        self.found = clip(found, MAX_FOUND_CHARS)
        self.suggestion = clip(suggestion, MAX_SUGGESTION_CHARS)
        super().__init__(self.render())

    def render(self) -> str:
        """The full human-readable message, one fact per line."""
        where = ""
        if self.file:
            where += f"{self.file}"
        if self.key:
            where += f"{': ' if where else ''}{self.key}"
        lines = [f"{where}: {self.message}" if where else self.message]
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        if self.suggestion:
            lines.append(f"  hint:     {self.suggestion}")
        return "\n".join(lines)


class ConfigError(SnnsimError):
    """A hardware configuration (YAML or --set override) is malformed or out of range."""


class WorkloadError(SnnsimError):
    """A spike trace is malformed, truncated, or disagrees with its own manifest."""


class MappingError(SnnsimError):
    """A workload cannot run on the given hardware (e.g. the image is larger than the pixel array)."""


class UsageError(SnnsimError):
    """The command line itself is wrong (unknown option value, missing file)."""


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` by edit similarity, or None if nothing is close."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' suggestion, or a list of the valid names when none is close."""
    cands = sorted(candidates)
    best = nearest(name, cands)
    if best is not None:
        return f"did you mean '{best}'?"
    if cands:
        shown = ", ".join(cands[:12]) + (", ..." if len(cands) > 12 else "")
        return f"valid names: {shown}"
    return None
