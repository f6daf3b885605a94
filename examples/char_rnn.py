"""A character-level LSTM written with ``gn.scan``, trained on a small generated text.

The text comes from a tiny grammar (``make_text``: sentences such as "the quick fox sees a
red hen."), so it is in the repository by construction and its structure is learnable:
spelling within words, spaces, a full stop and a capital after it. The model reads one
character (one-hot) per step and predicts the next:

    h_t, c_t = LSTM(onehot(x_t), h_{t-1}, c_{t-1})        (a scan over the sequence)
    p(x_{t+1}) = softmax(h_t W_out + b_out)                (one GEMM over all steps)

trained with Adam on minibatches of windows by backpropagation through time (the gradient
of the scan is a second, reversed scan). Prints the loss as it falls, a sample of generated
text, and plots the loss curve to ``char_rnn_loss.png`` when matplotlib is installed.

    python examples/char_rnn.py [--steps 300] [--hidden 64] [--seq 32] [--batch 16] [--plot char_rnn_loss.png]
"""
import argparse
import time

import numpy as np

import graphnet as gn
from graphnet.nn import optim

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--seq", type=int, default=32)
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--plot", default="char_rnn_loss.png", help="where to plot the loss curve ('' for none)")
args = parser.parse_args()


def make_text(sentences, seed):
    """Sentences from a small grammar: a capital, words, a full stop."""
    rng = np.random.default_rng(seed)
    words = {"det": ["the", "a"], "adj": ["quick", "lazy", "red", "small", "old"],
             "noun": ["fox", "dog", "hen", "cat", "bird"], "verb": ["sees", "chases", "finds", "likes"]}
    out = []
    for _ in range(sentences):
        pick = {k: v[rng.integers(len(v))] for k, v in words.items()}
        other = words["noun"][rng.integers(len(words["noun"]))]
        sentence = f"{pick['det']} {pick['adj']} {pick['noun']} {pick['verb']} the {other}."
        out.append(sentence[0].upper() + sentence[1:])
    return " ".join(out)


text = make_text(400, args.seed)
chars = sorted(set(text))
code = {c: i for i, c in enumerate(chars)}
data = np.array([code[c] for c in text], dtype=np.int64)
V, H, T, B = len(chars), args.hidden, args.seq, args.batch
print(f"text: {len(text)} characters, {V} distinct; e.g. {text[:60]!r}")

rng = np.random.default_rng(args.seed)
scale = 1 / np.sqrt(H)
W = gn.shared(rng.uniform(-scale, scale, (V, 4 * H)).astype("float32"), name="W")
U = gn.shared(rng.uniform(-scale, scale, (H, 4 * H)).astype("float32"), name="U")
b = gn.shared(np.concatenate([np.zeros(H), np.ones(H), np.zeros(2 * H)]).astype("float32"), name="b")  # forget bias 1
W_out = gn.shared(rng.uniform(-scale, scale, (H, V)).astype("float32"), name="W_out")
b_out = gn.shared(np.zeros(V, "float32"), name="b_out")
params = [W, U, b, W_out, b_out]


def lstm_step(x_t, h, c):
    z = gn.dot(x_t, W) + gn.dot(h, U) + b
    i, f = gn.sigmoid(z[:, :H]), gn.sigmoid(z[:, H:2 * H])
    g, o = gn.tanh(z[:, 2 * H:3 * H]), gn.sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return [o * gn.tanh(c), c]


x = gn.placeholder("x", (T, B, V))          # one-hot characters, time-major
y = gn.placeholder("y", (T * B,), "int64")  # the next character of each
h0, c0 = gn.placeholder("h0", (B, H)), gn.placeholder("c0", (B, H))
(hs, cs), _ = gn.scan(lstm_step, sequences=x, outputs_info=[h0, c0], name="lstm")
logits = gn.dot(gn.reshape(hs, (T * B, H)), W_out) + b_out
loss = gn.nn.cross_entropy(logits, y)
grads = [gn.maximum(gn.minimum(g, 5.0), -5.0) for g in gn.grad(loss, params)]   # clipped, as RNNs are trained
train = gn.function([x, y, h0, c0], [loss, hs[-1], cs[-1]], updates=optim.Adam(5e-3).updates(params, grads),
                    name="char_rnn_step")

# Sampling: one step of the same cell on one sequence (batch 1), its state fed back by hand.
x1, h1, c1 = gn.placeholder("x1", (1, V)), gn.placeholder("h1", (1, H)), gn.placeholder("c1", (1, H))
h_next, c_next = lstm_step(x1, h1, c1)
predict = gn.function([x1, h1, c1], [gn.softmax(gn.dot(h_next, W_out) + b_out), h_next, c_next], name="sample")


def onehot(indices):
    out = np.zeros(indices.shape + (V,), np.float32)
    np.put_along_axis(out, indices[..., None], 1.0, axis=-1)
    return out


def sample(length, seed):
    pick = np.random.default_rng(seed)
    h, c, char, out = np.zeros((1, H), "float32"), np.zeros((1, H), "float32"), code["T"], ["T"]
    for _ in range(length):
        p, h, c = predict(onehot(np.array([char])), h, c)
        char = int(pick.choice(V, p=p[0] / p[0].sum()))
        out.append(chars[char])
    return "".join(out)


# Truncated BPTT over B parallel streams of the text: each call trains on the next T characters
# of every stream and carries the state on.
stream = len(data) // B
streams = data[:stream * B].reshape(B, stream)
h, c = np.zeros((B, H), "float32"), np.zeros((B, H), "float32")
losses, started, position = [], time.perf_counter(), 0
for step in range(args.steps):
    if position + T + 1 > stream:
        position, h, c = 0, np.zeros_like(h), np.zeros_like(c)
    window = streams[:, position:position + T + 1]
    inputs, targets = onehot(window[:, :-1].T), window[:, 1:].T.reshape(-1)
    value, h, c = train(inputs, targets, h, c)
    losses.append(float(value))
    position += T
    if step % 50 == 0 or step == args.steps - 1:
        print(f"step {step:4d}  loss {np.mean(losses[-50:]):.3f}  ({time.perf_counter() - started:.1f} s)")

print(f"loss: first {losses[0]:.3f} (uniform guess {np.log(V):.3f}), last 20 steps {np.mean(losses[-20:]):.3f}")
print("sample:", sample(80, args.seed))

if args.plot:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
    else:
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(losses, linewidth=0.8, label="minibatch")
        smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
        axes.plot(np.arange(19, len(losses)), smooth, label="mean of 20")
        axes.set_xlabel("training step")
        axes.set_ylabel("cross-entropy (nats per character)")
        axes.set_title("character-level LSTM (gn.scan)")
        axes.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=100)
        print(f"loss curve: {args.plot}")
