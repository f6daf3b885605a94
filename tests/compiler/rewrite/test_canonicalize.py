"""Canonicalize's rules that change what kernels compute: the results stay bit for bit."""
import numpy as np

import graphnet as gn


def test_small_integer_powers_become_products_with_the_same_bits():
    x = gn.placeholder("x_pow", (None, 5))
    fn = gn.function([x], [x ** 2, x ** 1, x ** 3], backend="cpu")
    ops = {op for k in fn.kernels for op in k.ops}
    assert "pow" in ops                       # x ** 3 keeps pow (x * x * x rounds twice)
    square, same, cube = fn(values := np.array([[0.1, -3.7, 1e20, np.inf, np.nan]] * 2, "float32"))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(square, np.power(values, 2))
        np.testing.assert_array_equal(cube, np.power(values, 3))
    np.testing.assert_array_equal(same, values)
    plan_ops = [k.ops for k in fn.kernels if not k.is_blas]
    assert sum(ops.count("pow") for ops in plan_ops) == 1
