"""Loss-scale sequences of Megatron's dynamic scaler: hysteresis, backoff, growth window, floor."""
import pytest
import torch

from megatron.core.device import current_device
from megatron.core.optimizer.grad_scaler import ConstantGradScaler, DynamicGradScaler

OVERFLOW, CLEAN = True, False


def dynamic(**kw):
    args = dict(initial_scale=2.0 ** 16, min_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5,
                growth_interval=3, hysteresis=2)
    args.update(kw)
    return DynamicGradScaler(**args)


def run(scaler, steps):
    """Scale (as a power of two) after each update."""
    out = []
    for found_inf in steps:
        scaler.update(found_inf)
        out.append(int(torch.log2(scaler.scale).item()))
    return out


def test_hysteresis_then_backoff_then_growth():
    scaler = dynamic()
    got = run(scaler, [OVERFLOW, OVERFLOW, OVERFLOW, CLEAN, CLEAN, CLEAN, OVERFLOW, OVERFLOW])
    # 1st overflow spends hysteresis; 2nd and 3rd halve; 3 clean steps double and refill it.
    assert got == [16, 15, 14, 14, 14, 15, 15, 14]


def test_clean_steps_do_not_refill_hysteresis():
    scaler = dynamic()
    assert run(scaler, [OVERFLOW, CLEAN, CLEAN, OVERFLOW]) == [16, 16, 16, 15]


def test_overflow_restarts_the_growth_window():
    scaler = dynamic(hysteresis=5)
    assert run(scaler, [CLEAN, CLEAN, OVERFLOW, CLEAN, CLEAN, CLEAN]) == [16, 16, 16, 16, 16, 17]


def test_scale_never_drops_below_min():
    scaler = dynamic(initial_scale=2.0 ** 12, hysteresis=1)
    assert run(scaler, [OVERFLOW] * 5) == [11, 10, 10, 10, 10]


def test_tensors_live_on_the_compute_device():
    scaler = dynamic(initial_scale=1024.0)
    assert scaler.scale.dtype == torch.float32 and scaler.scale.device == current_device()
    assert scaler.inv_scale.item() == 1.0 / 1024.0
    assert scaler.inv_scale.dtype == torch.float32


def test_state_dict_round_trip_continues_the_sequence():
    scaler = dynamic()
    run(scaler, [OVERFLOW, CLEAN, CLEAN])  # hysteresis 1 left, growth tracker 2
    restored = dynamic(initial_scale=2.0 ** 11)
    restored.load_state_dict(scaler.state_dict())
    assert restored.scale.item() == 2.0 ** 16
    # next clean step completes the window (grow); an overflow right away would back off
    assert run(restored, [CLEAN]) == run(scaler, [CLEAN]) == [17]


def test_constant_scaler_ignores_overflows():
    scaler = ConstantGradScaler(128.0)
    scaler.update(True)
    scaler.update(False)
    assert scaler.scale.item() == 128.0
    assert scaler.state_dict() == {}


@pytest.mark.parametrize(
    "kw, flag",
    [
        (dict(min_scale=2.0 ** 17), "--min-loss-scale"),
        (dict(hysteresis=0), "--hysteresis"),
        (dict(growth_interval=0), "--loss-scale-window"),
        (dict(initial_scale=0.0, min_scale=1.0), "--initial-loss-scale"),
        (dict(backoff_factor=1.5), "backoff"),
    ],
)
def test_bad_settings_name_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag):
        dynamic(**kw)
