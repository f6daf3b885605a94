"""The worked examples of docs/architecture.md: extending the compiler touches one module plus registrations.

Each example lives entirely in this file (as a user's or a new contributor's
module would) and is checked against NumPy, on the cpu backend, fused and
lowered as the plan says.
"""
import numpy as np

import graphnet as gn
from graphnet.compiler.render.cpu import ROWWISE_TEMPLATES, RowTemplate
from graphnet.compiler.schedule.plan import LoopKernel, RowwiseKernel
from graphnet.graph.ir import Apply, Op
from graphnet.ops import elementwise as ew
from graphnet.ops.elementwise import UnaryFloat, lit


# ------------------------------------------------------ a new elementwise op
class Softsign(UnaryFloat):
    """``x / (1 + |x|)``: its reference, its gradient and its scalar expression, side by side."""

    def impl(self, a): return a / (1 + np.abs(a))
    def scalar(self, args, dtype): return f"({args[0]} / ({lit(1, dtype)} + abs({args[0]})))"

    def grad(self, inputs, outputs, g):
        denominator = ew.add(1.0, ew.abs(inputs[0]))
        return [ew.true_div(g[0], ew.mul(denominator, denominator))]


def softsign(x):
    return Softsign()(x)


def test_a_new_elementwise_op_fuses_with_its_neighbours_and_differentiates():
    x = gn.placeholder("x", (None, 6))
    b = gn.shared(np.linspace(-1, 1, 6).astype("float32"), name="b")
    y = gn.sum(softsign(x * 3.0 + b) * 2.0)
    (gx,) = gn.grad(y, [x])
    fn = gn.function([x], [y, gx], backend="cpu")
    loops = [k for k in fn.program.plan.kernels if isinstance(k, LoopKernel)]
    assert any("softsign" in k.ops and "add" in k.ops for k in loops), [k.ops for k in fn.program.plan.kernels]
    xb = np.random.default_rng(0).standard_normal((5, 6)).astype("float32")
    z = xb * 3 + b.get_value()
    value, grad = fn(xb)
    np.testing.assert_allclose(value, np.sum(2 * z / (1 + np.abs(z))), rtol=1e-5)
    np.testing.assert_allclose(grad, 2 * 3 / (1 + np.abs(z)) ** 2, rtol=1e-5)


# ------------------------------------------------------ a new row-wise template
class RowNormalize(Op):
    """``x / sum(x, axis=-1)``: each row scaled to sum to one."""

    kind = "rowwise"

    def make_node(self, x):
        return Apply(self, [x], [x.type])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def perform(self, inputs):
        x = inputs[0]
        return [(x / x.sum(axis=-1, keepdims=True)).astype(x.dtype)]

    def rowwise_applies(self, node):
        return node.inputs[0].ndim == 2


ROWWISE_TEMPLATES.register(RowNormalize, entry=RowTemplate("row_normalize", """\
def kernel(R, C, n_chunks, x, out):
    for c in prange(n_chunks):
        for i in range(c * R // n_chunks, (c + 1) * R // n_chunks):
            xr, o = x[i], out[i]
            total = 0.0
            for j in range(C):
                total += xr[j]
            for j in range(C):
                o[j] = xr[j] / total
"""))


def test_a_new_row_wise_template_runs_as_its_registered_kernel():
    x = gn.placeholder("x", (None, 4))
    y = RowNormalize()(gn.exp(x))
    fn = gn.function([x], y, backend="cpu")
    assert any(isinstance(k, RowwiseKernel) for k in fn.program.plan.kernels)
    assert any(k.name.endswith("_row_normalize") for k in fn.kernels)
    xb = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    e = np.exp(xb)
    np.testing.assert_allclose(fn(xb), e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    ref = gn.function([x], y, backend="reference")
    np.testing.assert_allclose(fn(xb), ref(xb), rtol=1e-6)


def test_an_op_whose_template_does_not_apply_to_the_shape_runs_on_the_host():
    x = gn.placeholder("x", (None, 2, 3))
    y = RowNormalize()(x)    # 3-D: rowwise_applies says no; NumPy runs it, with the same result
    fn = gn.function([x], y, backend="cpu")
    assert [k.kind for k in fn.kernels] == ["host"]
    xb = np.random.default_rng(2).uniform(1, 2, (2, 2, 3)).astype("float32")
    np.testing.assert_allclose(fn(xb), xb / xb.sum(axis=-1, keepdims=True), rtol=1e-6)
