"""AnyMoE training data: `{"rows": [{"prompt", "expert"}]}` JSON or a `prompt,expert` CSV.

Scope: reading and checking the gate-training dataset of `AnyMoeConfig.dataset_json` (mistral.rs
format: JSON with a top-level `rows` array of `{"prompt": str, "expert": int, "image_urls"?: [str]}`,
or a CSV file with the columns `prompt` and `expert`; the format follows the file suffix), and the
same rows given in code (`(prompt, expert)` pairs or dicts) for `Runner.anymoe_evaluate`.

Non-goals: images (`image_urls` is accepted and ignored: the native engine is text-only),
tokenizing prompts (the plugin renders them through the chat template, as mistral.rs does).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentkit.errors import ConfigError

__all__ = ["TrainingRow", "load_rows", "read_dataset"]


@dataclass(frozen=True)
class TrainingRow:
    """One labelled prompt: route `prompt` to expert `expert` (0 = the base model's MLP)."""

    prompt: str
    expert: int


def _row(where: str, prompt: Any, expert: Any, n_experts: int | None) -> TrainingRow:
    if not isinstance(prompt, str) or not prompt:
        raise ConfigError(f"{where}: `prompt` must be a non-empty string, got {prompt!r}")
    if isinstance(expert, str) and expert.strip().lstrip("-").isdigit():
        expert = int(expert.strip())
    if isinstance(expert, bool) or not isinstance(expert, int):
        raise ConfigError(f"{where}: `expert` must be an integer expert index, got {expert!r}")
    if expert < 0 or (n_experts is not None and expert >= n_experts):
        limit = f"0..{n_experts - 1}" if n_experts is not None else ">= 0"
        raise ConfigError(f"{where}: expert {expert} is out of range: this AnyMoE has {n_experts} experts "
                          f"(0 = the base model, then one per model_ids entry), so use {limit}")
    return TrainingRow(prompt, expert)


def read_dataset(path: str, n_experts: int | None = None) -> list[TrainingRow]:
    """The rows of a dataset file (`.csv`: CSV, anything else: JSON); ConfigError names the problem."""
    if not os.path.isfile(path):
        raise ConfigError(f"AnyMoeConfig.dataset_json: no such file {path!r}; give a JSON file "
                          '{"rows": [{"prompt": ..., "expert": ...}]} or a CSV with prompt,expert columns')
    if path.lower().endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"prompt", "expert"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"dataset {path!r}: the CSV needs the columns prompt and expert "
                                  f"(missing {', '.join(sorted(missing))})")
            rows = [_row(f"dataset {path!r} line {i + 2}", r["prompt"], r["expert"], n_experts)
                    for i, r in enumerate(reader)]
    else:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"dataset {path!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ConfigError(f'dataset {path!r}: expected a JSON object {{"rows": [...]}}')
        rows = []
        for i, r in enumerate(data["rows"]):
            if not isinstance(r, dict):
                raise ConfigError(f"dataset {path!r} rows[{i}]: expected an object with prompt and expert")
            rows.append(_row(f"dataset {path!r} rows[{i}]", r.get("prompt"), r.get("expert"), n_experts))
    if not rows:
        raise ConfigError(f"dataset {path!r} has no rows")
    return rows


def load_rows(data: str | os.PathLike[str] | Iterable[Any], n_experts: int | None = None) -> list[TrainingRow]:
    """Rows from a dataset path, or from `TrainingRow`s, `(prompt, expert)` pairs or dicts."""
    if isinstance(data, (str, os.PathLike)):
        return read_dataset(os.fspath(data), n_experts)
    rows = []
    for i, r in enumerate(data):
        if isinstance(r, TrainingRow):
            r = (r.prompt, r.expert)
        if isinstance(r, dict):
            r = (r.get("prompt"), r.get("expert"))
        if not isinstance(r, (tuple, list)) or len(r) != 2:
            raise ConfigError(f"row {i}: expected (prompt, expert), a dict or a TrainingRow, got {r!r}")
        rows.append(_row(f"row {i}", r[0], r[1], n_experts))
    if not rows:
        raise ConfigError("no rows given")
    return rows
