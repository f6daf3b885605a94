"""Specification of graphnet.nn.checkpoint: exact round trips, atomic saves, refused bad files."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from graphnet import checkpoint
from graphnet.errors import CheckpointError, GraphnetError


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {
        "W1": rng.normal(size=(64, 32)).astype(np.float32),
        "b1": np.zeros(32, np.float32),
        "W2": rng.normal(size=(32, 10)),  # float64
        "step": np.array(1234, dtype=np.int64),
        "mask": rng.random(10) > 0.5,
    }


@pytest.fixture
def saved(tmp_path, params):
    path = tmp_path / "model.npz"
    checkpoint.save(path, params, metadata={"epoch": 3})
    return path


def _rewrite_npz(path, members):
    """Write ``members`` (name -> array) as a raw .npz, bypassing graphnet's checks."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in members.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
            zf.writestr(name + ".npy", buffer.getvalue())


def _raw_members(path):
    with zipfile.ZipFile(path) as zf:
        return {name[:-4]: np.lib.format.read_array(io.BytesIO(zf.read(name)))
                for name in zf.namelist()}


# --------------------------------------------------------------------------- round trip

def test_round_trip_is_exact_and_keeps_dtypes(saved, params):
    arrays, metadata = checkpoint.load(saved)
    assert set(arrays) == set(params)
    for key, original in params.items():
        assert arrays[key].dtype == original.dtype, key
        assert arrays[key].shape == original.shape, key
        assert np.array_equal(arrays[key], original), key
    assert metadata == {"epoch": 3}


def test_metadata_defaults_to_an_empty_dict_and_accepts_numpy_scalars(tmp_path):
    path = tmp_path / "m.npz"
    checkpoint.save(path, {"a": np.ones(2)})
    assert checkpoint.load(path)[1] == {}
    checkpoint.save(path, {"a": np.ones(2)}, metadata={"loss": np.float32(0.5), "epoch": np.int64(2)})
    assert checkpoint.load(path)[1] == {"loss": 0.5, "epoch": 2}


def test_a_checkpoint_is_an_ordinary_npz(saved, params):
    with np.load(saved, allow_pickle=False) as npz:
        assert np.array_equal(npz["W1"], params["W1"])
        assert "__graphnet__" in npz.files


def test_array_names_that_clash_with_savez_arguments_are_fine(tmp_path):
    path = tmp_path / "m.npz"
    checkpoint.save(path, {"file": np.ones(2), "allow_pickle": np.zeros(3)})
    arrays, _ = checkpoint.load(path)
    assert arrays["file"].shape == (2,) and arrays["allow_pickle"].shape == (3,)


def test_expected_shapes_and_dtypes_that_match_are_accepted(saved, params):
    expected = {k: (v.shape, v.dtype) for k, v in params.items()}
    expected["b1"] = (None, None)  # skip both checks for this one
    arrays, _ = checkpoint.load(saved, expected=expected)
    assert set(arrays) == set(params)


# --------------------------------------------------------------------------- refused files

def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.npz")


def test_truncated_file_is_refused(saved):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="model.npz"):
        checkpoint.load(saved)


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.npz"):
        checkpoint.load(path)


def test_plain_pickle_renamed_npz_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"W": np.ones(3)}))
    with pytest.raises(CheckpointError, match="pickl"):
        checkpoint.load(path)


def test_npz_with_an_object_array_is_refused_naming_it(saved):
    members = _raw_members(saved)
    members["W1"] = np.array([{"not": "numbers"}, None], dtype=object)
    _rewrite_npz(saved, members)
    with pytest.raises(CheckpointError, match="'W1'.*pickled object array"):
        checkpoint.load(saved)


def test_npz_without_the_graphnet_marker_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, W=np.ones(3))
    with pytest.raises(CheckpointError, match="not a graphnet checkpoint"):
        checkpoint.load(path)


def test_single_npy_file_is_refused(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        checkpoint.load(path)


def test_tampered_array_is_refused(saved):
    members = _raw_members(saved)  # keeps the old __graphnet__ header
    members["W1"] = members["W1"] + np.float32(1e-3)
    _rewrite_npz(saved, members)
    with pytest.raises(CheckpointError, match="'W1'.*SHA-256"):
        checkpoint.load(saved)


def test_array_added_behind_the_headers_back_is_refused(saved):
    members = _raw_members(saved)
    members["intruder"] = np.ones(2)
    _rewrite_npz(saved, members)
    with pytest.raises(CheckpointError, match="intruder"):
        checkpoint.load(saved)


# --------------------------------------------------------------------------- expected

def test_shape_mismatch_against_expected_names_the_key_and_both_shapes(saved, params):
    expected = {k: (v.shape, v.dtype) for k, v in params.items()}
    expected["W1"] = ((64, 16), np.float32)
    with pytest.raises(CheckpointError, match=r"'W1'.*\(64, 32\).*\(64, 16\)"):
        checkpoint.load(saved, expected=expected)


def test_dtype_mismatch_against_expected_names_the_key(saved, params):
    expected = {k: (v.shape, v.dtype) for k, v in params.items()}
    expected["W2"] = ((32, 10), "float32")
    with pytest.raises(CheckpointError, match="'W2'.*float64.*float32"):
        checkpoint.load(saved, expected=expected)


def test_missing_and_extra_keys_against_expected_are_named(saved, params):
    expected = {k: (v.shape, v.dtype) for k, v in params.items() if k != "mask"}
    expected["W3"] = ((10, 10), "float32")
    with pytest.raises(CheckpointError, match="W3.*mask"):
        checkpoint.load(saved, expected=expected)


# --------------------------------------------------------------------------- atomic save

def test_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temp_files(saved, params):
    before = saved.read_bytes()
    with pytest.raises(CheckpointError, match="'bad'"):
        checkpoint.save(saved, {"W1": np.ones(3), "bad": np.array([object()], dtype=object)})
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == ["model.npz"]


def test_save_interrupted_while_writing_keeps_the_previous_checkpoint(saved, monkeypatch):
    before = saved.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(saved, {"W1": np.zeros(3)})
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == ["model.npz"]


def test_save_overwrites_an_existing_checkpoint(saved):
    checkpoint.save(saved, {"only": np.arange(4)})
    arrays, _ = checkpoint.load(saved)
    assert list(arrays) == ["only"] and np.array_equal(arrays["only"], np.arange(4))


@pytest.mark.parametrize("arrays, match", [
    ({"s": np.array(["text"])}, "'s'"),
    ({"__graphnet__": np.ones(1)}, "reserved"),
    ({"": np.ones(1)}, "non-empty"),
])
def test_save_refuses_unsupported_arrays_and_names(tmp_path, arrays, match):
    with pytest.raises(CheckpointError, match=match):
        checkpoint.save(tmp_path / "x.npz", arrays)
    assert os.listdir(tmp_path) == []


def test_unserializable_metadata_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="metadata"):
        checkpoint.save(tmp_path / "x.npz", {"a": np.ones(1)}, metadata={"f": object()})


def test_checkpoint_error_is_a_graphnet_error():
    assert issubclass(CheckpointError, GraphnetError)
