"""minigt.save and the file system: where a save lands (links, devices, folders), what a killed
save leaves behind, and errors that name the path the user gave; a damaged header on load."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minigt
from minigt import serialization

STALE = ".ckpt.npz.0123456789abcdef0123456789abcdef.tmp"  # what a save killed mid-way left


def test_saving_through_a_symlink_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "epoch3.npz"
    minigt.save({"step": 1}, target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    minigt.save({"step": 2}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert minigt.load(target) == {"step": 2} and minigt.load(link) == {"step": 2}


def test_saving_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "new.npz")
    minigt.save({"step": 1}, link)
    assert link.is_symlink() and minigt.load(tmp_path / "new.npz") == {"step": 1}


def test_a_device_is_refused_and_left_as_it_is(tmp_path):
    """Never /dev/null itself: a minigt without this check, run as root, would replace it."""
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    before = os.stat(tmp_path / "null")
    with pytest.raises(ValueError, match=r"null' is a character device; a checkpoint replaces "
                                         r"only a regular file"):
        minigt.save({"step": 1}, tmp_path / "null")
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "null")
    with pytest.raises(ValueError, match=rf"'{link}' leads to '{tmp_path}/null', a character"):
        minigt.save({"step": 1}, link)
    after = os.stat(tmp_path / "null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "null"] and link.is_symlink()


def test_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="'.*pipe' is a named pipe"):
        minigt.save({"step": 1}, tmp_path / "pipe")


def test_a_folder_is_refused_by_name(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"minigt.save: '{tmp_path}' is a folder"):
        minigt.save({"step": 1}, tmp_path)
    assert os.listdir(tmp_path) == []


def test_an_os_error_names_the_path_given(tmp_path):
    path = str(tmp_path / "missing" / "ckpt.npz")
    with pytest.raises(FileNotFoundError, match=f"minigt.save: cannot write '{path}': No such"):
        minigt.save({"step": 1}, path)


def test_an_os_error_while_writing_names_the_path_given(tmp_path, monkeypatch):
    def disk_full(file, arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(serialization, "_write_arrays", disk_full)
    path = str(tmp_path / "ckpt.npz")
    with pytest.raises(OSError, match=f"cannot write '{path}': No space left") as error:
        minigt.save({"step": 1}, path)
    assert error.value.errno == 28
    assert os.listdir(tmp_path) == []


KILLED_MID_SAVE = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import minigt
from minigt import serialization

minigt.save({{"step": 1}}, "ckpt.npz")
real_write = serialization._write_arrays

def write_then_die(file, arrays):
    real_write(file, arrays)
    file.flush()
    os.kill(os.getpid(), signal.{signal})
    time.sleep(30)

serialization._write_arrays = write_then_die
{before}
minigt.save({{"step": 2, "w": minigt.zeros(1000)}}, "ckpt.npz")
"""


def killed_mid_save(folder, signal_name: str, before: str = "") -> subprocess.CompletedProcess:
    script = KILLED_MID_SAVE.format(root=os.getcwd(), signal=signal_name, before=before)
    return subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_save_killed_midway_leaves_no_temporary_file(tmp_path, signal_name):
    done = killed_mid_save(tmp_path, signal_name)
    assert done.returncode == -getattr(signal, signal_name), done.stderr  # it died by the signal
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert minigt.load(tmp_path / "ckpt.npz") == {"step": 1}


def test_the_next_save_removes_what_a_killed_save_left(tmp_path):
    """Where files cannot be made unnamed (no O_TMPFILE), a killed save leaves its named
    temporary file; the next save to the same path removes it, and only it."""
    done = killed_mid_save(tmp_path, "SIGKILL", before="del os.O_TMPFILE")
    assert done.returncode == -signal.SIGKILL
    left = [name for name in os.listdir(tmp_path) if name != "ckpt.npz"]
    assert len(left) == 1 and left[0].startswith(".ckpt.npz.") and left[0].endswith(".tmp")
    assert (tmp_path / left[0]).stat().st_size > 4000  # the whole archive, never renamed
    others = [STALE.replace("ckpt", "other"), ".ckpt.npz.notes.tmp", "ckpt.npz.1.tmp"]
    for name in [STALE, *others]:
        (tmp_path / name).write_bytes(b"x")
    minigt.save({"step": 3}, tmp_path / "ckpt.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz", *others])
    assert minigt.load(tmp_path / "ckpt.npz") == {"step": 3}


def test_saves_without_o_tmpfile_still_replace_atomically(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    minigt.save({"step": 1}, tmp_path / "ckpt.npz")
    minigt.save({"step": 2}, tmp_path / "ckpt.npz")
    assert minigt.load(tmp_path / "ckpt.npz") == {"step": 2}
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_a_header_naming_a_missing_array_is_a_clear_error(tmp_path):
    header = {"format": "minigt-checkpoint", "version": 1,
              "tree": {"kind": "dict", "items": [["w", {"kind": "tensor", "key": "a7",
                                                         "requires_grad": False}]]}}
    path = tmp_path / "hand_made.npz"
    np.savez(path, a0=np.ones(2), __minigt__=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(ValueError, match=rf"minigt.load: '{path}' has a damaged '__minigt__' entry: "
                                         r"it names the array 'a7' for obj\['w'\], which the "
                                         r"archive lacks"):
        minigt.load(path)


@pytest.mark.parametrize("tree", [{"kind": "tensor"}, {"kind": "weird", "key": "a0"},
                                  {"kind": "dict", "items": [1]}, {"no": "kind"}])
def test_a_malformed_header_is_a_clear_error(tmp_path, tree):
    header = {"format": "minigt-checkpoint", "version": 1, "tree": tree}
    path = tmp_path / "hand_made.npz"
    np.savez(path, a0=np.ones(2), __minigt__=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(ValueError, match=rf"minigt.load: '{path}' has a damaged '__minigt__'"):
        minigt.load(path)
