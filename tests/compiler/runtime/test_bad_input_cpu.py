"""Bad input on the cpu backend: refused in the user's terms before any kernel runs.

Every refusal is a ``GraphnetError`` subclass whose message names the input and
what was expected; no bad value reaches generated code (no out-of-bounds read,
no crash inside Numba); and a failed call leaves every shared variable as it
was, including parameters the compiled step updates in place. Unusual but valid
arrays (non-contiguous, read-only, Fortran-ordered, broadcast views) work.
The cast policy tested here is written down in docs/reliability.md.
"""
import numpy as np
import pytest

import graphnet as gn
from graphnet.errors import FeedDTypeError, FeedShapeError
from graphnet.graph import Apply, Op, TensorType, as_variable

# A training step whose parameters the cpu backend updates in place.
X = gn.placeholder("x", (None, 4), "float32")
Z = gn.placeholder("z", (None, 4), "float32")
Y = gn.placeholder("y", (None,), "int64")
W = gn.shared(np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3), name="W")
B = gn.shared(np.zeros(3, "float32"), name="b")
LOSS = gn.nn.cross_entropy(gn.dot(X * Z, W) + B, Y)
GRADS = gn.grad(LOSS, [W, B])
UPDATES = [(W, W - 0.1 * GRADS[0]), (B, B - 0.1 * GRADS[1])]

XB = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
ZB = np.ones((5, 4), "float32")
YB = np.array([0, 1, 2, 0, 1], np.int64)

_STEPS = {}


@pytest.fixture(params=[True, False], ids=["fused", "unfused"])
def step(request):
    fuse = request.param
    if fuse not in _STEPS:
        _STEPS[fuse] = gn.function([X, Z, Y], LOSS, updates=UPDATES, backend="cpu", fuse=fuse)
    return _STEPS[fuse]


@pytest.fixture
def unchanged():
    """After the test: W and b hold the values (and the arrays) they held before."""
    before = {v: (v.get_value(), v.get_value(copy=False)) for v in (W, B)}
    yield
    for var, (value, array) in before.items():
        np.testing.assert_array_equal(var.get_value(), value, err_msg=f"{var.name} changed by a failed call")
        assert var.get_value(copy=False) is array


def test_the_step_updates_parameters_in_place(step):
    # What makes "a failed call changes nothing" worth testing on this backend.
    if step.program.plan.fuse:
        assert step.program.in_place


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("value,name", [
    (XB.astype(np.float64), "float64 array for float32"),
    (XB.astype(np.int64), "int64 array for float32"),
    (XB.astype(np.complex64), "complex array"),
    (np.array([["a"] * 4] * 5), "strings"),
    (np.array([[None] * 4] * 5), "objects"),
    (None, "None"),
])
def test_an_unsafe_or_non_numeric_dtype_is_refused_naming_the_input(step, unchanged, value, name):
    with pytest.raises(FeedDTypeError, match=r"\bx\b.*float32"):
        step(value, ZB, YB)


@pytest.mark.parametrize("value", [XB.astype(np.int8), XB.astype(np.float16), XB > 0, XB.tolist()],
                         ids=["int8", "float16", "bool", "python list"])
def test_a_safe_cast_is_accepted(value):
    expected = gn.function([X, Z, Y], LOSS, backend="reference")(np.asarray(value).astype("float32"), ZB, YB)
    np.testing.assert_allclose(gn.function([X, Z, Y], LOSS, backend="cpu")(value, ZB, YB), expected, rtol=1e-5)


def test_float64_is_accepted_for_float32_with_allow_input_downcast():
    fn = gn.function([X, Z, Y], LOSS, backend="cpu", allow_input_downcast=True)
    np.testing.assert_allclose(fn(XB.astype(np.float64), ZB, YB), fn(XB, ZB, YB))


@pytest.mark.parametrize("labels,accepted", [
    (YB.astype(np.int32), True), (YB.astype(np.uint8), True), (YB.astype(np.uint64), True),
    (YB.astype(np.float64), False), (np.array([0, np.nan, 1, 2, 0]), False),
], ids=["int32", "uint8", "uint64", "float64", "float with NaN"])
def test_labels_must_be_integers(step, unchanged, labels, accepted):
    fn = gn.function([X, Z, Y], LOSS, backend="cpu")
    if accepted:
        assert np.isfinite(fn(XB, ZB, labels))
        return
    with pytest.raises(FeedDTypeError, match=r"\by\b.*integer") as excinfo:
        step(XB, ZB, labels)
    if np.isnan(labels).any():
        assert "NaN" in str(excinfo.value)


def test_integer_values_that_do_not_fit_are_refused():
    i32 = gn.placeholder("i32", (None,), "int32")
    fn = gn.function([i32], gn.sum(i32), backend="cpu")
    assert fn(np.array([1, 2, 3], np.int64)) == 6
    with pytest.raises(FeedDTypeError, match=r"\bi32\b.*do not fit"):
        fn(np.array([1, 2**40], np.int64))


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("value", [XB[0], XB[:, :3], XB[None], np.float32(1.0), 1.0],
                         ids=["rank 1", "width 3", "rank 3", "numpy scalar", "python scalar"])
def test_a_wrong_rank_or_shape_is_refused_naming_the_input_and_the_expected_shape(step, unchanged, value):
    with pytest.raises(FeedShapeError, match=r"\bx\b.*\(\?, 4\)"):
        step(value, ZB, YB)


def test_inconsistent_batch_sizes_of_two_inputs_name_both(step, unchanged):
    with pytest.raises(gn.ShapeError) as excinfo:
        step(XB, ZB[:3], YB)
    message = str(excinfo.value)
    assert "(5, 4)" in message and "(3, 4)" in message and "x" in message and "z" in message


def test_inconsistent_batch_sizes_of_inputs_and_labels(step, unchanged):
    with pytest.raises(gn.ShapeError, match="5 rows of logits but 3 labels"):
        step(XB, ZB, YB[:3])


def test_an_empty_batch_gives_nan_as_numpy_does(step, unchanged):
    fn = gn.function([X, Z, Y], LOSS, backend="cpu")
    with np.errstate(all="ignore"):
        assert np.isnan(fn(XB[:0], ZB[:0], YB[:0]))


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("bad", [3, -1, 2**40], ids=["classes", "negative", "huge"])
def test_a_label_out_of_range_is_refused_naming_the_input_before_any_kernel_reads_it(step, unchanged, bad):
    labels = YB.copy()
    labels[3] = bad
    with pytest.raises(gn.FeedError) as excinfo:
        step(XB, ZB, labels)
    message = str(excinfo.value)
    assert f"label {bad} at position 3" in message and "[0, 3)" in message and "input y" in message


def test_a_label_out_of_range_in_a_session_is_refused_too(unchanged):
    sess = gn.Session(backend="cpu")
    with pytest.raises(gn.FeedError, match="label 9"):
        sess.run(LOSS, {X: XB, Z: ZB, Y: np.array([0, 1, 9, 0, 1])}, updates=UPDATES)


# ------------------------------------------------------------------ feeds
def test_a_missing_input_is_named(step, unchanged):
    with pytest.raises(gn.FeedError, match=r"missing input\(s\) y"):
        step(XB, ZB)


def test_an_unknown_keyword_input_is_named(step, unchanged):
    with pytest.raises(gn.FeedError, match="unknown input 'w'; inputs are x, z, y"):
        step(XB, ZB, YB, w=XB)


def test_too_many_inputs_are_refused(step, unchanged):
    with pytest.raises(gn.FeedError, match="takes 3 inputs"):
        step(XB, ZB, YB, XB)


def test_an_input_given_twice_is_refused(step, unchanged):
    with pytest.raises(gn.FeedError, match="given twice"):
        step(XB, ZB, YB, x=XB)


def test_session_feed_keys_must_be_placeholders():
    sess = gn.Session(backend="cpu")
    with pytest.raises(gn.FeedError, match="feed_dict keys"):
        sess.run(LOSS, {"x": XB, Z: ZB, Y: YB})
    with pytest.raises(gn.FeedError, match=r"\bW\b.*not a placeholder"):
        sess.run(LOSS, {X: XB, Z: ZB, Y: YB, W: np.zeros((4, 3), "float32")})


def test_session_names_a_placeholder_the_fetches_need_but_the_feeds_lack():
    sess = gn.Session(backend="cpu")
    with pytest.raises(gn.FeedError, match=r"placeholder\(s\) y"):
        sess.run(LOSS, {X: XB, Z: ZB})


# ----------------------------------------------------- unusual but valid arrays
def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("make", [
    lambda a: np.asfortranarray(a),
    lambda a: np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[::2, ::2],
    lambda a: a.T.copy().T,
    _readonly,
    lambda a: np.broadcast_to(a[:1], a.shape),
], ids=["fortran", "strided", "transposed view", "read-only", "broadcast view"])
def test_non_contiguous_and_read_only_arrays_work(make):
    fn = gn.function([X, Z, Y], [LOSS, gn.dot(X * Z, W)], backend="cpu")
    ref = gn.function([X, Z, Y], [LOSS, gn.dot(X * Z, W)], backend="reference")
    feeds = [make(XB), make(ZB), make(YB[:, None])[:, 0]]
    got = fn(*feeds)
    expected = ref(*[np.ascontiguousarray(a) for a in feeds])
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5)


def test_a_read_only_shared_value_is_copied_in_and_updated(step):
    W.set_value(_readonly(W.get_value()))
    assert W.get_value(copy=False).flags.writeable
    before = W.get_value()
    step(XB, ZB, YB)
    assert not np.array_equal(W.get_value(), before)


# ------------------------------------------------------------------ set_value
def test_set_value_of_the_wrong_shape_names_the_variable_and_keeps_the_value():
    w = gn.shared(np.ones((4, 3), "float32"), name="weights")
    with pytest.raises(gn.ShapeError, match=r"weights.*\(3, 4\).*\(4, 3\)"):
        w.set_value(np.zeros((3, 4), "float32"))
    np.testing.assert_array_equal(w.get_value(), np.ones((4, 3)))


def test_set_value_with_a_declared_free_dimension_accepts_any_size_there():
    h = gn.shared(np.zeros((2, 3)), name="h", shape=(None, 3))
    h.set_value(np.ones((7, 3)))
    assert h.get_value().shape == (7, 3)
    with pytest.raises(gn.ShapeError, match="h"):
        h.set_value(np.ones((7, 4)))


@pytest.mark.parametrize("value", [np.zeros((4, 3), complex), np.full((4, 3), "a"), np.array([[None] * 3] * 4)],
                         ids=["complex", "strings", "objects"])
def test_set_value_of_an_unsafe_dtype_is_refused(value):
    w = gn.shared(np.ones((4, 3), "float32"), name="weights")
    with pytest.raises(gn.DTypeError, match="weights"):
        w.set_value(value)
    np.testing.assert_array_equal(w.get_value(), np.ones((4, 3)))


def test_set_value_of_a_ragged_list_is_a_graphnet_error():
    w = gn.shared(np.ones(2, "float32"), name="weights")
    with pytest.raises(gn.GraphnetError, match="weights"):
        w.set_value([1.0, [2.0, 3.0]])


# ------------------------------------------------------------- sessions
def test_variables_belong_to_no_session_so_graphs_may_mix_them():
    # graphnet variables are graph nodes, not session state: two sessions (even
    # of different backends) running graphs over the same shared variable see
    # one value, and an update made through one is seen by the other.
    counter = gn.shared(np.zeros(2, "float32"), name="counter")
    a, b = gn.Session(backend="cpu"), gn.Session(backend="reference")
    a.run(counter, updates=[(counter, counter + 1)])
    b.run(counter, updates=[(counter, counter + 10)])
    np.testing.assert_array_equal(a.run(counter * 1), [11, 11])


def test_a_successful_step_after_every_kind_of_failure_still_trains(step):
    for bad in ((XB[0], ZB, YB), (XB, ZB, YB[:3]), (XB, ZB, np.array([0, 1, 9, 0, 1]))):
        with pytest.raises(gn.GraphnetError):
            step(*bad)
    before = W.get_value()
    assert np.isfinite(step(XB, ZB, YB))
    assert not np.array_equal(W.get_value(), before)


def test_a_check_that_can_only_run_late_keeps_earlier_updates_out_of_place():
    # Labels computed by the graph are range-checked only when their kernel runs,
    # after W's update kernel: W must then not be updated in place, or the
    # failed call would leave it changed.
    x = gn.placeholder("x", (None, 3))
    labels_as_floats = gn.placeholder("labels_as_floats", (None,))
    w = gn.shared(np.ones((2, 2), "float32"), name="w")
    v = gn.shared(np.ones((3, 4), "float32"), name="v")
    loss = gn.mean(gn.ops.softmax_cross_entropy(gn.dot(x, v), gn.cast(labels_as_floats, "int64")))
    step = gn.function([x, labels_as_floats], [], updates=[(w, w * 0.5), (v, v - 0.1 * gn.grad(loss, v))],
                       backend="cpu")
    with pytest.raises(gn.FeedError, match="label 7"):
        step(np.ones((2, 3), "float32"), np.array([0, 7], "float32"))
    np.testing.assert_array_equal(w.get_value(), np.ones((2, 2)))
    np.testing.assert_array_equal(v.get_value(), np.ones((3, 4)))
    step(np.ones((2, 3), "float32"), np.array([0, 3], "float32"))
    np.testing.assert_array_equal(w.get_value(), np.full((2, 2), 0.5))


@pytest.mark.parametrize("declared", [(None, 3), (5, 3)], ids=["free batch", "fixed"])
def test_an_update_of_a_shared_variable_the_graph_does_not_read(declared):
    # Found while testing set_value shapes: the in-place path looked the old
    # value up among the graph's inputs (KeyError), and with a free dimension
    # would have written a 5-row result into a 7-row array.
    x = gn.placeholder("x", (None, 3))
    start = np.zeros((7 if declared[0] is None else 5, 3), "float32")
    h = gn.shared(start, name="h", shape=declared)
    fn = gn.function([x], gn.sum(x), updates=[(h, x * 2.0 + 1.0)], backend="cpu")
    assert fn(np.ones((5, 3), "float32")) == 15.0
    np.testing.assert_array_equal(h.get_value(), np.full((5, 3), 3.0))


class _RefusesNegatives(Op):
    """A user op whose NumPy ``perform`` raises a plain ValueError on some values."""

    def make_node(self, x):
        x = as_variable(x)
        return Apply(self, [x], [TensorType(x.dtype, x.shape)])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, inputs):
        if (np.asarray(inputs[0]) < 0).any():
            raise ValueError("negative values")
        return [np.sqrt(inputs[0])]


def test_an_op_failing_on_small_values_during_shape_inference_names_the_node():
    # A graph whose shapes depend on values (arange) follows small values through
    # the graph while inferring shapes; an op failing there is reported like any
    # failing node (found by the deep fuzz run: NumPy's bare ValueError escaped).
    x = gn.placeholder("x", (None,), "float64")
    root = _RefusesNegatives()(x)
    positions = gn.arange(1, gn.size_of(x, 0) + 1)  # ARange: its length depends on a value
    fn = gn.function([x], [root, positions], backend="cpu")
    np.testing.assert_array_equal(fn(np.array([4.0, 9.0]))[0], [2.0, 3.0])
    with pytest.raises(gn.GraphnetError, match=r"negative values(.|\n)*test_bad_input_cpu.py:\d+"):
        fn(np.array([4.0, -1.0]))
