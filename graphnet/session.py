"""``gn.Session``: run fetches on feeds, compiling each new signature once."""
from __future__ import annotations

from graphnet.errors import FeedError, GraphnetError
from graphnet.function import Function
from graphnet.graph.ir import Variable


class Session:
    """Runs graphs on mini-batches with one backend.

    ``run`` compiles on first use of each (fetches, feeds, updates, training)
    signature and reuses that compiled function afterwards.
    """

    def __init__(self, backend="cpu", **options):
        self.backend = backend
        self.options = options
        self._compiled = {}

    def run(self, fetches, feed_dict=None, updates=None, training=False):
        """Values of ``fetches`` (a variable or a list of them) for ``feed_dict``."""
        feed_dict = dict(feed_dict or {})
        for key in feed_dict:
            if not isinstance(key, Variable):
                raise FeedError(f"Session.run: feed_dict keys must be placeholders, got {key!r}")
        single = isinstance(fetches, Variable)
        fetch_list = [fetches] if single else list(fetches)
        if not all(isinstance(f, Variable) for f in fetch_list):
            raise GraphnetError("Session.run: fetches must be graph variables")
        update_list = list(updates.items()) if isinstance(updates, dict) else list(updates or [])
        inputs = sorted(feed_dict, key=lambda v: v.id)
        key = (tuple(f.id for f in fetch_list), tuple(p.id for p in inputs),
               tuple((s.id, e.id) for s, e in update_list), bool(training))
        fn = self._compiled.get(key)
        if fn is None:
            fn = Function(inputs, fetch_list, update_list, backend=self.backend, training=training, **self.options)
            self._compiled[key] = fn
        results = fn(*[feed_dict[p] for p in inputs])
        return results[0] if single else results

    def function(self, inputs, outputs, updates=None, training=False):
        """A compiled function with this session's backend and options."""
        return Function(inputs, outputs, updates, backend=self.backend, training=training, **self.options)
