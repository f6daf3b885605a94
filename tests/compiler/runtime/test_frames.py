"""Frames: what a program makes once per input-shape signature, and how calls find it."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.runtime.program import MAX_FRAMES
from graphnet.ops.indexing import OutOfBoundsError


def test_minibatches_sliced_by_a_fed_index_share_one_frame():
    # The Theano tutorials' loop: givens slice shared data by a symbolic index.
    data = np.arange(4 * (MAX_FRAMES + 6) * 3, dtype="float32").reshape(-1, 3)
    X = gn.shared(data, name="X_frames")
    index = gn.placeholder("index_frames", (), "int64")
    x = gn.placeholder("x_frames", (None, 3))
    fn = gn.function([index], gn.sum(x * 2.0, axis=0), givens={x: X[index * 4:(index + 1) * 4]})
    batches = len(data) // 4
    for i in list(range(batches)) * 2:
        np.testing.assert_allclose(fn(np.int64(i)), 2 * data[4 * i:4 * i + 4].sum(axis=0))
    # Every slice has 4 rows whatever the index: the index decides no shape, so it is not in
    # the frame's key, and each call runs the bounds check of the slice instead.
    assert len(fn.program._frames_by_shapes) == 1
    assert len(fn.program._frames) == 1
    with pytest.raises(OutOfBoundsError, match="X_frames"):
        fn(np.int64(batches))


def test_a_fed_bound_that_decides_a_length_keys_the_frames_on_its_value():
    X = gn.shared(np.arange(30, dtype="float32").reshape(10, 3), name="X_open")
    stop = gn.placeholder("stop_open", (), "int64")
    fn = gn.function([stop], gn.sum(X[0:stop], axis=0))
    for n in (2, 5, 2, 10):
        np.testing.assert_allclose(fn(np.int64(n)), np.arange(30).reshape(10, 3)[:n].sum(axis=0))
    assert len(fn.program._frames_by_shapes) == 3
    with pytest.raises(OutOfBoundsError, match="X_open"):
        fn(np.int64(11))


def test_an_out_of_range_index_after_many_calls_changes_no_parameter():
    data = np.ones((8, 2), "float32")
    X, w = gn.shared(data, name="X_guard"), gn.shared(np.zeros(2, "float32"), name="w_guard")
    index = gn.placeholder("index_guard", (), "int64")
    x = gn.placeholder("x_guard", (None, 2))
    fn = gn.function([index], gn.sum(x * w), updates=[(w, w + gn.sum(x, axis=0))],
                     givens={x: X[index * 4:(index + 1) * 4]})
    for i in (0, 1, 0):
        fn(np.int64(i))
    before = w.get_value()
    with pytest.raises(OutOfBoundsError, match="X_guard"):
        fn(np.int64(2))
    np.testing.assert_array_equal(w.get_value(), before)


def test_an_index_that_passed_is_remembered_and_a_refused_one_is_refused_every_time():
    # The value rules remember values that passed (a minibatch index cycles through a few);
    # a value that failed is never remembered, in whatever dtype it comes.
    X = gn.shared(np.arange(24, dtype="float32").reshape(8, 3), name="X_passed")
    index = gn.placeholder("index_passed", (), "int64")
    x = gn.placeholder("x_passed", (None, 3))
    fn = gn.function([index], gn.sum(x, axis=0), givens={x: X[index * 4:(index + 1) * 4]})
    for i in (0, 1, 0, 1):
        np.testing.assert_allclose(fn(np.int64(i)), np.arange(24).reshape(8, 3)[4 * i:4 * i + 4].sum(axis=0))
    for bad in (np.int64(2), 2, np.int64(2), np.int64(-3)):
        with pytest.raises(OutOfBoundsError, match="X_passed"):
            fn(bad)
    np.testing.assert_allclose(fn(1), np.arange(24).reshape(8, 3)[4:].sum(axis=0))


def test_a_new_batch_size_gets_a_frame_of_its_own_and_the_old_one_still_works():
    x = gn.placeholder("x_sizes", (None, 4))
    fn = gn.function([x], gn.exp(x) + 1.0)
    for n in (3, 5, 3):
        xb = np.full((n, 4), 0.5, "float32")
        np.testing.assert_allclose(fn(xb), np.exp(xb) + 1, rtol=1e-6)
    assert len(fn.program._frames) == 2
