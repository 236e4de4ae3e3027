"""Errors shared by every module: each says what is wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


class AppfError(Exception):
    """Base class of appf's own errors."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: where (field), what was expected, what was found."""

    field: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, found {self.found}"


class EpisodeValidationError(AppfError):
    """Every problem of one episode, collected into a single error."""

    def __init__(self, dataset: str, episode_id: str, problems: list[Problem]):
        self.dataset = dataset
        self.episode_id = episode_id
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"episode {dataset}/{episode_id} is invalid ({len(self.problems)} problem(s)):\n{lines}"
        )


class SourceError(AppfError):
    """A dataset file could not be read; names the file, episode and field."""

    def __init__(self, message: str, *, path: str = "", episode_id: str = "", field: str = ""):
        self.path = path
        self.episode_id = episode_id
        self.field = field
        where = ", ".join(
            f"{k}={v}" for k, v in (("file", path), ("episode", episode_id), ("field", field)) if v
        )
        super().__init__(f"{message} [{where}]" if where else message)


class ConfigError(AppfError):
    """The job configuration is wrong; the message says which key and what is allowed."""
