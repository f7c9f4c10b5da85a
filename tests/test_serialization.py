"""minigt.save / minigt.load: round trips, atomic writes, no pickle, clear errors."""
import os
import pickle
import zipfile

import numpy as np
import pytest

import minigt
from minigt import serialization


def nested_example():
    return {
        "weights": {"w": minigt.tensor([[1.5, -2.0]], requires_grad=True),
                    "b": minigt.tensor(np.arange(3, dtype=np.float64))},
        "buffers": [minigt.tensor([1, 2], dtype=minigt.int32), minigt.tensor(np.float16(0.5)),
                    minigt.tensor([True, False])],
        "arrays": (np.arange(6, dtype=np.int16).reshape(2, 3), np.zeros((0, 4), np.float32),
                   np.array(["a", "bc"])),
        "scalars": [np.float32(1.25), np.int64(-7), np.bool_(True), np.float64(0.1)],
        3: "an int key",
        2.5: None,
        None: True,
        "numbers": [0, -1, 2 ** 70, 0.1, float("inf"), -0.0, 1e-300],
        "text": "héllo ✓",
        "empty": [{}, [], ()],
    }


def assert_same(a, b):
    """Same nesting, same types, same values and dtypes."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, minigt.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b and str(a) == str(b)  # str: tells -0.0 from 0.0


def test_nested_structures_round_trip_with_types_and_dtypes(tmp_path):
    obj = nested_example()
    minigt.save(obj, tmp_path / "ckpt.npz")
    back = minigt.load(tmp_path / "ckpt.npz")
    assert_same(obj, back)
    assert back["weights"]["w"].is_leaf and back["weights"]["w"].requires_grad


@pytest.mark.parametrize("obj", [None, 3, "s", [1, 2], minigt.tensor(2.0), np.ones(2)])
def test_bare_values_round_trip(obj, tmp_path):
    minigt.save(obj, tmp_path / "x.npz")
    assert_same(obj, minigt.load(tmp_path / "x.npz"))


def test_nan_round_trips(tmp_path):
    minigt.save({"nan": float("nan"), "arr": np.array([np.nan])}, tmp_path / "n.npz")
    back = minigt.load(tmp_path / "n.npz")
    assert np.isnan(back["nan"]) and np.isnan(back["arr"][0])


def test_a_shared_tensor_comes_back_shared(tmp_path):
    t = minigt.tensor([1.0, 2.0])
    minigt.save({"a": t, "b": [t]}, tmp_path / "s.npz")
    back = minigt.load(tmp_path / "s.npz")
    assert back["a"] is back["b"][0]


def test_a_tensor_computed_by_ops_is_saved_as_plain_data(tmp_path):
    x = minigt.tensor([1.0, 2.0], requires_grad=True)
    minigt.save(x * 2, tmp_path / "y.npz")
    y = minigt.load(tmp_path / "y.npz")
    assert y.is_leaf and not y.requires_grad and y.tolist() == [2.0, 4.0]


def test_the_file_holds_no_pickle_and_any_name_is_kept(tmp_path):
    path = tmp_path / "model.ckpt"  # no .npz appended: the file is exactly where you said
    minigt.save(nested_example(), path)
    assert os.listdir(tmp_path) == ["model.ckpt"]
    with np.load(path, allow_pickle=False) as archive:
        assert all(not archive[name].dtype.hasobject for name in archive.files)
    with zipfile.ZipFile(path) as archive:  # every entry is an .npy array: no .pkl inside
        assert all(name.endswith(".npy") for name in archive.namelist())


def test_saving_replaces_a_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    minigt.save({"step": 1}, path)
    minigt.save({"step": 2}, path)
    assert minigt.load(path) == {"step": 2}
    assert os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_a_crash_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch,
                                                                     exception):
    path = tmp_path / "ckpt.npz"
    minigt.save({"step": 1, "w": minigt.tensor([1.0, 2.0])}, path)

    def write_half_then_fail(file, arrays):
        file.write(b"PK\x03\x04 half of an archive")
        raise exception

    monkeypatch.setattr(serialization, "_write_arrays", write_half_then_fail)
    with pytest.raises(type(exception)):
        minigt.save({"step": 2, "w": minigt.tensor([9.0, 9.0])}, path)
    back = minigt.load(path)
    assert back["step"] == 1 and back["w"].tolist() == [1.0, 2.0]
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the half-written temp file is gone


def test_a_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    def fail(file, arrays):
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_arrays", fail)
    with pytest.raises(OSError):
        minigt.save({"step": 1}, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        minigt.load(tmp_path / "nope.npz")


class _RunsCodeWhenUnpickled:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def make_bad_files(tmp_path):
    files = {}
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("just some text, not a checkpoint\n")
    files["empty"] = tmp_path / "empty.npz"
    files["empty"].write_bytes(b"")
    files["npy"] = tmp_path / "one.npy"
    np.save(files["npy"], np.zeros(3))
    files["truncated"] = tmp_path / "truncated.npz"
    minigt.save({"a": np.ones(100)}, files["truncated"])
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:200])
    files["plain_npz"] = tmp_path / "plain.npz"
    np.savez(files["plain_npz"], x=np.ones(2))
    files["pickle"] = tmp_path / "evil.pt"
    evil = _RunsCodeWhenUnpickled()
    evil.marker = tmp_path / "pwned"
    files["pickle"].write_bytes(pickle.dumps({"x": evil}))
    files["bad_header"] = tmp_path / "bad_header.npz"
    np.savez(files["bad_header"], __minigt__=np.frombuffer(b"{not json", np.uint8))
    files["other_format"] = tmp_path / "other.npz"
    np.savez(files["other_format"], __minigt__=np.frombuffer(
        b'{"format": "something-else", "version": 1, "tree": null}', np.uint8))
    return files


@pytest.mark.parametrize("kind", ["text", "empty", "npy", "truncated", "plain_npz", "pickle",
                                  "bad_header", "other_format"])
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path, kind):
    path = make_bad_files(tmp_path)[kind]
    with pytest.raises(ValueError, match="not a minigt checkpoint|damaged|format"):
        minigt.load(path)
    assert not (tmp_path / "pwned").exists()  # the pickle was never run


@pytest.mark.parametrize("obj, match", [
    ({"a": {1, 2}}, r"obj\['a'\] of type set"),
    ([object()], r"obj\[0\] of type object"),
    ({(1, 2): 3}, "key of type tuple"),
    ({"a": np.array([None, 1])}, "array of Python objects"),
])
def test_unsupported_contents_are_refused_before_writing(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        minigt.save(obj, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_map_location_cpu_and_a_missing_gpu(tmp_path):
    minigt.save({"w": minigt.tensor([1.0])}, tmp_path / "c.npz")
    assert minigt.load(tmp_path / "c.npz", map_location="cpu")["w"].device == "cpu"
    assert minigt.load(tmp_path / "c.npz", device="cpu")["w"].device == "cpu"
    if not minigt.cuda_available():
        with pytest.raises(RuntimeError, match="not available"):
            minigt.load(tmp_path / "c.npz", map_location="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not minigt.cuda_available(), reason="needs CuPy and a GPU")
def test_gpu_tensors_are_saved_from_host_memory_and_loaded_where_asked(tmp_path):
    t = minigt.tensor([[1.0, 2.0]], device="cuda", requires_grad=True)
    minigt.save({"w": t, "n": 1}, tmp_path / "g.npz")
    on_cpu = minigt.load(tmp_path / "g.npz")["w"]
    on_gpu = minigt.load(tmp_path / "g.npz", map_location="cuda")["w"]
    assert on_cpu.device == "cpu" and on_gpu.device.startswith("cuda")
    assert on_cpu.tolist() == on_gpu.tolist() == [[1.0, 2.0]] and on_gpu.requires_grad
