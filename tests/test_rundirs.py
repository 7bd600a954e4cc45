"""Run folders: private, named after their owner, swept when the owner is gone, never when kept."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from meshjwt.localmesh import processes, rundirs


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_new_folder_is_private_and_names_this_process(tmp_path):
    path = rundirs.create(rundirs.new_path(parent=tmp_path))
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    assert path.name.startswith(f"{rundirs.PREFIX}{os.getpid()}-")
    assert rundirs.owner_alive(path)
    rundirs.remove(path)
    assert not path.exists()


@pytest.mark.integration
def test_sweep_removes_only_folders_whose_owner_is_gone(tmp_path):
    mine = rundirs.create(rundirs.new_path(parent=tmp_path))
    orphan = tmp_path / f"{rundirs.PREFIX}{dead_pid()}-123-0123abcd"
    reused_pid = tmp_path / f"{rundirs.PREFIX}{os.getpid()}-1-0123abcd"  # this pid, another start time
    kept = tmp_path / f"{rundirs.PREFIX}{dead_pid()}-123-4567abcd"
    foreign = tmp_path / f"{rundirs.PREFIX}abcdef"  # not ours to judge: an older naming, or someone else's
    for folder in (orphan, reused_pid, kept, foreign):
        (folder / "pki").mkdir(parents=True)
        (folder / "pki" / "server-key.pem").write_text("secret")
    rundirs.keep(kept)
    assert sorted(rundirs.sweep(parent=tmp_path)) == sorted([orphan, reused_pid])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, kept, foreign))
    rundirs.remove(mine)


def test_remove_owned_is_the_interrupts_last_resort(tmp_path):
    owned = rundirs.create(rundirs.new_path(parent=tmp_path))
    kept = rundirs.create(rundirs.new_path(parent=tmp_path), remove_on_interrupt=False)
    (owned / "jwks.json").write_text("{}")
    rundirs.remove_owned()
    assert not owned.exists() and kept.exists()


@pytest.mark.integration
def test_kill_all_kills_every_tracked_group_at_once(tmp_path):
    children = [processes.spawn([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    processes.kill_all()
    for child in children:
        assert child.wait(timeout=5) == -9
        processes.terminate(child)  # reaps and forgets it
    assert not any(child in processes._live for child in children)  # noqa: SLF001


def test_paths_are_under_the_system_temp_folder_by_default():
    assert rundirs.new_path().parent == Path(tempfile.gettempdir())
