"""RandomStreams as Theano scripts use it: symbolic p, size and parameters; fresh draws on every call."""
import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T
from graphnet.ops import rng
from graphnet.tensor.shared_randomstreams import MRG_RandomStreams, RandomStreams

X = np.ones((60, 50), np.float32)


def _corrupt(seed, backend="reference"):
    """dA.py's corruption: ``binomial(size=x.shape, n=1, p=1 - level, dtype=floatX) * x`` with a symbolic level."""
    x, level = T.matrix("x"), T.scalar("level")
    mask = RandomStreams(seed).binomial(size=x.shape, n=1, p=1 - level, dtype=gn.config.floatX)
    return gn.function([x, level], mask * x, backend=backend)


def test_symbolic_p_keeps_each_element_with_probability_one_minus_the_fed_level():
    corrupt = _corrupt(1)
    for level in (0.1, 0.5, 0.9):
        kept = corrupt(np.ones((200, 100), np.float32), level)
        assert set(np.unique(kept)) <= {0.0, 1.0}
        assert abs(kept.mean() - (1 - level)) < 0.02


def test_the_mask_is_bit_for_bit_the_counter_based_rng_keep_decision():
    x, p = T.matrix("x"), T.scalar("p")
    streams = RandomStreams(4)
    mask = streams.binomial(size=x.shape, p=p, dtype="float32")
    got = gn.function([x, p], mask, backend="reference", no_default_updates=True)(X, 0.3)
    seed = mask.owner.op.seed
    expected = rng.uniform01_array(seed, 0, X.shape, np.float32).astype(np.float64) < np.float64(np.float32(0.3))
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_a_tensor_p_broadcasts_one_probability_per_column():
    x, p = T.matrix("x"), T.vector("p")
    mask = RandomStreams(2).binomial(size=x.shape, p=p, dtype="float32")
    columns = gn.function([x, p], mask, backend="reference")(np.ones((4000, 3), np.float32),
                                                             np.array([0.1, 0.5, 0.9], np.float32))
    np.testing.assert_allclose(columns.mean(axis=0), [0.1, 0.5, 0.9], atol=0.03)


def test_without_size_the_draw_takes_the_shape_of_p_as_rbm_py_samples_hidden_units():
    p = T.matrix("p")
    sample = RandomStreams(3).binomial(n=1, p=p, dtype="float32")
    assert gn.function([p], sample, backend="reference")(np.full((5, 7), 0.5, np.float32)).shape == (5, 7)


def test_size_may_hold_symbolic_sizes():
    x = T.matrix("x")
    u = RandomStreams(5).uniform(size=(x.shape[0], 3))
    assert gn.function([x], u, backend="reference")(np.zeros((8, 2), np.float32)).shape == (8, 3)


def test_uniform_and_normal_take_symbolic_parameters():
    low, avg = T.scalar("low"), T.scalar("avg")
    streams = RandomStreams(6)
    u = streams.uniform(size=(20000,), low=low, high=low + 2)
    z = streams.normal(size=(20000,), avg=avg, std=3.0)
    U, Z = gn.function([low, avg], [u, z], backend="reference")(10.0, -5.0)
    assert U.dtype == np.float32 and 10 <= U.min() and U.max() < 12 and abs(U.mean() - 11) < 0.05
    assert abs(Z.mean() + 5) < 0.1 and abs(Z.std() - 3) < 0.1


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_plain_function_draws_a_fresh_mask_on_each_of_three_calls(backend):
    corrupt = _corrupt(7, backend)
    masks = [corrupt(X, 0.3) for _ in range(3)]
    assert not (masks[0] == masks[1]).all() and not (masks[1] == masks[2]).all()
    assert not (masks[0] == masks[2]).all()


def test_the_same_seed_replays_the_same_three_masks_on_every_backend():
    ref, cpu, again = _corrupt(11, "reference"), _corrupt(11, "cpu"), _corrupt(11, "reference")
    for _ in range(3):
        mask = ref(X, 0.3)
        np.testing.assert_array_equal(mask, cpu(X, 0.3))
        np.testing.assert_array_equal(mask, again(X, 0.3))


def test_no_default_updates_gives_the_same_numbers_on_every_call():
    x = T.matrix("x")
    mask = RandomStreams(8).binomial(size=x.shape, p=0.5, dtype="float32")
    frozen = gn.function([x], mask, backend="reference", no_default_updates=True)
    np.testing.assert_array_equal(frozen(X), frozen(X))


def test_dropout_keeps_its_train_and_eval_switch():
    x = T.matrix("x")
    dropped = gn.nn.dropout(x, 0.5, seed=3)
    evaluate = gn.function([x], dropped, backend="reference")
    np.testing.assert_array_equal(evaluate(X), X)
    train = gn.function([x], dropped, backend="reference", training=True)
    a, b = train(X), train(X)
    assert (a == 0).any() and not (a == b).all()


def test_mrg_random_streams_is_the_same_stream_class():
    assert MRG_RandomStreams is RandomStreams


def test_an_out_of_range_probability_is_refused_when_the_graph_is_built():
    with pytest.raises(gn.GraphnetError, match=r"p must be a number in \[0, 1\]"):
        RandomStreams(1).binomial(size=(3,), p=1.5)


def test_draw_functions_theano_has_and_graphnet_lacks_name_themselves():
    with pytest.raises(gn.GraphnetError, match="RandomStreams.multinomial is not supported"):
        RandomStreams(1).multinomial(size=(3,), pvals=[[0.5, 0.5]])
