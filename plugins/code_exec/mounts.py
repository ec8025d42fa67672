"""What the code and shell tools find in their work directory: the request's input files and skills.

Scope (runner-api.md §2.2 step 1, §2.9):
- `mount_input_files()`: each `InputFile` of the turn (already stored by the agent loop as a
  `File`) is written into the work directory under its base name, so code (`open("data.csv")`)
  and shell (`cat data.csv`) see it.
- `mount_skills()`: each `ShellSkillMount` is copied into `skills/<name>/` and made read-only:
  files 0444, folders 0555, and (when the host runs as root) owned by `nobody`, so neither the
  executor's hand-over of root-owned files to the sandbox uid nor the sandboxed code can change
  them. The sandboxed code owns the work directory, so it could still move the `skills` folder
  aside; without a sandbox (or without root) the modes are advice only.
- `skills_note()` / `inputs_note()`: the system notes describing them to the model.

Non-goals: the file previews (the agent loop shows them), reading files for the model
(`agentkit.plugins.files`), and sandboxing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentkit.api.agent_options import ShellSkillMount
    from agentkit.api.files import File

__all__ = ["SKILLS_DIR", "inputs_note", "mount_input_files", "mount_skills", "remove_tree", "safe_name",
           "skills_note"]

SKILLS_DIR = "skills"


def safe_name(name: str) -> str:
    """The base name a file gets in the work directory; ValueError for names that cannot be one."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    if not base or base in (".", "..") or base.startswith(".") or "\x00" in base:
        raise ValueError(f"input file name {name!r} cannot be mounted: use a plain, non-hidden file name")
    if base == SKILLS_DIR:
        raise ValueError(f"input file name {name!r} is reserved for the skills folder; rename the file")
    return base


def mount_input_files(workdir: Path, files: Iterable[File]) -> tuple[list[str], list[str]]:
    """Write each file's body into `workdir` under `safe_name(file.name)`.

    Returns (names written, in order; "name: why" for each file left out). A file already there
    with the same bytes is left alone; a different one is replaced. A name that cannot be a plain
    file of the work directory (hidden, a folder or link there) is left out, as are error
    placeholders and elided bodies.
    """
    mounted: list[str] = []
    skipped: list[str] = []
    for file in files:
        if file.is_error() or file.is_truncated():
            continue
        try:
            name = safe_name(file.name)
        except ValueError as exc:
            skipped.append(f"{file.name}: {exc}")
            continue
        path = workdir / name
        if path.is_dir() or path.is_symlink():
            skipped.append(f"{file.name}: {name!r} is a folder or link in the working directory")
            continue
        data = file.content()
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        mounted.append(name)
    return mounted, skipped


def _tree_digest(root: Path) -> str:
    """A digest of a folder's relative paths and bytes (to skip copying an unchanged skill)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
    return h.hexdigest()


# the owner of mounted skills when the host is root: neither root (whose files the executor hands
# to the sandbox uid) nor the sandbox uid
_SKILL_OWNER = 65534


def _set_writable(root: Path, writable: bool) -> None:
    if not writable and os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                os.chown(name, _SKILL_OWNER, _SKILL_OWNER, follow_symlinks=False)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755 if writable else 0o555)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                exe = os.stat(path).st_mode & stat.S_IXUSR
                os.chmod(path, (0o755 if exe else 0o644) if writable else (0o555 if exe else 0o444))


def remove_tree(root: Path) -> None:
    """Delete a work directory, read-only skill folders included (errors ignored)."""
    if root.is_dir():
        try:
            _set_writable(root, True)
        except OSError:
            pass
        shutil.rmtree(root, ignore_errors=True)


def mount_skills(workdir: Path, skills: Sequence[ShellSkillMount]) -> list[str]:
    """Copy each skill folder to `workdir/skills/<name>` read-only; the relative paths, in order.

    Raises ValueError when a `source_path` is not a folder, or two skills share a name.
    Symbolic links inside a skill are not followed (copied as links).
    """
    names = [s.name for s in skills]
    if len(set(names)) != len(names):
        raise ValueError(f"shell_skills names must be unique, got {names}")
    mounted: list[str] = []
    if (workdir / SKILLS_DIR).is_dir():
        os.chmod(workdir / SKILLS_DIR, 0o755)  # to add or replace skills below it
    for skill in skills:
        source = Path(skill.source_path)
        if not source.is_dir():
            raise ValueError(f"ShellSkillMount {skill.name!r}: source_path {str(source)!r} is not a folder")
        target = workdir / SKILLS_DIR / skill.name
        if not (target.is_dir() and _tree_digest(target) == _tree_digest(source)):
            if target.exists():
                _set_writable(target, True)
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, symlinks=True)
        _set_writable(target, False)
        mounted.append(f"{SKILLS_DIR}/{skill.name}")
    if skills:
        _set_writable_dir(workdir / SKILLS_DIR)
    return mounted


def _set_writable_dir(folder: Path) -> None:
    """The `skills` folder itself: not writable by the sandboxed code (no new or renamed skills)."""
    if os.geteuid() == 0:
        os.chown(folder, _SKILL_OWNER, _SKILL_OWNER, follow_symlinks=False)
    os.chmod(folder, 0o555)


def skills_note(skills: Sequence[ShellSkillMount]) -> str:
    """The system note listing mounted skills (name, description, where its SKILL.md is)."""
    lines = ["Skills are mounted read-only in the shell working directory. Read a skill's SKILL.md "
             "(for example with `cat`) before using it:"]
    for skill in skills:
        hint = f"{SKILLS_DIR}/{skill.name}/SKILL.md"
        lines.append(f"- {skill.name}: {skill.description} (instructions: {hint})")
    return "\n".join(lines)


def inputs_note(names: Sequence[str], skipped: Sequence[str] = ()) -> str:
    """The system note saying where the input files are for code and shell (and which are not)."""
    text = ("The user's input files are in the working directory of the code and shell tools: "
            + ", ".join(names) + "." if names else "")
    if skipped:
        text += (" " if text else "") + "Not in the working directory: " + "; ".join(skipped) + "."
    return text
