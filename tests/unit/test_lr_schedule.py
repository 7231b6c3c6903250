"""LR / weight-decay schedules against hand-computed values, checkpoint rules, flag conversion."""
import math

import pytest

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.training.lr_schedule import (
    learning_rates_for_logging,
    scheduler_from_args,
    train_iters_from_samples,
)

from tests.flag_defaults import default_args


class ParamGroups:
    """What the scheduler needs of an optimizer: ``param_groups``, a list of dicts (a torch
    optimizer has it too, but building one imports torch._dynamo: seconds)."""

    def __init__(self, groups):
        self.param_groups = groups


def make_optimizer(*extra_groups):
    """One plain group, then groups with the given per-group options."""
    return ParamGroups([{"lr": 123.0}] + [dict(g, lr=123.0) for g in extra_groups])


def scheduler(style="linear", optimizer=None, **overrides):
    kwargs = dict(
        init_lr=0.0, max_lr=1.0, min_lr=0.1, lr_warmup_steps=10, lr_decay_steps=110,
        lr_decay_style=style, start_wd=0.01, end_wd=0.01, wd_incr_steps=110, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=False,
    )
    kwargs.update(overrides)
    return OptimizerParamScheduler(optimizer or make_optimizer(), **kwargs)


def lr_at(sched, step):
    sched.step(step - sched.num_steps)
    return sched.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "style, expected",
    [
        # step: 0, 5 (warmup), 10 (peak), 35 (decay 1/4), 60 (decay 1/2), 110 (end), 200 (past end)
        ("linear", [0.0, 0.5, 1.0, 0.1 + 0.9 * 0.75, 0.55, 0.1, 0.1]),
        ("cosine", [0.0, 0.5, 1.0, 0.1 + 0.9 * 0.8535533905932737, 0.55, 0.1, 0.1]),
        ("constant", [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_warmup_decay_and_floor(style, expected):
    sched = scheduler(style)
    got = [lr_at(sched, s) for s in (0, 5, 10, 35, 60, 110, 200)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_warmup_starts_from_lr_warmup_init():
    sched = scheduler(init_lr=0.2)
    assert lr_at(sched, 0) == pytest.approx(0.2)
    assert lr_at(sched, 5) == pytest.approx(0.6)


def test_inverse_square_root():
    sched = scheduler("inverse-square-root", min_lr=0.25, lr_warmup_steps=16, lr_decay_steps=1000)
    assert lr_at(sched, 8) == pytest.approx(0.5)  # warmup from 0
    assert lr_at(sched, 64) == pytest.approx(math.sqrt(16) / math.sqrt(64))  # 0.5
    assert lr_at(sched, 400) == pytest.approx(0.25)  # 4/20 = 0.2 is below the floor
    assert lr_at(sched, 1001) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "wsd_style, at_100",
    [
        ("linear", 0.1 + 0.9 * 0.5),
        ("cosine", 0.1 + 0.9 * 0.5),
        ("exponential", 0.1 + 0.9 * (2 * 0.5 ** 0.5 - 1)),
        ("minus_sqrt", 0.1 + 0.9 * (1 - 0.5 ** 0.5)),
    ],
)
def test_wsd_phases(wsd_style, at_100):
    # warmup 10, stable until 90, anneal over the last 20 steps of the 110-step window
    sched = scheduler("WSD", wsd_decay_steps=20, lr_wsd_decay_style=wsd_style)
    assert lr_at(sched, 5) == pytest.approx(0.5)
    assert lr_at(sched, 50) == pytest.approx(1.0)
    assert lr_at(sched, 90) == pytest.approx(1.0)
    assert lr_at(sched, 100) == pytest.approx(at_100)
    assert lr_at(sched, 110) == pytest.approx(0.1)
    assert lr_at(sched, 111) == pytest.approx(0.1)


def test_decoupled_groups_and_multipliers():
    opt = make_optimizer({"max_lr": 2.0, "min_lr": 0.2, "lr_mult": 0.5, "wd_mult": 0.0})
    sched = scheduler("linear", optimizer=opt)
    sched.step(60)  # half-way through the decay
    plain, decoupled = opt.param_groups
    assert plain["lr"] == pytest.approx(0.55)
    assert decoupled["lr"] == pytest.approx(0.5 * (0.2 + 0.5 * 1.8))
    assert plain["weight_decay"] == pytest.approx(0.01)
    assert decoupled["weight_decay"] == 0.0
    sched.step(5)  # 55% through the decay
    assert decoupled["lr"] == pytest.approx(0.5 * (0.2 + 0.45 * 1.8))


@pytest.mark.parametrize("style, at_25", [("linear", 0.025), ("cosine", 0.1 * 0.5 * (1 - math.cos(math.pi / 4)))])
def test_weight_decay_increment(style, at_25):
    sched = scheduler(start_wd=0.0, end_wd=0.1, wd_incr_steps=100, wd_incr_style=style)
    sched.step(25)
    assert sched.get_wd() == pytest.approx(at_25)
    assert sched.optimizer.param_groups[0]["weight_decay"] == pytest.approx(at_25)
    sched.step(100)
    assert sched.get_wd() == pytest.approx(0.1)


def test_state_dict_round_trip():
    sched = scheduler("cosine")
    sched.step(47)
    state = sched.state_dict()
    fresh = scheduler("cosine")
    fresh.load_state_dict(state)
    assert fresh.num_steps == 47
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(sched.optimizer.param_groups[0]["lr"])
    fresh.step(3)
    sched.step(3)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(sched.optimizer.param_groups[0]["lr"])


def test_checkpoint_vs_flags_rules():
    state = scheduler(max_lr=1.0).state_dict()
    state["num_steps"] = 60

    with pytest.raises(ValueError, match="--override-opt_param-scheduler"):
        scheduler(max_lr=2.0).load_state_dict(state)

    overriding = scheduler(max_lr=2.0, override_opt_param_scheduler=True)
    overriding.load_state_dict(state)
    assert overriding.max_lr == 2.0
    assert overriding.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 + 0.5 * 1.9)

    from_checkpoint = scheduler(max_lr=2.0, use_checkpoint_opt_param_scheduler=True)
    from_checkpoint.load_state_dict(state)
    assert from_checkpoint.max_lr == 1.0
    assert from_checkpoint.optimizer.param_groups[0]["lr"] == pytest.approx(0.55)


def test_legacy_checkpoint_keys():
    legacy = {"start_lr": 1.0, "min_lr": 0.1, "warmup_iter": 10, "end_iter": 110,
              "decay_style": "linear", "num_iters": 60}
    sched = scheduler()
    sched.load_state_dict(legacy)
    assert sched.num_steps == 60
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.55)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(override_opt_param_scheduler=True, use_checkpoint_opt_param_scheduler=True), "--override-opt_param-scheduler"),
        (dict(lr_warmup_steps=110), "--lr-warmup"),
        (dict(lr_decay_style="WSD"), "--lr-wsd-decay-iters"),
        (dict(lr_decay_style="WSD", wsd_decay_steps=5, lr_wsd_decay_style="square"), "--lr-wsd-decay-style"),
        (dict(min_lr=2.0), "--min-lr"),
        (dict(start_wd=0.0, end_wd=0.1), "--weight-decay-incr-style constant"),
        (dict(lr_decay_style="step"), "--lr-decay-style"),
    ],
)
def test_bad_settings_name_the_flag(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        scheduler(**overrides)


def flags(**kw):
    base = dict(lr=1.0, min_lr=0.0, lr_warmup_init=0.0, lr_decay_style="linear", lr_decay_iters=None,
                lr_decay_samples=None, lr_warmup_iters=0, lr_warmup_samples=0, lr_warmup_fraction=None,
                lr_wsd_decay_style="exponential", lr_wsd_decay_iters=None, lr_wsd_decay_samples=None,
                train_iters=None, train_samples=None, global_batch_size=8, rampup_batch_size=None,
                weight_decay=0.1, start_weight_decay=None, end_weight_decay=None,
                weight_decay_incr_style="constant", override_opt_param_scheduler=False,
                use_checkpoint_opt_param_scheduler=False)
    base.update(kw)
    return default_args(**base)


def test_iteration_flags_become_sample_steps():
    sched = scheduler_from_args(make_optimizer(), flags(train_iters=100, lr_warmup_iters=10))
    assert (sched.lr_warmup_steps, sched.lr_decay_steps, sched.wd_incr_steps) == (80, 800, 800)
    assert (sched.start_wd, sched.end_wd) == (0.1, 0.1)
    sched = scheduler_from_args(make_optimizer(), flags(train_iters=100, lr_decay_iters=50, lr_warmup_fraction=0.1))
    assert (sched.lr_warmup_steps, sched.lr_decay_steps) == (pytest.approx(40), 400)
    sched = scheduler_from_args(make_optimizer(), flags(train_iters=100, lr_decay_style="WSD", lr_wsd_decay_iters=20))
    assert sched.wsd_decay_steps == 160


def test_sample_flags_pass_through():
    args = flags(train_samples=1000, train_iters=125, lr_warmup_samples=100, start_weight_decay=0.0,
                 end_weight_decay=0.1, weight_decay_incr_style="linear", lr_warmup_init=0.5, lr=2.0)
    sched = scheduler_from_args(make_optimizer(), args)
    assert (sched.lr_warmup_steps, sched.lr_decay_steps, sched.wd_incr_steps) == (100, 1000, 1000)
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    assert (sched.start_wd, sched.end_wd, sched.wd_incr_style) == (0.0, 0.1, "linear")
    assert args.lr_decay_samples is None  # args are left alone


@pytest.mark.parametrize(
    "kw, flag",
    [
        (dict(train_iters=100, lr_decay_samples=500), "--lr-decay-samples"),
        (dict(train_iters=100, lr_warmup_iters=5, lr_warmup_fraction=0.1), "--lr-warmup-fraction"),
        (dict(train_samples=800, lr_warmup_iters=5), "--lr-warmup-iters"),
        (dict(train_iters=100, rampup_batch_size=[4, 4, 100]), "--rampup-batch-size"),
        (dict(train_iters=100, start_weight_decay=0.0, end_weight_decay=0.1), "--start-weight-decay"),
        (dict(train_iters=100, weight_decay_incr_style="cosine"), "--end-weight-decay"),
        (dict(), "--train-iters"),
    ],
)
def test_flag_errors(kw, flag):
    with pytest.raises(ValueError, match=flag):
        scheduler_from_args(make_optimizer(), flags(**kw))


def test_train_iters_from_samples():
    assert train_iters_from_samples(1000, 8) == 125
    # ramp 4 -> 16 in steps of 4 over 40 samples: batches 4,4,4,4,8,8,12 (44 samples), then 16s
    assert train_iters_from_samples(100, 16, [4, 4, 40]) == 7 + (100 - 44) // 16


def test_learning_rates_for_logging():
    groups = [{"lr": 1.0}, {"lr": 2.0, "is_decoupled_lr": True}]
    assert learning_rates_for_logging(groups) == (1.0, 2.0)
    assert learning_rates_for_logging(groups[:1]) == (1.0, None)


def test_resuming_with_a_longer_run_follows_the_flag_that_says_which_schedule_wins():
    """docs/training.md, 'Resuming, and changing the run length': a cosine run of 110 steps resumed
    at step 60 with a decay of 210 steps."""
    import math
    saved = scheduler("cosine")
    lr_at(saved, 60)
    state = saved.state_dict()
    with pytest.raises(ValueError, match="--override-opt_param-scheduler"):
        scheduler("cosine", lr_decay_steps=210, wd_incr_steps=210).load_state_dict(state)
    longer = scheduler("cosine", lr_decay_steps=210, wd_incr_steps=210, override_opt_param_scheduler=True)
    longer.load_state_dict(state)
    # The flags win: the new cosine at step 60 (a quarter into its 200 decay steps), above the old 0.55.
    expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 200))
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12) and expected > 0.8
    kept = scheduler("cosine", lr_decay_steps=210, wd_incr_steps=210, use_checkpoint_opt_param_scheduler=True)
    kept.load_state_dict(state)
    assert kept.optimizer.param_groups[0]["lr"] == pytest.approx(0.55, abs=1e-12)  # the old schedule goes on
    assert lr_at(kept, 150) == pytest.approx(0.1, abs=1e-12)  # past the old decay: --min-lr
