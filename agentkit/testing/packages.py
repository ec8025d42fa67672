"""Plugin distributions for tests: make a plugin package discoverable through its entry points.

Scope: `write_dist_info(site, name, version, entry_points)` writes a `*.dist-info` folder by hand;
`install_plugin_package(example_dir, tmp_path, monkeypatch)` reads a plugin project's
`pyproject.toml` and makes it importable and discoverable without pip (`InstalledPackage`).

Non-goals: building wheels, resolving dependencies, the models tests run on
(`agentkit.testing.models`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InstalledPackage:
    """What `install_plugin_package` made visible: the distribution and its entry points by group."""

    name: str
    version: str
    dist_info: Path
    entry_points: dict[str, dict[str, str]]


def write_dist_info(site: Path, name: str, version: str,
                    entry_points: Mapping[str, Mapping[str, str]]) -> Path:
    """Write `<site>/<name>-<version>.dist-info` with METADATA and entry_points.txt; returns its path."""
    info = Path(site) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{ep_name} = {target}" for ep_name, target in eps.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def install_plugin_package(example_dir: Path, tmp_path: Path, monkeypatch: Any) -> InstalledPackage:
    """Make the distribution in `example_dir` (a folder with pyproject.toml) importable and discoverable.

    Reads `[project] name/version` and `[project.entry-points.*]` from its pyproject.toml, writes
    the dist-info into `tmp_path/site`, and prepends that directory and `example_dir` (where the
    plugin's modules live) to `sys.path` for the duration of the test.
    """
    import tomllib  # Python 3.11+

    example_dir = Path(example_dir)
    with open(example_dir / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    entry_points = {group: dict(eps) for group, eps in project.get("entry-points", {}).items()}
    site = Path(tmp_path) / "site"
    info = write_dist_info(site, project["name"], project["version"], entry_points)
    monkeypatch.syspath_prepend(str(example_dir))
    monkeypatch.syspath_prepend(str(site))
    return InstalledPackage(project["name"], project["version"], info, entry_points)
