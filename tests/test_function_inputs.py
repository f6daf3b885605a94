"""``gn.In`` (Theano's ``theano.In``): function inputs with default values, fed by keyword."""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T

index, level, lr = T.lscalar("index"), T.scalar("corruption"), T.scalar("lr")
W = np.arange(6, dtype=np.float32)
step = gn.function([index, gn.In(level, value=0.2), gn.In(lr, value=0.1)],
                   (index + 1) * level + lr, backend="reference")


def test_omitted_inputs_take_their_default_values():
    assert step(2) == pytest.approx(3 * 0.2 + 0.1)


def test_inputs_are_fed_by_keyword_as_sda_py_calls_its_pretraining_functions():
    assert step(index=1, corruption=0.3, lr=0.5) == pytest.approx(2 * 0.3 + 0.5)


def test_a_positional_value_overrides_the_default():
    assert step(0, 0.7) == pytest.approx(0.7 + 0.1)


def test_in_renames_the_keyword():
    x = T.scalar("x")
    double = gn.function([gn.In(x, name="value", value=1.5)], x * 2, backend="reference")
    assert double() == pytest.approx(3.0) and double(value=4.0) == pytest.approx(8.0)


def test_an_input_without_default_is_still_required():
    with pytest.raises(gn.FeedError, match="missing input"):
        step()


def test_an_unknown_keyword_names_the_known_ones():
    with pytest.raises(gn.FeedError, match="inputs are index, corruption, lr"):
        step(1, learning_rate=0.1)


def test_in_refuses_a_theano_option_it_does_not_implement():
    with pytest.raises(gn.GraphnetError, match="mutable"):
        gn.In(T.scalar("m"), value=1.0, mutable=True)
