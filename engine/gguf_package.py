"""Import the real `gguf` package even when a user's own `gguf.py` shadows it.

mistral.rs's example is called `gguf.py`. Run as `python gguf.py`, the script's folder comes
first on `sys.path`, so a plain `import gguf` inside agentkit would import the script a second time
(as module `gguf`), which imports agentkit again and ends in a circular-import error. Every
agentkit module that needs the package calls `ensure_gguf()` first: it finds the package on
`sys.path` skipping folders where `gguf` is a single-file module (a `gguf.py` without a `gguf/`
package beside it), loads it and registers it as `sys.modules["gguf"]`, so later `from gguf import
...` statements (ours, transformers', the user's) all get the package.

Non-goals: any other shadowed dependency; vendoring gguf.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType

__all__ = ["ensure_gguf"]

_lock = threading.Lock()


def _shadowing_file(entry: str) -> str | None:
    """The `gguf.py` (or compiled twin) in the sys.path `entry` that is not the package, if any."""
    folder = entry or os.getcwd()
    if os.path.isfile(os.path.join(folder, "gguf", "__init__.py")):
        return None
    for name in ("gguf.py", "gguf.pyc"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def ensure_gguf() -> ModuleType:
    """The installed `gguf` package, loaded into `sys.modules` past any shadowing `gguf.py`.

    Raises ImportError naming the shadowing file when the package itself is not installed.
    """
    mod = sys.modules.get("gguf")
    if mod is not None and getattr(mod, "__path__", None) is not None:
        return mod
    with _lock:
        mod = sys.modules.get("gguf")
        if mod is not None and getattr(mod, "__path__", None) is not None:
            return mod
        shadows = [f for f in (_shadowing_file(e) for e in sys.path if isinstance(e, str)) if f]
        clean = [e for e in sys.path if isinstance(e, str) and _shadowing_file(e) is None]
        spec = importlib.machinery.PathFinder.find_spec("gguf", clean)
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            where = f"; {shadows[0]} is a module named gguf, not the package" if shadows else ""
            raise ImportError(f"the gguf package is not installed (pip install 'gguf>=0.17'){where}")
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get("gguf")
        sys.modules["gguf"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if previous is None:
                sys.modules.pop("gguf", None)
            else:
                sys.modules["gguf"] = previous
            raise
        return module
