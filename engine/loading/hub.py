"""Hugging Face hub plumbing for the engine: token sources and offline model-directory resolution.

Scope: parse mistral.rs-style `token_source` strings into a token, and turn a `model_id` (a local
directory or a hub repo id) into a local directory. Hub ids are resolved from the local HF cache
only (`snapshot_download(local_files_only=True)`): this module never makes a network call, so a
missing model fails in milliseconds with a message saying how to provide it, instead of hanging
on huggingface_hub's retries. `read_json()`: the one reader for the JSON files of a model
directory (configs, tokenizer and template files), each caller choosing its error class.

Non-goals: downloading models, revisions/branches other than the cached default, and any torch
work (this module must stay importable without torch).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

from agentkit.errors import ConfigError, ModelLoadError, ModelNotFoundError

__all__ = [
    "DEFAULT_TOKEN_ENV_VAR",
    "TOKEN_SOURCE_FORMS",
    "parse_token_source",
    "resolve_model_dir",
]

DEFAULT_TOKEN_ENV_VAR = "HUGGING_FACE_HUB_TOKEN"
TOKEN_SOURCE_FORMS = (
    "'literal:<token>', 'env:<VAR>' (or 'env' for $HUGGING_FACE_HUB_TOKEN), 'path:<file>', 'cache', 'none'"
)

# A hub repo id: "name" or "org/name"; letters, digits, '-', '_', '.' (not starting with '.' or '-').
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_ID_RE = re.compile(rf"^(?:{_REPO_PART}/)?{_REPO_PART}$")


def _read_token_file(path: str, *, what: str, warn_if_missing: bool) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except FileNotFoundError:
        if warn_if_missing:
            warnings.warn(
                f"{what}: token file {path!r} does not exist; continuing without a token", stacklevel=3
            )
        return None
    except OSError as exc:
        warnings.warn(
            f"{what}: could not read token file {path!r} ({exc}); continuing without a token", stacklevel=3
        )
        return None
    return token or None


def parse_token_source(source: str) -> str | None:
    """Return the HF token described by a mistral.rs `token_source` string, or None.

    Forms: ``literal:<tok>`` (the token itself), ``env:<VAR>`` (environment variable; plain
    ``env`` reads ``HUGGING_FACE_HUB_TOKEN``), ``path:<file>`` (file content, stripped),
    ``cache`` (``$HF_TOKEN`` / ``$HF_HUB_TOKEN``, else ``$HF_TOKEN_PATH``, else
    ``$HF_HOME/token`` or ``~/.cache/huggingface/token``) and ``none``.

    An unset variable or unreadable file gives a warning and None (no cached token at all under
    ``cache`` is the normal offline case and is silent). A source of another form raises
    ConfigError (a ValueError) "Invalid token source format ...".
    """
    if not isinstance(source, str):
        raise TypeError(f"token_source must be a str such as 'cache' or 'none', got {type(source).__name__}")
    kind, sep, value = source.partition(":")
    if kind == "none" and not sep:
        return None
    if kind == "cache" and not sep:
        for var in ("HF_TOKEN", "HF_HUB_TOKEN"):
            token = os.environ.get(var, "").strip()
            if token:
                return token
        token_path = os.environ.get("HF_TOKEN_PATH")
        if not token_path:
            hf_home = os.environ.get("HF_HOME") or os.path.join(
                os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                "huggingface",
            )
            token_path = os.path.join(os.path.expanduser(hf_home), "token")
        return _read_token_file(
            os.path.expanduser(token_path), what="token_source 'cache'", warn_if_missing=False
        )
    if kind == "env":
        var = value if sep else DEFAULT_TOKEN_ENV_VAR
        if not var:
            raise ConfigError(
                f"Invalid token source format {source!r}: 'env:' needs a variable name. Accepted: {TOKEN_SOURCE_FORMS}"
            )
        token = os.environ.get(var)
        if token is None:
            warnings.warn(
                f"token_source {source!r}: environment variable {var} is not set; continuing without a token",
                stacklevel=2,
            )
            return None
        return token.strip() or None
    if kind == "literal" and sep:
        return value or None
    if kind == "path" and sep:
        if not value:
            raise ConfigError(
                f"Invalid token source format {source!r}: 'path:' needs a file name. Accepted: {TOKEN_SOURCE_FORMS}"
            )
        return _read_token_file(
            os.path.expanduser(value), what=f"token_source {source!r}", warn_if_missing=True
        )
    if kind in ("literal", "path"):
        raise ConfigError(
            f"Invalid token source format {source!r}: '{kind}' needs a value ('{kind}:...'). Accepted: {TOKEN_SOURCE_FORMS}"
        )
    raise ConfigError(f"Invalid token source format {source!r}. Accepted: {TOKEN_SOURCE_FORMS}")


def _looks_like_path(model_id: str) -> bool:
    if model_id.startswith(("/", "./", "../", "~", ".\\", "..\\")) or model_id in (".", ".."):
        return True
    if os.sep in model_id or (os.altsep and os.altsep in model_id):
        return not _REPO_ID_RE.match(model_id)
    return False


def _check_file(directory: str, filename: str | None, model_id: str) -> None:
    if filename is None or os.path.isfile(os.path.join(directory, filename)):
        return
    try:
        present = sorted(os.listdir(directory))
    except OSError:
        present = []
    shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
    raise ModelNotFoundError(
        f"model {model_id!r}: file {filename!r} not found in {directory} (it contains: {shown or 'nothing'})"
    )


def resolve_model_dir(
    model_id: str,
    *,
    hf_cache_path: str | None = None,
    token: str | None = None,
    filename: str | None = None,
) -> str:
    """Return the absolute local directory holding `model_id`, without any network access.

    `model_id` is an existing local directory, or a hub repo id (``org/name``) already present in
    the local HF cache (`hf_cache_path`, default the standard hub cache). When `filename` is given
    it must exist inside the directory. Raises ModelNotFoundError (a ValueError) with a fix when the model is not
    available locally: ``no such model directory: ...`` for a path, or a message naming the repo id
    and how to download it for a hub id.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigError(
            f"model id must be a non-empty string (a local directory or a hub id 'org/name'), got {model_id!r}"
        )
    expanded = os.path.expanduser(model_id)
    if os.path.isdir(expanded):
        directory = os.path.abspath(expanded)
        _check_file(directory, filename, model_id)
        return directory
    if os.path.isfile(expanded):
        raise ModelNotFoundError(
            f"model id {model_id!r} is a file, not a directory: pass the directory that contains it"
            " (for GGUF: quantized_model_id=<directory>, quantized_filename=<file name>)"
        )
    if _looks_like_path(model_id) or not _REPO_ID_RE.match(model_id):
        raise ModelNotFoundError(
            f"no such model directory: {model_id!r} (resolved to {os.path.abspath(expanded)})"
        )

    from huggingface_hub import snapshot_download

    try:
        directory = snapshot_download(
            repo_id=model_id,
            cache_dir=hf_cache_path,
            token=token,
            local_files_only=True,
        )
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OSError, ...
        where = f" in HF cache {hf_cache_path!r}" if hf_cache_path else " in the local HF cache"
        raise ModelNotFoundError(
            f"model {model_id!r} is not a local directory and was not found{where}; agentkit does not download"
            f" models. Download it where you have network with `huggingface-cli download {model_id}`"
            f" (or `hf download {model_id}`), or pass a local directory. ({type(exc).__name__})"
        ) from None
    _check_file(directory, filename, model_id)
    return directory


def read_json(path: str, *, missing_ok: bool = False, error: type[ValueError] = ModelLoadError,
              what: str = "JSON file") -> Any:
    """The parsed JSON value in the file at `path`.

    `missing_ok=True` returns None when no file is there. Otherwise an unreadable file or invalid
    JSON raises `error` (a ValueError class: `ModelLoadError` by default) naming `what` and `path`.
    """
    if missing_ok and not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise error(f"{what} {path!r} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise error(f"could not read {what} {path!r}: {exc}") from exc
