"""TensorBoard tags written by MetricsWriter, read back from the event file."""
import math
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from megatron.core.errors import ConfigError
from megatron.training.writers import MetricsWriter, build_writers

from tests.flag_defaults import default_args


def read_scalars(log_dir):
    """tag -> [(step, value), ...] from the event files in log_dir."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def metrics(iteration):
    return {
        "lm loss": 5.0 - 0.5 * iteration, "learning-rate": 1e-4 * iteration, "batch-size": 8,
        "loss-scale": 1024.0, "grad-norm": 1.5, "num-zeros": None, "params-norm": 20.0,
        "iteration-time": 0.25, "throughput": 100.0,
    }


def test_training_tags_with_their_vs_samples_twins(tmp_path):
    writer = MetricsWriter(SummaryWriter(str(tmp_path)), tensorboard_log_interval=2, log_world_size=True,
                           log_timers=True, world_size=4)
    for iteration in range(1, 5):
        writer.write_training(iteration, consumed_samples=8 * iteration, metrics=metrics(iteration))
    writer.close()
    scalars = read_scalars(tmp_path)

    interval_tags = ["lm loss", "learning-rate", "batch-size", "loss-scale", "grad-norm", "params-norm", "world-size"]
    timing_tags = ["iteration-time", "throughput"]
    expected = set(interval_tags + timing_tags) | {t + " vs samples" for t in interval_tags + timing_tags}
    assert set(scalars) == expected  # num-zeros was None: not written
    assert scalars["lm loss"] == [(2, 4.0), (4, 3.0)]  # every --tensorboard-log-interval (2)
    assert scalars["lm loss vs samples"] == [(16, 4.0), (32, 3.0)]
    assert scalars["world-size"] == [(2, 4.0), (4, 4.0)]
    assert [step for step, _ in scalars["iteration-time"]] == [1, 2, 3, 4]  # whenever given
    assert scalars["learning-rate"][1] == (4, pytest.approx(4e-4))


def test_flags_switch_tags_off(tmp_path):
    writer = MetricsWriter(SummaryWriter(str(tmp_path)), log_loss_scale=False, log_memory=True)
    writer.write_training(1, 8, metrics(1))
    writer.close()
    scalars = read_scalars(tmp_path)
    # no loss scale (--no-log-loss-scale-to-tensorboard), no timers, no world size; on a CPU run
    # there is no device allocator, so --log-memory-to-tensorboard writes nothing
    assert not {"loss-scale", "iteration-time", "throughput", "world-size", "mem-allocated-bytes"} & set(scalars)
    assert "lm loss" in scalars


def test_memory_tags_when_given(tmp_path):
    writer = MetricsWriter(SummaryWriter(str(tmp_path)), log_memory=True)
    writer.write_training(3, 24, {"lm loss": 1.0, "mem-allocated-bytes": 2048, "mem-max-allocated-bytes": 4096})
    writer.close()
    scalars = read_scalars(tmp_path)
    assert scalars["mem-max-allocated-bytes"] == [(3, 4096.0)]
    assert scalars["mem-allocated-bytes vs samples"] == [(24, 2048.0)]


def test_validation_tags(tmp_path):
    writer = MetricsWriter(SummaryWriter(str(tmp_path)), log_validation_ppl=True)
    writer.write_validation(100, 800, {"lm loss": 2.0})
    writer.close()
    scalars = read_scalars(tmp_path)
    assert scalars["lm loss validation"] == [(100, 2.0)]
    assert scalars["lm loss validation vs samples"] == [(800, 2.0)]
    assert scalars["lm loss validation ppl"] == [(100, pytest.approx(math.exp(2.0)))]
    assert scalars["lm loss validation ppl vs samples"] == [(800, pytest.approx(math.exp(2.0)))]


def test_from_args_picks_the_last_rank(tmp_path):
    args = default_args(tensorboard_dir=str(tmp_path), tensorboard_queue_size=5, tensorboard_log_interval=1,
                     log_loss_scale_to_tensorboard=True, log_validation_ppl_to_tensorboard=False, wandb_project="")
    assert MetricsWriter.from_args(args, rank=0, world_size=2) is None
    assert MetricsWriter.from_args(default_args(tensorboard_dir=None, wandb_project=""), 1, 2) is None
    args.rank, args.world_size = 1, 2
    writer = build_writers(args)
    writer.write_validation(1, 8, {"lm loss": 1.0})
    writer.close()
    assert "lm loss validation" in read_scalars(tmp_path)


def test_missing_tensorboard_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    args = default_args(tensorboard_dir=str(tmp_path), wandb_project="")
    with pytest.raises(ConfigError, match="--tensorboard-dir"):
        MetricsWriter.from_args(args, 0, 1)


class WandbRecorder:
    """The log(dict, step) side of a W&B run, kept in a list."""

    def __init__(self):
        self.logged = []

    def log(self, values, step):
        self.logged.append((values, step))


def test_wandb_gets_plain_tags_against_iterations():
    run = WandbRecorder()
    writer = MetricsWriter(None, run)
    writer.write_training(2, 16, {"lm loss": 1.0, "learning-rate": 0.1})
    writer.write_validation(2, 16, {"lm loss": 0.5})
    assert run.logged == [({"samples vs steps": 16}, 2), ({"learning-rate": 0.1}, 2), ({"lm loss": 1.0}, 2),
                          ({"lm loss validation": 0.5}, 2)]
