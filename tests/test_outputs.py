import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest

from transfer_neurons.outputs import publish, save_npy, staged_folder, write_bytes, write_json


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_get_the_mode_of_an_ordinary_file(tmp_path, mask, expected):
    """Atomic writes go through a private temp file; the result must still be readable as the umask allows
    (a study on a shared file system, a report.html meant to be shared)."""
    with umask(mask):
        files = [write_bytes(tmp_path / "a.bin", b"x"), write_json(tmp_path / "b.json", {"a": 1}),
                 save_npy(tmp_path / "c.npy", np.zeros(2))]
        with staged_folder(tmp_path / "out") as staged:
            write_json(staged / "sub" / "d.json", [])
    for path in [*files, tmp_path / "out" / "sub" / "d.json"]:
        assert mode(path) == expected, path


def test_publish_gives_a_temp_folder_an_ordinary_folders_mode(tmp_path):
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    with umask(0o022):
        publish(folder)
    assert mode(folder) == 0o755


def test_a_rerun_removes_what_its_previous_run_left_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out, owner="similarity") as tmp:
        for name in ("a.csv", "a.svg", "lm/random#0/results.json"):
            write_bytes(tmp / name, b"1")
    with staged_folder(out, owner="ablate") as tmp:  # another command sharing the folder
        write_bytes(tmp / "b.csv", b"2")
    write_bytes(out / "notes.txt", b"mine")  # the user's own file
    with staged_folder(out, owner="similarity") as tmp:  # rerun with other options: no svg, no random control
        write_bytes(tmp / "a.csv", b"3")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".transfer-neurons-files.json", "a.csv", "b.csv", "notes.txt"]
    assert (out / "a.csv").read_bytes() == b"3" and not (out / "lm").exists()


def test_a_record_naming_paths_outside_the_folder_removes_nothing_there(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "keep.txt"
    outside.write_bytes(b"keep")
    write_json(out / ".transfer-neurons-files.json", {"similarity": ["../keep.txt", "/etc/hostname"]})
    with staged_folder(out, owner="similarity") as tmp:
        write_bytes(tmp / "a.csv", b"1")
    assert outside.read_bytes() == b"keep"
