"""The console lines Megatron-LM users and their log parsers read, built from plain values.

Iteration line: Megatron's fields in Megatron's order and number formats, then ours in the same
``name: value |`` style:

    tokens per second: N |           all GPUs together, one decimal
    tokens per second per GPU: N |   one decimal
    MFU: 41.23% |                    PaLM convention (see megatron/training/throughput.py)
    peak memory (GiB): 31.80 (39.8%) |   max allocated on this rank, share of the device memory
    ETA: 1d 02:03:04 |

Each of ours appears only when its value is given. Megatron prints the line with a leading space;
we print it as specs/logging.md shows it, starting at the timestamp.
"""
import math
from datetime import datetime
from typing import List, Mapping, Optional

from megatron.training.throughput import format_eta


def iteration_log_line(
    *,
    timestamp: datetime,
    iteration: int,
    train_iters: int,
    consumed_samples: int,
    elapsed_time_per_iteration_ms: float,
    learning_rate: Optional[float],
    global_batch_size: int,
    losses: Mapping[str, float],
    loss_scale: float,
    grad_norm: Optional[float],
    skipped_iterations: int,
    nan_iterations: int,
    skipped_samples: int = 0,
    throughput_tflops_per_gpu: Optional[float] = None,
    decoupled_learning_rate: Optional[float] = None,
    num_zeros: Optional[float] = None,
    params_norm: Optional[float] = None,
    tokens_per_second: Optional[float] = None,
    tokens_per_second_per_gpu: Optional[float] = None,
    mfu: Optional[float] = None,
    peak_memory_gib: Optional[float] = None,
    peak_memory_fraction: Optional[float] = None,
    eta_seconds: Optional[float] = None,
) -> str:
    """One iteration line. ``losses`` are the interval averages, printed in the given order;
    ``throughput_tflops_per_gpu`` is given only with --log-throughput; ``mfu`` is a fraction."""
    parts = [
        f"[{timestamp.strftime('%Y-%m-%d %H:%M:%S')}]",
        " iteration {:8d}/{:8d} |".format(iteration, train_iters),
        " consumed samples: {:12d} |".format(consumed_samples),
    ]
    if skipped_samples > 0:
        parts.append(" skipped samples: {:12d} |".format(skipped_samples))
    parts.append(" elapsed time per iteration (ms): {:.1f} |".format(elapsed_time_per_iteration_ms))
    if throughput_tflops_per_gpu is not None:
        parts.append(f" throughput per GPU (TFLOP/s/GPU): {throughput_tflops_per_gpu:.1f} |")
    if learning_rate is not None:
        parts.append(f" learning rate: {learning_rate:.6E} |")
    if decoupled_learning_rate is not None:
        parts.append(f" decoupled learning rate: {decoupled_learning_rate:.6E} |")
    parts.append(f" global batch size: {global_batch_size:5d} |")
    # Megatron hides negative averages; we print every loss so a NaN is seen, not hidden.
    parts += [" {}: {:.6E} |".format(name, value) for name, value in losses.items()]
    parts.append(f" loss scale: {loss_scale:.1f} |")
    if grad_norm is not None:
        parts.append(f" grad norm: {grad_norm:.3f} |")
    if num_zeros is not None:
        parts.append(f" num zeros: {num_zeros} |")
    if params_norm is not None:
        parts.append(f" params norm: {params_norm:.3f} |")
    parts.append(" number of skipped iterations: {:3d} |".format(skipped_iterations))
    parts.append(" number of nan iterations: {:3d} |".format(nan_iterations))

    if tokens_per_second is not None:
        parts.append(f" tokens per second: {tokens_per_second:.1f} |")
    if tokens_per_second_per_gpu is not None:
        parts.append(f" tokens per second per GPU: {tokens_per_second_per_gpu:.1f} |")
    if mfu is not None:
        parts.append(f" MFU: {100.0 * mfu:.2f}% |")
    if peak_memory_gib is not None:
        share = f" ({100.0 * peak_memory_fraction:.1f}%)" if peak_memory_fraction is not None else ""
        parts.append(f" peak memory (GiB): {peak_memory_gib:.2f}{share} |")
    if eta_seconds is not None:
        parts.append(f" ETA: {format_eta(eta_seconds)} |")
    return "".join(parts)


def validation_ppl(loss: float) -> float:
    """Megatron's perplexity: exp of the loss, capped at exp(20) so a diverged run still prints."""
    return math.exp(min(20.0, loss))


def validation_log_lines(prefix: str, losses: Mapping[str, float], suffix: str = "") -> List[str]:
    """The validation report: a dashed line, the losses line, a dashed line.

    ``prefix`` is e.g. 'iteration 1000' (or 'iteration 1000 on validation set' after training);
    ``suffix`` is '-0', '-1', ... with several validation sets. The dashes are one longer than
    the line, as in Megatron.
    """
    line = f"validation{suffix} loss at {prefix} |"
    for name, value in losses.items():
        line += " {} value: {:.6E} | {} PPL: {:.6E} |".format(name, value, name, validation_ppl(value))
    dashes = "-" * (len(line) + 1)
    return [dashes, line, dashes]
