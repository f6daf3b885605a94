"""The smallest graphs of the mismatches the differential fuzzer found, kept as regression tests.

Each builds the graph by hand, runs it on ``reference``, ``cpu`` fused and
``cpu`` unfused, and expects the three to agree (see ``differential.py``).
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet.ops.elementwise import DropoutScale

from differential import RTOL, array_difference

VARIANTS = [dict(backend="reference"), dict(backend="cpu", fuse=True), dict(backend="cpu", fuse=False)]


def agree(inputs, outputs, feeds, training=False, updates=None, state=None):
    """Run on every variant (resetting ``state`` {shared: value} before each); assert agreement."""
    results = []
    for options in VARIANTS:
        for var, value in (state or {}).items():
            var.set_value(value)
        fn = gn.function(inputs, outputs, updates=updates, training=training, **options)
        got = fn(*feeds)
        results.append(([np.asarray(g) for g in got], [w.get_value() for w, _ in updates or []]))
    (ref, ref_state) = results[0]
    for options, (got, got_state) in zip(VARIANTS[1:], results[1:]):
        for k, (r, g) in enumerate(zip(ref + ref_state, got + got_state)):
            problem = array_difference(r, g)
            assert problem is None, f"{options} value {k}: {problem}"
    return results[0][0]


def test_dropout_on_a_reduced_value_draws_its_mask_by_the_reduced_index():
    # Found by the fuzzer: dropout as the epilogue of a reduction named an undefined ``index``.
    x = gn.placeholder("x", (3, 4), "float32")
    mean = gn.moments(gn.abs(x), axis=1, keepdims=True)[0]
    dropped = DropoutScale(0.5, 825)(mean, gn.constant(3, dtype="int64"))
    total = DropoutScale(0.5, 9)(gn.sum(x), gn.constant(1, dtype="int64"))
    agree([x], [dropped, total], [np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)])


def test_rtol_table_covers_both_float_dtypes():
    assert set(RTOL) == {np.dtype("float32"), np.dtype("float64")}


SPECIALS = np.array([[np.nan, 1.0, -np.inf, 0.0], [2.0, np.nan, np.inf, -0.0], [-1.0, 3.0, np.nan, np.nan]])
NAN_OPS = {
    "sign": lambda x, y: gn.sign(x),
    "maximum": lambda x, y: gn.maximum(x, y),
    "maximum_reversed": lambda x, y: gn.maximum(y, x),
    "minimum": lambda x, y: gn.minimum(x, y),
    "minimum_reversed": lambda x, y: gn.minimum(y, x),
    "relu": lambda x, y: gn.relu(x),
    "max_rows": lambda x, y: gn.max(x * 1.0, axis=1),
    "max_cols": lambda x, y: gn.max(x * 1.0, axis=0),
    "max_all": lambda x, y: gn.max(x * 1.0),
    "min_rows": lambda x, y: gn.min(x * 1.0, axis=1),
    "abs": lambda x, y: gn.abs(x),
    "leaky_relu": lambda x, y: gn.leaky_relu(x),
    "elu": lambda x, y: gn.elu(x),
    "where": lambda x, y: gn.where(x > y, x, y),
    "softplus": lambda x, y: gn.softplus(x),
    "sigmoid": lambda x, y: gn.sigmoid(x),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", list(NAN_OPS))
def test_nan_and_inf_propagate_as_in_numpy(op, dtype):
    # Found by the fuzzer: sign(NaN) was 0 in generated kernels, NaN in NumPy.
    x = gn.placeholder("x", (None, 4), dtype)
    y = gn.placeholder("y", (None, 4), dtype)
    yb = np.where(np.isnan(SPECIALS), 0.5, np.nan)  # NaN where x is not: either operand may hold it
    agree([x, y], [NAN_OPS[op](x, y)], [SPECIALS.astype(dtype), yb.astype(dtype)])


@pytest.mark.parametrize("view", ["expand_dims", "transpose", "reshape"])
def test_a_fetched_view_of_a_parameter_shows_its_value_before_the_update(view):
    # Found by the fuzzer: the update of v was written in place while a fetched
    # view of v still pointed at v's array, so the output showed the new value.
    v = gn.shared(np.array([[1.0, 2.0, 3.0]], "float32"), name="v")
    shown = {"expand_dims": lambda: gn.expand_dims(v, 0), "transpose": lambda: gn.transpose(v),
             "reshape": lambda: gn.reshape(v, (3,))}[view]()
    cost = gn.sum(v * v)
    results = agree([], [shown, cost], [], updates=[(v, v - 0.1 * gn.grad(cost, v))],
                    state={v: np.array([[1.0, 2.0, 3.0]], "float32")})
    np.testing.assert_array_equal(results[0].reshape(-1), [1.0, 2.0, 3.0])


def test_an_update_that_is_a_view_of_a_parameter_updated_in_place_gets_the_old_value():
    a = gn.shared(np.zeros((3, 1), "float32"), name="a")
    b = gn.shared(np.array([[1.0, 2.0, 3.0]], "float32"), name="b")
    agree([], [gn.sum(a)], [], updates=[(a, gn.transpose(b)), (b, b * 2.0 + 1.0)],
          state={a: np.zeros((3, 1), "float32"), b: np.array([[1.0, 2.0, 3.0]], "float32")})
    np.testing.assert_array_equal(a.get_value().ravel(), [1.0, 2.0, 3.0])


def test_the_passes_may_drop_a_dead_branch_nan_but_fusion_must_not():
    # Found by the long fuzz run: the gradient of x * w through the evaluation
    # branch of mode_select is a structural zero; the reference computes
    # 0 * NaN = NaN, the cpu passes drop the product (canonicalize.py) and give
    # 0. That is the passes' documented choice, so the fuzzer compares cpu with
    # the reference run on the optimized graph, and that with the plain
    # reference allowing only this direction.
    from differential import OptimizedReference  # noqa: F401  (the oracle this test documents)
    x = gn.placeholder("x", (2,), "float32")
    w = gn.placeholder("w", (), "float32")
    y = gn.ops.mode_select(x, x * w)
    (dw,) = gn.grad(gn.sum(y), [w])
    xb = np.array([np.nan, 1.0], "float32")
    ref = gn.function([x, w], dw, backend="reference", training=True)(xb, np.float32(2.0))
    assert np.isnan(ref)
    for fuse in (True, False):
        assert gn.function([x, w], dw, backend="cpu", fuse=fuse, training=True)(xb, np.float32(2.0)) == 0.0
    assert array_difference(np.asarray(ref), np.asarray(np.float32(0.0)), finite_may_replace_nan=True) is None
    assert array_difference(np.asarray(np.float32(0.0)), np.asarray(ref), finite_may_replace_nan=True) is not None


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_inc_subtensor_broadcasts_its_increment_over_a_2d_index_array(backend):
    # Found by the long fuzz run: NumPy 2.4's np.add.at broadcasts a value over
    # new leading axes wrongly and reads past its end (NaN or 1e306 garbage).
    # The oracle is a plain Python loop over the index array, not np.add.at.
    import graphnet.tensor as T
    x = gn.placeholder("x", (4,), "float64")
    y = gn.placeholder("y", (2,), "float64")
    idx = np.array([[0, 1], [2, 3], [0, 0]])
    fn = gn.function([x, y], T.inc_subtensor(x[idx], y), backend=backend)
    xb, yb = np.array([0.5, 0.0, 0.0, 0.0]), np.array([1.0, 2.0])
    expected = xb.copy()
    for row in idx:
        for position, target in enumerate(row):
            expected[target] += yb[position]
    np.testing.assert_array_equal(fn(xb, yb), expected)  # [4.5, 2, 1, 2]


def test_a_reduction_over_an_axis_of_one_reads_its_input_in_both_stages():
    # Found by the long fuzz run: summing (R, 1) over its last axis gives the
    # input's own shape, so the prologue reads x as (R, C) and the epilogue as
    # (R,); the epilogue took the prologue's 2-D argument and Numba refused
    # ``exp(array)``. Each stage now has its own argument.
    x = gn.placeholder("x", (None, 1), "float64")
    total = gn.sum(gn.exp(x), axis=1, keepdims=True)
    out = total * gn.exp(x) + x
    (dx,) = gn.grad(gn.sum(gn.log_softmax(gn.tanh(x), -1) * out), [x])
    agree([x], [out, dx], [np.array([[0.3], [1.0], [-2.0], [0.5]])])


def test_an_update_of_an_infinite_parameter_may_stay_infinite_where_the_plain_reference_has_nan():
    # Found by the long fuzz run: the variance half of moments is unused, so its
    # gradient is a structural zero; the plain reference computes 0 * (inf - inf)
    # = NaN for it, the passes drop it, and the update inf - 0.1 * 0 stays inf.
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    assert array_difference(np.array([nan, 1.0]), np.array([inf, 1.0]), finite_may_replace_nan=True) is None
    assert array_difference(np.array([inf, 1.0]), np.array([nan, 1.0]), finite_may_replace_nan=True) is not None
    assert array_difference(np.array([1.0, 1.0]), np.array([inf, 1.0]), finite_may_replace_nan=True) is not None
    x = gn.shared(np.array([-0.3, np.inf, 0.2], "float32"), name="x")
    (dx,) = gn.grad(gn.sum(gn.tanh(gn.moments(x, None, True)[0])), [x])
    update = [(x, x - 0.1 * dx)]
    state = {x: np.array([-0.3, np.inf, 0.2], "float32")}
    for fuse in (True, False):
        x.set_value(state[x])
        gn.function([], [dx], updates=update, backend="cpu", fuse=fuse)()
        np.testing.assert_array_equal(x.get_value(), state[x])  # dx is 0: tanh'(inf) = 0


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_moments_of_an_empty_set_are_nan_and_check_numerics_says_so(backend):
    # Found by the long fuzz run: the fused moments kernel divided by max(n, 1)
    # and gave a mean and variance of 0 for an empty slice; NumPy gives NaN.
    x = gn.placeholder("x", (None,), "float64")
    mean, var = gn.moments(x, None, False)
    np.testing.assert_array_equal(gn.function([x], [mean, var], backend=backend)(np.zeros(0)), [np.nan, np.nan])
    with pytest.raises(gn.NumericsError, match="moments"):
        gn.function([x], [mean * 2.0], backend=backend, check_numerics=True)(np.zeros(0))
    row_mean, _ = gn.moments(gn.placeholder("m", (3, None), "float64"), 1)
    np.testing.assert_array_equal(gn.function([row_mean.owner.inputs[0]], row_mean, backend=backend)(np.zeros((3, 0))),
                                  [np.nan] * 3)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_softmax_over_an_empty_axis_is_empty(backend):
    # Found by the deep fuzz run (--max-steps 25): log_softmax of a (0,)-shaped
    # parameter raised NumPy's "zero-size array to reduction operation maximum";
    # there is nothing to normalize, so the result is empty, as in PyTorch and JAX.
    v = gn.shared(np.zeros(0), name="v")
    m = gn.placeholder("m", (None, 4), "float64")
    (dv,) = gn.grad(gn.sum(gn.log_softmax(v, -1)), [v])
    got = gn.function([m], [gn.log_softmax(v, -1), dv, gn.softmax(m), gn.log_softmax(m * 2.0, 0)],
                      updates=[(v, gn.log_softmax(v, -1))], backend=backend)(np.zeros((0, 4)))
    assert [g.shape for g in got] == [(0,), (0,), (0, 4), (0, 4)]


@pytest.mark.parametrize("fuse", [True, False])
def test_a_constant_folded_to_nan_or_inf_is_a_valid_kernel_literal(fuse):
    # Found by the deep fuzz run: the mean of an empty arange folds to a NaN
    # constant, and the kernel source spelled it ``nan`` (Numba: name not defined).
    x = gn.placeholder("x", (2,), "float32")
    empty_mean = gn.mean(gn.cast(gn.arange(1, 1), "float32"))
    outputs = [x * empty_mean, gn.minimum(x, np.float32(np.inf)), gn.maximum(x, np.float32(-np.inf)) + 1.0]
    agree([x], outputs, [np.array([1.0, -2.0], "float32")])
    got = gn.function([x], outputs, backend="cpu", fuse=fuse)(np.array([1.0, -2.0], "float32"))
    np.testing.assert_array_equal(got[0], [np.nan, np.nan])
