"""Import the real dependency packages even when a user's script shadows one of their names.

mistral.rs's example scripts are called `gguf.py`, `regex.py`, `lark.py` and `llguidance.py`. Run
as `python regex.py`, the script's folder comes first on `sys.path`, so when transformers later
runs `import regex` it imports the script a second time, which imports agentkit again: a
circular-import error (`gguf.py`) or a deadlock on the import lock (`regex.py`, imported from the
model-loading thread). `protect_dependencies()` runs when `agentkit.engine` is first imported: for
each package of `PROTECTED` that a plain `.py` file on `sys.path` shadows, it loads the installed
package from the other `sys.path` entries and registers it in `sys.modules`, so every later
`import <name>` (agentkit's, transformers', the user's) gets the package. Without a shadowing
file it only costs a few `stat` calls. `ensure_package(name)` does it for one package and raises
ImportError naming the shadowing file when the package itself is missing.

Non-goals: shadowing by a folder (a package of the same name), other dependencies than `PROTECTED`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType

__all__ = ["PROTECTED", "ensure_package", "protect_dependencies"]

#: Packages agentkit's engine imports (itself or through transformers) whose names a script may take.
PROTECTED = ("gguf", "regex", "llguidance", "lark", "tokenizers", "safetensors", "jinja2", "yaml")

_lock = threading.RLock()


def _shadowing_file(entry: str, name: str) -> str | None:
    """The `<name>.py` (or `.pyc`) in the sys.path `entry` when that folder has no package `name`."""
    folder = entry or os.getcwd()
    if os.path.isfile(os.path.join(folder, name, "__init__.py")):
        return None
    for file in (f"{name}.py", f"{name}.pyc"):
        path = os.path.join(folder, file)
        if os.path.isfile(path):
            return path
    return None


def _is_package(mod: ModuleType | None) -> bool:
    return mod is not None and getattr(mod, "__path__", None) is not None


def ensure_package(name: str) -> ModuleType:
    """The installed package `name`, loaded into `sys.modules` past any shadowing `<name>.py`."""
    mod = sys.modules.get(name)
    if _is_package(mod):
        return mod  # type: ignore[return-value]
    with _lock:
        mod = sys.modules.get(name)
        if _is_package(mod):
            return mod  # type: ignore[return-value]
        entries = [e for e in sys.path if isinstance(e, str)]
        shadows = [f for f in (_shadowing_file(e, name) for e in entries) if f]
        spec = importlib.machinery.PathFinder.find_spec(name, [e for e in entries if _shadowing_file(e, name) is None])
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            where = f"; {shadows[0]} is a script named {name}, not the package" if shadows else ""
            raise ImportError(f"the {name} package is not installed{where}")
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(name)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
            raise
        return module


def protect_dependencies(names: tuple[str, ...] = PROTECTED) -> list[str]:
    """Pre-load each package of `names` that a script on `sys.path` shadows; returns those loaded.

    A shadowed name whose package is not installed is left alone (nothing to protect).
    """
    loaded = []
    entries = [e for e in sys.path if isinstance(e, str)]
    for name in names:
        if _is_package(sys.modules.get(name)) or not any(_shadowing_file(e, name) for e in entries):
            continue
        try:
            ensure_package(name)
        except ImportError:
            continue
        loaded.append(name)
    return loaded
