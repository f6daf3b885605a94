"""The row-wise join (schedule/rowwise_join.py): the loss and its gradient from one kernel,
in the logits' dtype, against the NumPy reference backend."""
import numpy as np
import pytest

import graphnet as gn
from graphnet.compiler.render.row_math import ROW_BLOCK

RNG = np.random.default_rng(5)


def kernel_names(fn):
    return [k.name.split("_", 1)[1] for k in fn.kernels]


def feeds(rows, cols, dtype):
    return (5 * RNG.standard_normal((rows, cols))).astype(dtype), RNG.integers(0, cols, rows)


@pytest.fixture(scope="module", params=["float32", "float64"])
def loss_and_grad(request):
    x = gn.placeholder("x", (None, None), request.param)
    y = gn.placeholder("y", (None,), "int64")
    loss = gn.nn.cross_entropy(x, y)
    outputs = [loss, gn.grad(loss, x)]
    return request.param, gn.function([x, y], outputs), gn.function([x, y], outputs, backend="reference")


def test_the_loss_and_its_gradient_run_as_one_kernel_with_the_reason_recorded(loss_and_grad):
    _, fn, _ = loss_and_grad
    assert "softmax_cross_entropy_and_grad" in kernel_names(fn)
    assert not any(n in ("softmax_cross_entropy", "softmax_cross_entropy_grad") for n in kernel_names(fn))
    [join] = fn.program.plan.row_joins
    assert join.joined and "share each row's maximum and exponentials" in join.why


@pytest.mark.parametrize("rows, cols", [(1, 1), (7, 5), (3, ROW_BLOCK + 9)])
def test_the_joined_kernel_matches_the_reference_in_the_logits_dtype(loss_and_grad, rows, cols):
    dtype, fn, ref = loss_and_grad
    xb, yb = feeds(rows, cols, dtype)
    got, want = fn(xb, yb), ref(xb, yb)
    assert [np.asarray(g).dtype for g in got] == [np.dtype(dtype)] * 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5 if dtype == "float32" else 1e-12, atol=1e-7)


def test_a_gradient_seed_computed_from_the_loss_keeps_two_kernels_and_says_why():
    x, y = gn.placeholder("x", (None, 4)), gn.placeholder("y", (None,), "int64")
    per_example = gn.ops.softmax_cross_entropy(x, y)
    cost = gn.sum(per_example * per_example)     # d cost / d loss = 2 * loss: reads the loss
    fn = gn.function([x, y], [cost, gn.grad(cost, x)])
    names = kernel_names(fn)
    assert "softmax_cross_entropy" in names and "softmax_cross_entropy_grad" in names
    [join] = fn.program.plan.row_joins
    assert not join.joined and "wait on itself" in join.why
    xb, yb = feeds(6, 4, "float32")
    for g, w in zip(fn(xb, yb), gn.function([x, y], [cost, gn.grad(cost, x)], backend="reference")(xb, yb)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-7)


def test_losses_over_different_labels_are_not_joined():
    x = gn.placeholder("x", (None, 4))
    y, z = gn.placeholder("y", (None,), "int64"), gn.placeholder("z", (None,), "int64")
    loss_y, loss_z = gn.nn.cross_entropy(x, y), gn.nn.cross_entropy(x, z)
    fn = gn.function([x, y, z], [loss_y, gn.grad(loss_z, x)])
    assert fn.program.plan.row_joins == []
    assert "softmax_cross_entropy_and_grad" not in kernel_names(fn)


def test_without_fusion_the_pair_is_refused_for_that_reason():
    x, y = gn.placeholder("x", (None, 4)), gn.placeholder("y", (None,), "int64")
    loss = gn.nn.cross_entropy(x, y)
    fn = gn.function([x, y], [loss, gn.grad(loss, x)], fuse=False)
    [join] = fn.program.plan.row_joins
    assert not join.joined and join.why == "fusion is off (fuse=False)"


def test_a_function_of_the_gradient_alone_computes_no_loss():
    x, y = gn.placeholder("x", (None, 4)), gn.placeholder("y", (None,), "int64")
    fn = gn.function([x, y], gn.grad(gn.nn.cross_entropy(x, y), x))
    assert "softmax_cross_entropy_grad" in kernel_names(fn)
    assert not any(n.startswith("softmax_cross_entropy_and") or n == "softmax_cross_entropy" for n in kernel_names(fn))


def test_the_report_says_whether_the_pair_was_joined_and_why(loss_and_grad):
    _, fn, _ = loss_and_grad
    text = fn.report()
    assert "row-wise pairs over the same rows:" in text
    assert "one kernel: the loss and its gradient share each row's maximum" in text
