"""Input files and skills in the work directory, and the notes that describe them."""

from __future__ import annotations

import os
import stat

import pytest

from agentkit.api.agent_options import ShellSkillMount
from agentkit.api.files import InputFile
from agentkit.plugins.code_exec.mounts import (
    inputs_note,
    mount_input_files,
    mount_skills,
    remove_tree,
    safe_name,
    skills_note,
)


def test_input_files_are_written_under_their_base_name(tmp_path):
    files = [InputFile.from_text("data.csv", "a,b\n1,2\n").to_file(), InputFile("dir/img.png", b"\x89PNG").to_file(),
             InputFile.from_text(".env", "SECRET=1").to_file()]
    names, skipped = mount_input_files(tmp_path, files)
    assert names == ["data.csv", "img.png"] and len(skipped) == 1 and skipped[0].startswith(".env: ")
    assert not (tmp_path / ".env").exists()
    assert "Not in the working directory: .env" in inputs_note(names, skipped)
    assert (tmp_path / "data.csv").read_text() == "a,b\n1,2\n"
    assert (tmp_path / "img.png").read_bytes() == b"\x89PNG"
    assert "data.csv, img.png" in inputs_note(["data.csv", "img.png"])


@pytest.mark.parametrize("name", ["..", ".env", "../", "skills"])
def test_names_that_cannot_be_mounted_are_refused(name):
    with pytest.raises(ValueError, match="input file name"):
        safe_name(name)


def _skill(tmp_path, name="invoice-auditor"):
    src = tmp_path / "src" / name
    src.mkdir(parents=True)
    (src / "SKILL.md").write_text("# Invoice Auditor\n")
    (src / "check.py").write_text("print('ok')\n")
    os.chmod(src / "check.py", 0o755)
    return ShellSkillMount(name=name, description="Checks invoices.", source_path=str(src))


def test_skills_are_copied_read_only_and_described(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    skill = _skill(tmp_path)
    assert mount_skills(work, [skill]) == ["skills/invoice-auditor"]
    target = work / "skills" / "invoice-auditor"
    assert (target / "SKILL.md").read_text() == "# Invoice Auditor\n"
    assert stat.S_IMODE((target / "SKILL.md").stat().st_mode) == 0o444
    assert stat.S_IMODE((target / "check.py").stat().st_mode) == 0o555
    assert stat.S_IMODE(target.stat().st_mode) == 0o555
    note = skills_note([skill])
    assert "invoice-auditor: Checks invoices." in note and "skills/invoice-auditor/SKILL.md" in note
    # a second turn with a changed skill replaces the copy (read-only folders included)
    (tmp_path / "src" / "invoice-auditor" / "SKILL.md").write_text("# v2\n")
    mount_skills(work, [skill])
    assert (target / "SKILL.md").read_text() == "# v2\n"
    remove_tree(work)
    assert not work.exists()


def test_skill_errors_name_the_skill(tmp_path):
    missing = ShellSkillMount(name="nope", description="d", source_path=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="'nope'.*not a folder"):
        mount_skills(tmp_path, [missing])
    skill = _skill(tmp_path)
    with pytest.raises(ValueError, match="unique"):
        mount_skills(tmp_path, [skill, skill])
