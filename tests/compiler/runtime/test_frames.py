"""Frames: what a program makes once per input-shape signature, and how calls find it."""
import numpy as np

import graphnet as gn
from graphnet.compiler.runtime.program import MAX_FRAMES


def test_minibatches_sliced_by_a_fed_index_share_one_frame_of_buffers():
    # The Theano tutorials' loop: givens slice shared data by a symbolic index.
    data = np.arange(4 * (MAX_FRAMES + 6) * 3, dtype="float32").reshape(-1, 3)
    X = gn.shared(data, name="X_frames")
    index = gn.placeholder("index_frames", (), "int64")
    x = gn.placeholder("x_frames", (None, 3))
    fn = gn.function([index], gn.sum(x * 2.0, axis=0), givens={x: X[index * 4:(index + 1) * 4]})
    batches = len(data) // 4
    for i in list(range(batches)) * 2:
        np.testing.assert_allclose(fn(np.int64(i)), 2 * data[4 * i:4 * i + 4].sum(axis=0))
    assert len(fn.program._frames_by_shapes) == 1
    assert len(fn.program._frames) == batches


def test_a_new_batch_size_gets_a_frame_of_its_own_and_the_old_one_still_works():
    x = gn.placeholder("x_sizes", (None, 4))
    fn = gn.function([x], gn.exp(x) + 1.0)
    for n in (3, 5, 3):
        xb = np.full((n, 4), 0.5, "float32")
        np.testing.assert_allclose(fn(xb), np.exp(xb) + 1, rtol=1e-6)
    assert len(fn.program._frames) == 2
