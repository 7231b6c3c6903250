"""Micro-batch counts, batch-size ramp-up at chosen sample counts, and the flag errors."""
import pytest

from megatron.core import num_microbatches_calculator as nmc


@pytest.fixture(autouse=True)
def fresh_calculator():
    nmc.destroy_num_microbatches_calculator()
    yield
    nmc.destroy_num_microbatches_calculator()


def state():
    return (nmc.get_current_global_batch_size(), nmc.get_current_running_global_batch_size(),
            nmc.get_num_microbatches())


def test_constant_batch():
    nmc.init_num_microbatches_calculator(0, None, global_batch_size=32, micro_batch_size=2, data_parallel_size=4)
    assert state() == (32, 32, 4)
    assert nmc.get_micro_batch_size() == 2
    nmc.update_num_microbatches(10_000)
    assert state() == (32, 32, 4)


def test_constant_batch_rounded_down_when_asked():
    nmc.init_num_microbatches_calculator(0, None, 30, 2, 4, decrease_batch_size_if_needed=True)
    assert state() == (30, 24, 3)


@pytest.mark.parametrize(
    "gbs, decrease, message",
    [(30, False, "--global-batch-size .30. is not divisible"), (4, True, "smaller than"), (0, False, "smaller than")],
)
def test_constant_batch_errors(gbs, decrease, message):
    with pytest.raises(ValueError, match=message):
        nmc.init_num_microbatches_calculator(0, None, gbs, 2, 4, decrease_batch_size_if_needed=decrease)


def test_lifecycle_errors():
    with pytest.raises(RuntimeError, match="init_num_microbatches_calculator"):
        nmc.get_num_microbatches()
    nmc.init_num_microbatches_calculator(0, None, 8, 1, 1)
    with pytest.raises(RuntimeError, match="already initialised"):
        nmc.init_num_microbatches_calculator(0, None, 8, 1, 1)
    nmc.reconfigure_num_microbatches_calculator(0, None, 16, 2, 1)
    assert state() == (16, 16, 8)


def test_rampup_sizes_at_chosen_samples():
    # 16 -> 64 in steps of 16 over 300 samples: 3 increments, one every 100 samples.
    nmc.init_num_microbatches_calculator(0, [16, 16, 300], 64, micro_batch_size=2, data_parallel_size=2)
    expected = {0: (16, 4), 99: (16, 4), 100: (32, 8), 199: (32, 8), 250: (48, 12), 299: (48, 12), 300: (64, 16),
                301: (64, 16)}
    for consumed, (gbs, micro_batches) in expected.items():
        nmc.update_num_microbatches(consumed, consistency_check=True)
        assert (nmc.get_current_global_batch_size(), nmc.get_num_microbatches()) == (gbs, micro_batches), consumed


def test_rampup_inconsistent_size_is_reported_or_rounded():
    nmc.init_num_microbatches_calculator(0, [6, 6, 100], 18, micro_batch_size=2, data_parallel_size=2)
    with pytest.raises(ValueError, match="--rampup-batch-size"):
        nmc.update_num_microbatches(0, consistency_check=True)
    nmc.destroy_num_microbatches_calculator()
    nmc.init_num_microbatches_calculator(0, [6, 6, 100], 18, 2, 2, decrease_batch_size_if_needed=True)
    assert state() == (6, 4, 1)
    nmc.update_num_microbatches(60)
    assert state() == (12, 12, 3)


def test_rampup_without_increments_holds_the_size():
    nmc.init_num_microbatches_calculator(0, [16, 8, 100], 16, 2, 2)
    nmc.update_num_microbatches(50)
    assert state() == (16, 16, 4)


@pytest.mark.parametrize(
    "rampup, message",
    [
        ([16, 16], "three numbers"),
        ([32, 16, 100], "must not exceed"),
        ([16, 10, 100], "divisible by the --rampup-batch-size increment"),
        ([16, 0, 100], "increment must be > 0"),
        ([16, 16, -1], "ramp-up samples"),
    ],
)
def test_rampup_errors(rampup, message):
    with pytest.raises(ValueError, match=message):
        nmc.init_num_microbatches_calculator(0, rampup, 24, 1, 1)
