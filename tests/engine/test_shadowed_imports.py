"""A user's script named like a dependency (mistral.rs's gguf.py, regex.py, llguidance.py) does not
replace that package inside agentkit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentkit.engine.shadowed_imports import ensure_package, protect_dependencies

CHECK = (
    "import sys; sys.path.insert(0, {folder!r})\n"
    "import agentkit.engine, gguf, regex, llguidance\n"
    "print(gguf.__file__); print(regex.__file__); print(llguidance.__file__)\n"
)


def test_engine_import_loads_the_real_packages_past_shadowing_scripts(tmp_path):
    for name in ("gguf", "regex", "llguidance"):
        (tmp_path / f"{name}.py").write_text("raise SystemExit('the shadowing script was imported')\n")
    proc = subprocess.run([sys.executable, "-c", CHECK.format(folder=str(tmp_path))], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = proc.stdout.split()
    assert len(files) == 3 and all(f.endswith("__init__.py") and str(tmp_path) not in f for f in files)


def test_a_missing_package_names_the_shadowing_file(tmp_path, monkeypatch):
    (tmp_path / "agentkit_no_such_pkg.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match=r"agentkit_no_such_pkg.py is a script named agentkit_no_such_pkg"):
        ensure_package("agentkit_no_such_pkg")
    assert protect_dependencies(("agentkit_no_such_pkg",)) == []  # nothing installed to protect: left alone
