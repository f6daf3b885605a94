"""The counter-based RNG: the same bits from NumPy, serial Numba and parallel Numba at any thread count."""

import numba
import numpy as np
import pytest

from graphnet import rng
from graphnet.compiler.runtime import cache
from graphnet.errors import GraphnetError

N = 100_000
MASK64 = 2**64 - 1


def splitmix64_oracle(state):
    """SplitMix64 written independently on Python ints: the output for ``state`` (pre-increment)."""
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def uniform01_oracle(seed, stream, index):
    key = splitmix64_oracle((splitmix64_oracle(seed) + stream * 0x9E3779B97F4A7C15) & MASK64)
    bits = splitmix64_oracle((key + index * 0x9E3779B97F4A7C15) & MASK64)
    return (bits >> 11) / 2.0**53


@numba.njit
def fill_serial(seed, stream, out64, out32, mask, keep_prob):
    for i in range(out64.shape[0]):
        out64[i] = rng.uniform01(seed, stream, i)
        out32[i] = rng.uniform01_f32(seed, stream, i)
        mask[i] = rng.keep_mask(seed, stream, i, keep_prob)


@numba.njit(parallel=True)
def fill_parallel(seed, stream, out64, out32, mask, keep_prob):
    for i in numba.prange(out64.shape[0]):
        out64[i] = rng.uniform01(seed, stream, i)
        out32[i] = rng.uniform01_f32(seed, stream, i)
        mask[i] = rng.keep_mask(seed, stream, i, keep_prob)


def draw_with(kernel, seed, stream, n=N, keep_prob=0.5):
    out64, out32, mask = np.empty(n), np.empty(n, np.float32), np.empty(n, np.bool_)
    kernel(seed, stream, out64, out32, mask, keep_prob)
    return out64, out32, mask


def draw_with_numpy(seed, stream, n=N, keep_prob=0.5):
    return (
        rng.uniform01_array(seed, stream, n),
        rng.uniform01_array(seed, stream, n, dtype=np.float32),
        rng.keep_mask_array(seed, stream, n, keep_prob),
    )


def assert_bitwise_equal(draws, expected):
    for got, want in zip(draws, expected):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.fixture
def thread_count():
    """Sets Numba's thread count for one test and restores it afterwards."""
    before = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(before)


# -- the hash ----------------------------------------------------------------


def test_splitmix64_gives_the_published_sequence_from_state_zero():
    golden = 0x9E3779B97F4A7C15
    states = [np.uint64((n * golden) & MASK64) for n in range(3)]
    with np.errstate(over="ignore"):
        outputs = [int(rng.splitmix64(state)) for state in states]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_splitmix64_agrees_with_an_independent_oracle_in_every_form():
    states = [0, 1, 2**63, MASK64, 0x123456789ABCDEF0]
    expected = [splitmix64_oracle(state) for state in states]
    with np.errstate(over="ignore"):
        assert [int(rng.splitmix64(np.uint64(state))) for state in states] == expected
        assert rng.splitmix64(np.array(states, dtype=np.uint64)).tolist() == expected
    assert [int(rng.splitmix64_nb(np.uint64(state))) for state in states] == expected


def test_uniforms_agree_with_an_independent_oracle():
    got = rng.uniform01_array(seed=7, stream=3, shape=50)
    assert got.tolist() == [uniform01_oracle(7, 3, index) for index in range(50)]


def test_python_scalar_calls_match_the_vectorized_numpy_version():
    with np.errstate(over="ignore"):
        scalars = [rng.uniform01(np.uint64(5), np.uint64(9), np.uint64(i)) for i in range(20)]
    assert np.array(scalars).tolist() == rng.uniform01_array(5, 9, 20).tolist()


# -- bitwise agreement across backends ------------------------------------------


def test_serial_numba_matches_numpy_bitwise():
    assert_bitwise_equal(draw_with(fill_serial, 1234, 17), draw_with_numpy(1234, 17))


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_numba_matches_numpy_bitwise_at_any_thread_count(threads, thread_count):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has only {numba.config.NUMBA_NUM_THREADS} thread(s) here")
    thread_count(threads)
    assert_bitwise_equal(draw_with(fill_parallel, 1234, 17), draw_with_numpy(1234, 17))


def test_compiled_scalar_functions_match_numpy():
    expected = draw_with_numpy(99, 4, n=10, keep_prob=0.3)
    got64 = np.array([rng.uniform01_nb(99, 4, i) for i in range(10)])
    got32 = np.array([rng.uniform01_f32_nb(99, 4, i) for i in range(10)], dtype=np.float32)
    mask = np.array([rng.keep_mask_nb(99, 4, i, 0.3) for i in range(10)])
    assert_bitwise_equal((got64, got32, mask), expected)


PASTED_KERNELS = '''
import numba
import numpy as np

{rng_source}

@numba.njit(cache=True, parallel=True)
def fill(seed, stream, out64, out32, mask, keep_prob):
    for i in numba.prange(out64.shape[0]):
        out64[i] = uniform01(seed, stream, i)
        out32[i] = uniform01_f32(seed, stream, i)
        mask[i] = keep_mask(seed, stream, i, keep_prob)
'''


def test_source_pasted_into_a_generated_module_matches_numpy(tmp_path):
    cache.set_cache_dir(tmp_path)
    try:
        module = cache.load_module(PASTED_KERNELS.format(rng_source=rng.scalar_source()), "rng_test")
    finally:
        cache.set_cache_dir(None)
    assert_bitwise_equal(draw_with(module.fill, 2024, 8), draw_with_numpy(2024, 8))


def test_scalar_source_carries_the_requested_decorator():
    source = rng.scalar_source("@cuda.jit(device=True)")
    assert source.count("@cuda.jit(device=True)\ndef ") == len(rng.SCALAR_FUNCTIONS)
    assert "register_jitable" not in source
    namespace = {"np": np}
    exec(rng.scalar_source(""), namespace)
    with np.errstate(over="ignore"):
        assert namespace["uniform01"](np.uint64(3), np.uint64(1), np.uint64(0)) == uniform01_oracle(3, 1, 0)


def test_cuda_kernel_matches_numpy_bitwise():
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("no CUDA GPU")
    namespace = {"np": np, "cuda": cuda}
    exec(rng.scalar_source("@cuda.jit(device=True)"), namespace)
    uniform01, uniform01_f32, keep_mask = (namespace[f] for f in ("uniform01", "uniform01_f32", "keep_mask"))

    @cuda.jit
    def fill(seed, stream, out64, out32, mask, keep_prob):
        i = cuda.grid(1)
        if i < out64.shape[0]:
            out64[i] = uniform01(seed, stream, i)
            out32[i] = uniform01_f32(seed, stream, i)
            mask[i] = keep_mask(seed, stream, i, keep_prob)

    out64, out32 = cuda.device_array(N), cuda.device_array(N, np.float32)
    mask = cuda.device_array(N, np.bool_)
    fill[(N + 255) // 256, 256](np.uint64(1234), np.uint64(17), out64, out32, mask, 0.5)
    got = (out64.copy_to_host(), out32.copy_to_host(), mask.copy_to_host())
    assert_bitwise_equal(got, draw_with_numpy(1234, 17))


# -- what the numbers look like ----------------------------------------------


def test_different_streams_give_different_uniforms():
    assert not np.array_equal(rng.uniform01_array(1, 0, 1000), rng.uniform01_array(1, 1, 1000))


def test_different_seeds_give_different_uniforms():
    assert not np.array_equal(rng.uniform01_array(1, 0, 1000), rng.uniform01_array(2, 0, 1000))


def test_same_seed_and_stream_give_the_same_uniforms():
    assert np.array_equal(rng.uniform01_array(5, 6, 1000), rng.uniform01_array(5, 6, 1000))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniforms_lie_in_zero_one(dtype):
    values = rng.uniform01_array(3, 0, N, dtype=dtype)
    assert values.dtype == dtype
    assert values.min() >= 0.0 and values.max() < 1.0


@pytest.mark.parametrize("dtype, bits", [(np.float64, 53), (np.float32, 24)])
def test_uniforms_are_multiples_of_two_to_minus_bits(dtype, bits):
    scaled = rng.uniform01_array(3, 0, 1000, dtype=dtype).astype(np.float64) * 2.0**bits
    assert np.array_equal(scaled, np.floor(scaled))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mean_of_many_uniforms_is_one_half(dtype):
    assert abs(rng.uniform01_array(11, 2, N, dtype=dtype).mean(dtype=np.float64) - 0.5) < 0.01


def test_neighbouring_elements_are_uncorrelated():
    values = rng.uniform01_array(11, 2, N)
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.02


@pytest.mark.parametrize("keep_prob", [0.5, 0.9, 0.1])
def test_keep_mask_keeps_the_asked_fraction(keep_prob):
    assert abs(rng.keep_mask_array(8, 1, N, keep_prob).mean() - keep_prob) < 0.01


def test_keep_mask_with_probability_zero_or_one():
    assert not rng.keep_mask_array(8, 1, 1000, 0.0).any()
    assert rng.keep_mask_array(8, 1, 1000, 1.0).all()


def test_array_shape_indexes_elements_in_c_order():
    grid = rng.uniform01_array(4, 2, (30, 7))
    assert grid.shape == (30, 7)
    assert np.array_equal(grid.ravel(), rng.uniform01_array(4, 2, 210))


@pytest.mark.parametrize("seed", [-1, 2**64, "seven"])
def test_seed_outside_uint64_is_refused(seed):
    with pytest.raises(GraphnetError, match="seed"):
        rng.uniform01_array(seed, 0, 10)
