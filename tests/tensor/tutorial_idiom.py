"""The deeplearning.net tutorials' logistic regression, MLP and LeNet, ported by changing imports.

Written the way those scripts are: classes holding shared parameters, the
negative log-likelihood as ``-mean(log(p_y_given_x)[arange(n), y])``, minibatch
functions with a symbolic ``index`` and ``givens`` slicing shared data sets,
and early stopping with patience. Only the imports and the data loader differ
(the embedded 8x8 digits instead of MNIST; LeNet's filters are sized for 8x8).
"""
import numpy

import graphnet
import graphnet.tensor as T
from graphnet.nn.data import Standardizer, load_digits, split
from graphnet.tensor.nnet import conv2d
from graphnet.tensor.signal import pool


def load_data(seed=0):
    """Digits, standardized on the training split, as shared variables (as the tutorial's load_data)."""
    X, y = load_digits()
    parts = split(X, y, fractions=(0.6, 0.2, 0.2), seed=seed)
    scaler = Standardizer().fit(parts.train[0])

    def shared_dataset(data_xy):
        data_x, data_y = data_xy
        shared_x = graphnet.shared(numpy.asarray(scaler.transform(data_x), dtype=graphnet.config.floatX),
                                   borrow=True)
        shared_y = graphnet.shared(numpy.asarray(data_y, dtype=graphnet.config.floatX), borrow=True)
        return shared_x, T.cast(shared_y, 'int32')

    return [shared_dataset(part) for part in parts]


class LogisticRegression(object):
    def __init__(self, input, n_in, n_out):
        self.W = graphnet.shared(value=numpy.zeros((n_in, n_out), dtype=graphnet.config.floatX),
                                 name='W', borrow=True)
        self.b = graphnet.shared(value=numpy.zeros((n_out,), dtype=graphnet.config.floatX),
                                 name='b', borrow=True)
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]
        self.input = input

    def negative_log_likelihood(self, y):
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        if y.ndim != self.y_pred.ndim:
            raise TypeError('y should have the same shape as self.y_pred')
        return T.mean(T.neq(self.y_pred, y))


class HiddenLayer(object):
    def __init__(self, rng, input, n_in, n_out, W=None, b=None, activation=T.tanh):
        self.input = input
        if W is None:
            W_values = numpy.asarray(
                rng.uniform(low=-numpy.sqrt(6. / (n_in + n_out)), high=numpy.sqrt(6. / (n_in + n_out)),
                            size=(n_in, n_out)),
                dtype=graphnet.config.floatX)
            if activation == T.nnet.sigmoid:
                W_values *= 4
            W = graphnet.shared(value=W_values, name='W', borrow=True)
        if b is None:
            b = graphnet.shared(value=numpy.zeros((n_out,), dtype=graphnet.config.floatX), name='b', borrow=True)
        self.W = W
        self.b = b
        lin_output = T.dot(input, self.W) + self.b
        self.output = lin_output if activation is None else activation(lin_output)
        self.params = [self.W, self.b]


class MLP(object):
    def __init__(self, rng, input, n_in, n_hidden, n_out):
        self.hiddenLayer = HiddenLayer(rng=rng, input=input, n_in=n_in, n_out=n_hidden, activation=T.tanh)
        self.logRegressionLayer = LogisticRegression(input=self.hiddenLayer.output, n_in=n_hidden, n_out=n_out)
        self.L1 = abs(self.hiddenLayer.W).sum() + abs(self.logRegressionLayer.W).sum()
        self.L2_sqr = (self.hiddenLayer.W ** 2).sum() + (self.logRegressionLayer.W ** 2).sum()
        self.negative_log_likelihood = self.logRegressionLayer.negative_log_likelihood
        self.errors = self.logRegressionLayer.errors
        self.params = self.hiddenLayer.params + self.logRegressionLayer.params
        self.input = input


class LeNetConvPoolLayer(object):
    """convolutional_mlp.py's layer, as written there."""

    def __init__(self, rng, input, filter_shape, image_shape, poolsize=(2, 2)):
        assert image_shape[1] == filter_shape[1]
        self.input = input
        fan_in = numpy.prod(filter_shape[1:])
        fan_out = (filter_shape[0] * numpy.prod(filter_shape[2:]) // numpy.prod(poolsize))
        W_bound = numpy.sqrt(6. / (fan_in + fan_out))
        self.W = graphnet.shared(
            numpy.asarray(rng.uniform(low=-W_bound, high=W_bound, size=filter_shape), dtype=graphnet.config.floatX),
            borrow=True)
        b_values = numpy.zeros((filter_shape[0],), dtype=graphnet.config.floatX)
        self.b = graphnet.shared(value=b_values, borrow=True)
        conv_out = conv2d(input=input, filters=self.W, filter_shape=filter_shape, input_shape=image_shape)
        pooled_out = pool.pool_2d(input=conv_out, ws=poolsize, ignore_border=True)
        self.output = T.tanh(pooled_out + self.b.dimshuffle('x', 0, 'x', 'x'))
        self.params = [self.W, self.b]


class LeNet(object):
    """convolutional_mlp.py's evaluate_lenet5 network; 3x3 then 2x2 filters for 8x8 images."""

    def __init__(self, rng, input, batch_size, nkerns=(10, 20), n_hidden=100):
        layer0_input = input.reshape((batch_size, 1, 8, 8))
        layer0 = LeNetConvPoolLayer(rng, input=layer0_input, image_shape=(batch_size, 1, 8, 8),
                                    filter_shape=(nkerns[0], 1, 3, 3), poolsize=(2, 2))
        layer1 = LeNetConvPoolLayer(rng, input=layer0.output, image_shape=(batch_size, nkerns[0], 3, 3),
                                    filter_shape=(nkerns[1], nkerns[0], 2, 2), poolsize=(2, 2))
        layer2 = HiddenLayer(rng, input=layer1.output.flatten(2), n_in=nkerns[1] * 1 * 1, n_out=n_hidden,
                             activation=T.tanh)
        layer3 = LogisticRegression(input=layer2.output, n_in=n_hidden, n_out=10)
        self.negative_log_likelihood = layer3.negative_log_likelihood
        self.errors = layer3.errors
        self.params = layer3.params + layer2.params + layer1.params + layer0.params


def train(model_name='logistic', learning_rate=0.13, L1_reg=0.00, L2_reg=0.0001, n_epochs=30,
          batch_size=20, n_hidden=100, backend='reference', seed=1234, log=None):
    """Train with minibatch SGD and early stopping; returns (best validation error, its test error, epochs)."""
    datasets = load_data()
    train_set_x, train_set_y = datasets[0]
    valid_set_x, valid_set_y = datasets[1]
    test_set_x, test_set_y = datasets[2]

    n_train_batches = train_set_x.get_value(copy=False).shape[0] // batch_size
    n_valid_batches = valid_set_x.get_value(copy=False).shape[0] // batch_size
    n_test_batches = test_set_x.get_value(copy=False).shape[0] // batch_size
    n_in = train_set_x.get_value(copy=False).shape[1]

    index = T.lscalar()
    x = T.matrix('x')
    y = T.ivector('y')

    if model_name == 'logistic':
        classifier = LogisticRegression(input=x, n_in=n_in, n_out=10)
        cost = classifier.negative_log_likelihood(y)
    elif model_name == 'lenet':
        classifier = LeNet(numpy.random.RandomState(seed), input=x, batch_size=batch_size, n_hidden=n_hidden)
        cost = classifier.negative_log_likelihood(y)
    else:
        rng = numpy.random.RandomState(seed)
        classifier = MLP(rng=rng, input=x, n_in=n_in, n_hidden=n_hidden, n_out=10)
        cost = (classifier.negative_log_likelihood(y) + L1_reg * classifier.L1 + L2_reg * classifier.L2_sqr)

    def minibatch_function(outputs, set_x, set_y, updates=None):
        return graphnet.function(
            inputs=[index], outputs=outputs, updates=updates, backend=backend,
            givens={x: set_x[index * batch_size:(index + 1) * batch_size],
                    y: set_y[index * batch_size:(index + 1) * batch_size]})

    test_model = minibatch_function(classifier.errors(y), test_set_x, test_set_y)
    validate_model = minibatch_function(classifier.errors(y), valid_set_x, valid_set_y)
    gparams = [T.grad(cost=cost, wrt=param) for param in classifier.params]
    updates = [(param, param - learning_rate * gparam) for param, gparam in zip(classifier.params, gparams)]
    train_model = minibatch_function(cost, train_set_x, train_set_y, updates=updates)

    # early stopping parameters, as the tutorial sets them (scaled to the small data set)
    patience = 10 * n_train_batches
    patience_increase = 2
    improvement_threshold = 0.995
    validation_frequency = min(n_train_batches, patience // 2)

    best_validation_loss = numpy.inf
    test_score = 0.
    done_looping = False
    epoch = 0
    while (epoch < n_epochs) and (not done_looping):
        epoch = epoch + 1
        for minibatch_index in range(n_train_batches):
            train_model(minibatch_index)
            iter = (epoch - 1) * n_train_batches + minibatch_index
            if (iter + 1) % validation_frequency == 0:
                validation_losses = [validate_model(i) for i in range(n_valid_batches)]
                this_validation_loss = numpy.mean(validation_losses)
                if log is not None:
                    log(f'epoch {epoch}, validation error {this_validation_loss * 100.:f} %')
                if this_validation_loss < best_validation_loss:
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, iter * patience_increase)
                    best_validation_loss = this_validation_loss
                    test_losses = [test_model(i) for i in range(n_test_batches)]
                    test_score = numpy.mean(test_losses)
            if patience <= iter:
                done_looping = True
                break
    return best_validation_loss, test_score, epoch
