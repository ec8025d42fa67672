"""Packaging guards: the three-folder layout installs as one package, and `import agentkit` is light."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    cfg = _setuptools()
    listed = set(cfg["packages"])
    for pkg, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([pkg, *rel.parts]) if rel.parts else pkg
            assert name in listed, f"{name} ({init.parent}) is missing from [tool.setuptools] packages"


def test_no_shadowing_modules_inside_agentkit():
    for name in os.listdir(ROOT / "agentkit"):
        assert not name.startswith(("engine", "plugins")), f"agentkit/{name} would shadow a mapped package"


def test_import_agentkit_does_not_import_torch():
    code = ("import sys, agentkit, agentkit.engine, agentkit.plugins; "
            "from agentkit import Which, ChatCompletionRequest; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'; "
            "print(agentkit.engine.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(os.path.join("engine", "__init__.py"))


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not os.path.exists(ruff):
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    out = subprocess.run([ruff, "check", "agentkit", "engine", "plugins", "tests", "examples", "bench"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_public_all_lists_have_no_duplicates():
    import collections
    import importlib

    for name in ("agentkit", "agentkit.api.agent_options", "agentkit.config", "agentkit.plugin_manager",
                 "agentkit.plugin_host", "agentkit.tools"):
        names = importlib.import_module(name).__all__
        assert [n for n, c in collections.Counter(names).items() if c > 1] == [], name
