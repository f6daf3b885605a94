"""Scripts in the deeplearning.net tutorial idiom train on the digits to >= 95% test accuracy.

The scripts live in ``tutorial_idiom.py`` next to this file, written as the
tutorials write them (``import graphnet.tensor as T``, ``givens`` minibatches
over shared data with a symbolic index, early stopping with patience).
"""
import importlib.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("tutorial_idiom", os.path.join(_HERE, "tutorial_idiom.py"))
tutorial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorial)


def test_logistic_regression_script_reaches_95_percent(backend):
    best_valid, test_error, epochs = tutorial.train("logistic", learning_rate=0.05, n_epochs=20, backend=backend)
    assert 1 - test_error >= 0.95
    assert best_valid < 0.06


def test_tanh_mlp_with_l1_and_l2_script_reaches_95_percent(backend):
    best_valid, test_error, epochs = tutorial.train("mlp", learning_rate=0.1, L1_reg=0.0001, L2_reg=0.0001,
                                                    n_hidden=50, n_epochs=15, backend=backend)
    assert 1 - test_error >= 0.95
    assert best_valid < 0.06


def test_patience_stops_training_before_the_epoch_limit():
    # Patience starts at 10 epochs' worth of minibatches and grows only on clear improvements.
    best_valid, test_error, epochs = tutorial.train("logistic", learning_rate=0.05, n_epochs=200)
    assert epochs < 200


def test_lenet_script_with_conv2d_and_pool_2d_learns_the_digits():
    # convolutional_mlp.py's LeNetConvPoolLayer as written (conv2d with filter_shape/input_shape, pool.pool_2d,
    # b.dimshuffle('x', 0, 'x', 'x'), flatten(2)); 3x3 then 2x2 filters leave 1x1 maps of 8x8 digits, so it
    # learns more slowly than the MLP: 5 epochs reach ~86% here (reference backend: the convolutions run
    # there on every backend).
    best_valid, test_error, epochs = tutorial.train("lenet", learning_rate=0.1, n_epochs=5, n_hidden=100)
    assert epochs == 5
    assert 1 - test_error >= 0.8
    assert best_valid < 0.2
