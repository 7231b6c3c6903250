"""Console lines character for character against specs/logging.md."""
import math
from datetime import datetime

from megatron.training.log_line import iteration_log_line, validation_log_lines, validation_ppl

SPEC_ITERATION_LINE = (
    "[2026-01-01 12:00:00] iteration      100/  500000 | consumed samples:        51200 | elapsed time per "
    "iteration (ms): 812.3 | throughput per GPU (TFLOP/s/GPU): 412.7 | learning rate: 1.500000E-04 | "
    "global batch size:   512 | lm loss: 6.123456E+00 | loss scale: 65536.0 | grad norm: 1.234 | "
    "number of skipped iterations:   0 | number of nan iterations:   0 |"
)


def spec_fields(**kw):
    fields = dict(
        timestamp=datetime(2026, 1, 1, 12, 0, 0), iteration=100, train_iters=500000, consumed_samples=51200,
        elapsed_time_per_iteration_ms=812.3, throughput_tflops_per_gpu=412.7, learning_rate=1.5e-4,
        global_batch_size=512, losses={"lm loss": 6.123456}, loss_scale=65536.0, grad_norm=1.234,
        skipped_iterations=0, nan_iterations=0,
    )
    fields.update(kw)
    return fields


def test_iteration_line_matches_the_spec():
    assert iteration_log_line(**spec_fields()) == SPEC_ITERATION_LINE


def test_optional_megatron_fields_in_megatron_order():
    line = iteration_log_line(**spec_fields(
        throughput_tflops_per_gpu=None, grad_norm=None, num_zeros=12.0, params_norm=345.6789,
        decoupled_learning_rate=3e-4, skipped_samples=64, losses={"lm loss": 6.123456, "z loss": 0.5},
        skipped_iterations=2, nan_iterations=1,
    ))
    assert line == (
        "[2026-01-01 12:00:00] iteration      100/  500000 | consumed samples:        51200 | skipped "
        "samples:           64 | elapsed time per iteration (ms): 812.3 | learning rate: 1.500000E-04 | "
        "decoupled learning rate: 3.000000E-04 | global batch size:   512 | lm loss: 6.123456E+00 | "
        "z loss: 5.000000E-01 | loss scale: 65536.0 | num zeros: 12.0 | params norm: 345.679 | "
        "number of skipped iterations:   2 | number of nan iterations:   1 |"
    )


def test_our_fields_follow_megatrons():
    line = iteration_log_line(**spec_fields(
        tokens_per_second=65536.04, tokens_per_second_per_gpu=8192.0, mfu=0.41234,
        peak_memory_gib=31.8, peak_memory_fraction=0.3975, eta_seconds=93784,
    ))
    assert line == SPEC_ITERATION_LINE + (
        " tokens per second: 65536.0 | tokens per second per GPU: 8192.0 | MFU: 41.23% |"
        " peak memory (GiB): 31.80 (39.8%) | ETA: 1d 02:03:04 |"
    )


def test_megatron_parsers_still_find_their_fields():
    line = iteration_log_line(**spec_fields(mfu=0.4, eta_seconds=10))
    for needle in ("iteration", "lm loss:", "consumed samples:", "learning rate:", "grad norm:",
                   "elapsed time per iteration (ms):"):
        assert needle in line


def test_nan_loss_is_shown():
    assert "lm loss: NAN |" in iteration_log_line(**spec_fields(losses={"lm loss": float("nan")}))


def test_validation_lines():
    # specs/logging.md shows "lm loss PPL: 3.171234E+01" for a loss of 3.456789, but
    # exp(3.456789) = 31.71498: the spec's figure is illustrative; the format is what is checked.
    dashes, line, closing = validation_log_lines("iteration 1000", {"lm loss": 3.456789})
    assert line == "validation loss at iteration 1000 | lm loss value: 3.456789E+00 | lm loss PPL: 3.171498E+01 |"
    assert dashes == closing == "-" * (len(line) + 1)


def test_validation_ppl_is_capped_and_suffix_names_the_set():
    assert validation_ppl(25.0) == math.exp(20.0)
    _, line, _ = validation_log_lines("iteration 5 on validation set", {"lm loss": 1.0}, suffix="-1")
    assert line == "validation-1 loss at iteration 5 on validation set | lm loss value: 1.000000E+00 | lm loss PPL: 2.718282E+00 |"
