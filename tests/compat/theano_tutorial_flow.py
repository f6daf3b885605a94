"""A Theano script written the way the Deep Learning Tutorials write them, for graphnet's Theano stand-in.

Run by tests/compat/test_theano_command.py as ``python -m graphnet theano theano_tutorial_flow.py DATA OUT``:
it loads a pickled ``(train, valid, test)`` dataset into shared variables, builds
``HiddenLayer`` and ``LogisticRegression`` classes, trains with ``givens``
minibatch slicing, input noise from ``RandomStreams`` with a ``theano.In``
default, and early stopping with patience; then it prints the best model's
test error and pickles the model's parameters to OUT, so the test can check
that error against NumPy.
"""
from __future__ import print_function

import gzip
import pickle
import sys

import numpy

import theano
import theano.tensor as T
from theano.tensor.shared_randomstreams import RandomStreams


class LogisticRegression(object):
    def __init__(self, input, n_in, n_out):
        self.W = theano.shared(numpy.zeros((n_in, n_out), dtype=theano.config.floatX), name="W", borrow=True)
        self.b = theano.shared(numpy.zeros((n_out,), dtype=theano.config.floatX), name="b", borrow=True)
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]

    def negative_log_likelihood(self, y):
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        if y.dtype.startswith("int"):
            return T.mean(T.neq(self.y_pred, y))
        raise NotImplementedError()


class HiddenLayer(object):
    def __init__(self, rng, input, n_in, n_out, W=None, activation=T.tanh):
        if not W:
            bound = numpy.sqrt(6.0 / (n_in + n_out))
            W = theano.shared(numpy.asarray(rng.uniform(-bound, bound, (n_in, n_out)),
                                            dtype=theano.config.floatX), name="W", borrow=True)
        self.W = W
        self.b = theano.shared(numpy.zeros((n_out,), dtype=theano.config.floatX), name="b", borrow=True)
        self.output = activation(T.dot(input, self.W) + self.b)
        self.params = [self.W, self.b]


def shared_dataset(data_xy):
    data_x, data_y = data_xy
    shared_x = theano.shared(numpy.asarray(data_x, dtype=theano.config.floatX), borrow=True)
    shared_y = theano.shared(numpy.asarray(data_y, dtype=theano.config.floatX), borrow=True)
    return shared_x, T.cast(shared_y, "int32")


def main(dataset, out, n_epochs=30, batch_size=50, learning_rate=0.1):
    with gzip.open(dataset, "rb") as f:
        train_set, valid_set, test_set = pickle.load(f, encoding="latin1")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = [
        shared_dataset(s) for s in (train_set, valid_set, test_set)]
    n_train = train_x.get_value(borrow=True).shape[0] // batch_size
    n_valid = valid_x.get_value(borrow=True).shape[0] // batch_size
    n_test = test_x.get_value(borrow=True).shape[0] // batch_size

    index = T.lscalar("index")
    noise = T.scalar("noise")
    x = T.matrix("x")
    y = T.ivector("y")
    rng = numpy.random.RandomState(1234)
    srng = RandomStreams(rng.randint(2 ** 30))
    noisy_x = srng.binomial(size=x.shape, n=1, p=1 - noise, dtype=theano.config.floatX) * x
    hidden = HiddenLayer(rng, noisy_x, 784, 64)
    classifier = LogisticRegression(hidden.output, 64, 10)

    cost = classifier.negative_log_likelihood(y)
    params = hidden.params + classifier.params
    gparams = [T.grad(cost, p) for p in params]
    train_model = theano.function(
        inputs=[index, theano.In(noise, value=0.1)], outputs=cost,
        updates=[(p, p - learning_rate * g) for p, g in zip(params, gparams)],
        givens={x: train_x[index * batch_size:(index + 1) * batch_size],
                y: train_y[index * batch_size:(index + 1) * batch_size]})

    def scorer(set_x, set_y):
        # Scored without noise: the same graph, with the noise input's default at 0.
        return theano.function([index, theano.In(noise, value=0.0)], classifier.errors(y), givens={
            x: set_x[index * batch_size:(index + 1) * batch_size],
            y: set_y[index * batch_size:(index + 1) * batch_size]})
    validate_model, test_model = scorer(valid_x, valid_y), scorer(test_x, test_y)

    patience, patience_increase, improvement_threshold = 10 * n_train, 2, 0.995
    validation_frequency = min(n_train, patience // 2)
    best_validation_loss, test_score, best_params = numpy.inf, 0.0, None
    epoch, done_looping = 0, False
    while epoch < n_epochs and not done_looping:
        epoch += 1
        for minibatch_index in range(n_train):
            train_model(minibatch_index)
            iteration = (epoch - 1) * n_train + minibatch_index
            if (iteration + 1) % validation_frequency == 0:
                this_validation_loss = numpy.mean([validate_model(i) for i in range(n_valid)])
                if this_validation_loss < best_validation_loss:
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, iteration * patience_increase)
                    best_validation_loss = this_validation_loss
                    test_score = numpy.mean([test_model(i) for i in range(n_test)])
                    best_params = [p.get_value() for p in params]
            if patience <= iteration:
                done_looping = True
                break
    with open(out, "wb") as f:
        pickle.dump(best_params, f)
    print("RESULT test_error=%.6f validation_error=%.6f epochs=%d" % (test_score, best_validation_loss, epoch))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], n_epochs=int(sys.argv[3]) if len(sys.argv) > 3 else 30)
