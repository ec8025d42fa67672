"""docs/architecture.md and the source tree name the same modules (like the hooks docs sync test)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
FOLDERS = ("agentkit", "engine", "plugins")


def doc_tree_paths(text: str) -> list[str]:
    """Paths in the first fenced block after '## The tree': indentation gives the folder."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("## The tree"))
    i = next(j for j in range(start, len(lines)) if lines[j].startswith("```")) + 1
    stack: list[tuple[int, str]] = []
    out = []
    while not lines[i].startswith("```"):
        ln = lines[i]
        if ln.strip():
            indent = len(ln) - len(ln.lstrip(" "))
            name = ln.split()[0]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = "/".join([s[1].rstrip("/") for s in stack] + [name.rstrip("/")])
            if name.endswith("/"):
                stack.append((indent, name))
            else:
                out.append(path)
        i += 1
    return out


def source_modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
            if p.name != "__init__.py" and "__pycache__" not in p.parts}


def test_every_module_is_named_in_the_architecture_page():
    named = set(doc_tree_paths(DOC.read_text()))
    missing = sorted(source_modules() - named)
    assert not missing, f"add one line per module to the tree in docs/architecture.md: {missing}"


def test_every_path_in_the_architecture_page_exists():
    stale = [p for p in doc_tree_paths(DOC.read_text()) if not (ROOT / p).is_file()]
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_the_tree_parser_reads_nesting():
    text = "## The tree\n```\nagentkit/\n  api/\n    enums.py  x\n  runner.py  y\nengine/\n  engine.py z\n```\n"
    assert doc_tree_paths(text) == ["agentkit/api/enums.py", "agentkit/runner.py", "engine/engine.py"]
