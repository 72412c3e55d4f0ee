"""How a printed command is spelled: it runs as printed in a new shell where the
virtual environment is not activated (its folder not on PATH, no PYTHONPATH)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pipeline import program as program_module
from pipeline.program import SCRIPT, command, program
from pipeline.viewer.command import view_command

SCRIPTS = Path(sysconfig.get_path("scripts"))
INSTALLED = (SCRIPTS / SCRIPT).is_file()


def _new_shell(tmp_path: Path) -> dict[str, str]:
    """The environment of a new shell: the system's PATH without the interpreter's folder."""
    path = [
        p
        for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if p and Path(p).resolve() != SCRIPTS.resolve()
    ]
    return {"PATH": os.pathsep.join(path or ["/usr/bin", "/bin"]), "HOME": str(tmp_path), "LANG": "C.UTF-8"}


@pytest.mark.skipif(not INSTALLED, reason="the package's console script is not installed next to this interpreter")
def test_the_console_script_by_its_path_when_its_folder_is_not_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert program() == shlex.quote(str(SCRIPTS / SCRIPT))
    monkeypatch.setenv("PATH", f"{SCRIPTS}{os.pathsep}/usr/bin:/bin")  # an activated environment
    assert program() == SCRIPT


def test_the_interpreter_when_no_console_script_is_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(program_module.sysconfig, "get_path", lambda name: str(tmp_path))
    assert program() == shlex.join([sys.executable, "-m", "pipeline"])
    assert (
        command("status", "--run-dir", tmp_path / "a b")
        == f"{shlex.join([sys.executable, '-m', 'pipeline'])} status --run-dir '{tmp_path / 'a b'}'"
    )


def test_the_printed_map_command_runs_in_a_new_shell(tmp_path):
    """The run's last line (``map: ...``) and the other printed commands start the program
    in a shell without the virtual environment: a missing run is refused by the program
    itself (exit 2 naming the folder), not by the shell or Python (127, ModuleNotFoundError).
    """
    missing = tmp_path / "no run here"
    line = view_command(missing)
    done = subprocess.run(
        line, shell=True, cwd=tmp_path, env=_new_shell(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, (line, done.returncode, done.stderr[-2000:])
    assert str(missing) in done.stderr and "Error" not in done.stderr
    done = subprocess.run(
        command("status", "--help"),
        shell=True,
        cwd=tmp_path,
        env=_new_shell(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "--run-dir" in done.stdout, done.stderr[-2000:]
