"""Theano 1.0's truth rule: every variable is truthy except a comparison, whose truth value raises."""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T


def test_a_placeholder_a_shared_variable_and_an_expression_are_truthy_so_if_not_w_tests_for_none():
    W = gn.shared(np.zeros((2, 2), "float32"), name="W")
    x = T.matrix("x")
    assert bool(W) and bool(x) and bool(T.dot(x, W) + 1)
    assert (W or "default") is W


@pytest.mark.parametrize("compare", [lambda a, b: a < b, lambda a, b: a >= b, T.eq, T.neq])
def test_the_truth_value_of_a_comparison_raises_and_names_its_line(compare):
    a, b = T.vector("a"), T.vector("b")
    with pytest.raises(gn.GraphnetError, match=r"comparison .*built at .*test_truthiness.py"):
        bool(compare(a, b))


def test_a_chained_comparison_is_refused_rather_than_silently_dropping_a_test():
    a, b, c = T.scalar("a"), T.scalar("b"), T.scalar("c")
    with pytest.raises(gn.GraphnetError, match="truth value"):
        a < b < c  # noqa: B015 - Python evaluates (a < b) and (b < c)
