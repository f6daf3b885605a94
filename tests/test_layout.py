"""The package's layout: every module path of the flat layout still imports, as the module that moved."""
import importlib

import pytest

import graphnet as gn
from graphnet._moved import MOVED


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_an_old_module_path_imports_the_module_that_now_holds_its_code(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new   # the module keeps its own identity


def test_the_top_level_names_of_the_flat_layout_still_work():
    from graphnet import checkpoint, data, init, optim, train
    assert train.fit is importlib.import_module("graphnet.training.fit").fit
    assert (gn.init, gn.data, gn.checkpoint) == (init, data, checkpoint)
    assert optim.SGD is gn.nn.optim.SGD
