"""Variable.dtype is the dtype's name as a string (Theano's convention) that also answers as a NumPy dtype."""
import pickle

import numpy as np
import pytest

import graphnet as gn
import graphnet.tensor as T
from graphnet.graph.dtype import DType


def test_dtype_compares_equal_to_its_name_as_theano_scripts_write_it():
    x = T.matrix("x")
    assert x.dtype == "float32"
    assert x.dtype != "float64"
    assert str(x.dtype) == "float32"
    assert "%s" % x.dtype == "float32"


def test_integer_dtype_answers_startswith_int_as_in_the_tutorials_errors_method():
    assert T.ivector("y").dtype.startswith("int")
    assert not T.vector("v").dtype.startswith("int")


def test_dtype_equals_numpy_dtypes_and_scalar_types_both_ways():
    d = T.lvector().dtype
    assert d == np.int64 and np.int64 == d
    assert d == np.dtype("int64") and np.dtype("int64") == d
    assert d != np.int32 and d != np.dtype("int32")


@pytest.mark.parametrize("name", ["float32", "float64", "int8", "int32", "int64", "uint8", "bool"])
def test_dtype_carries_the_attributes_of_numpy_dtype(name):
    d, reference = DType(name), np.dtype(name)
    assert (d.kind, d.itemsize, d.char, d.str, d.type, d.name) == (
        reference.kind, reference.itemsize, reference.char, reference.str, reference.type, reference.name)
    assert np.dtype(d) == reference
    assert np.zeros(2, d).dtype == reference


def test_dtype_hashes_as_its_name_so_string_keyed_tables_find_it():
    assert {"float32": "single"}[DType("float32")] == "single"
    assert DType("int32") in {"int32", "int64"}


def test_numba_resolves_a_dtype_as_it_resolves_the_numpy_dtype():
    from numba.np.numpy_support import from_dtype
    assert from_dtype(DType("float32")) == from_dtype(np.dtype("float32"))


def test_dtypes_are_interned_and_survive_pickling():
    assert DType("float32") is DType(np.float32) is DType(np.dtype("f4"))
    assert pickle.loads(pickle.dumps(DType("int16"))) is DType("int16")


def test_a_string_that_names_no_dtype_is_unequal_rather_than_an_error():
    assert DType("float32") != "floatX"


def test_placeholders_shared_variables_and_constants_all_report_string_dtypes():
    for var in (gn.placeholder("p", (2,), "float64"), gn.shared(np.zeros(3, "int32")), gn.constant(1.5)):
        assert isinstance(var.dtype, str)
        assert var.dtype == np.dtype(var.dtype).name
