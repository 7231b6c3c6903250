"""The options system: declarations, parsing, --config, validation, derived values, docs."""

import argparse
import importlib.util
import os
import re

import pytest
import torch
import yaml

from megatron.training.arguments import (ConfigError, add_option_group, add_tokenizer_args,
                                         all_options, args_to_yaml, exit_on_config_error,
                                         options_in_group, parse_and_validate, parse_args,
                                         validate_args)
from megatron.training.arguments import foreign
from megatron.training.arguments.flags_doc import render_flags_markdown
from megatron.training.arguments.option import STORE_FALSE, STORE_TRUE, VALUE
from megatron.training.lr_schedule import train_iters_from_samples

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A small valid GPT run on mock data; tests add or replace flags.
BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 "
        "--max-position-embeddings 32 --micro-batch-size 2 --lr 1e-3 --train-iters 10 "
        "--mock-data").split()


@pytest.fixture(autouse=True)
def _clean_launcher_env(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def run(*extra, world_size=1, base=BASE, defaults=None):
    return parse_and_validate(argv=list(base) + list(extra), world_size=world_size,
                              args_defaults=defaults)


def _without(argv, flag):
    """argv with `flag` and its value removed."""
    position = argv.index(flag)
    return argv[:position] + argv[position + 2:]


def refused(*extra, world_size=1, base=BASE):
    with pytest.raises(ConfigError) as info:
        run(*extra, world_size=world_size, base=base)
    return str(info.value)


# --- declarations -----------------------------------------------------------------------------

def test_declarations_are_unique_and_defaults_fit_their_types():
    flags, dests = set(), set()
    for option in all_options():
        assert option.dest not in dests, option.dest
        dests.add(option.dest)
        for flag in option.flags:
            assert flag.startswith("--") and flag not in flags, flag
            flags.add(flag)
        if option.action == VALUE and option.type in (int, float, str) and option.nargs is None \
                and option.default is not None:
            assert isinstance(option.default, option.type), option.primary
        if option.choices is not None and option.default is not None and option.nargs is None:
            assert option.default in option.choices, option.primary
    # No foreign spelling shadows a declared one.
    assert not set(foreign.FOREIGN_FLAGS) & flags


def test_megatron_names_dests_and_defaults():
    by_flag = {flag: option for option in all_options() for flag in option.flags}
    expect = {
        "--no-position-embedding": ("add_position_embedding", True),
        "--disable-bias-linear": ("add_bias_linear", True),
        "--fp8-format": ("fp8", None),
        "--no-barrier-with-level-1-timing": ("barrier_with_L1_time", True),
        "--initial-loss-scale": ("initial_loss_scale", 2.0 ** 32),
        "--split": ("split", None),
        "--ckpt-format": ("ckpt_format", "torch_dist"),
        "--eval-interval": ("eval_interval", 1000),
        "--rope-scaling-factor": ("rope_scaling_factor", 8.0),
        "--override-opt-param-scheduler": ("override_opt_param_scheduler", False),
        "--local_rank": ("local_rank", None),
    }
    for flag, (dest, default) in expect.items():
        assert (by_flag[flag].dest, by_flag[flag].default) == (dest, default), flag


def test_every_flag_of_the_spec_is_declared():
    spec = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "specs", "flags.md")
    if not os.path.isfile(spec):
        pytest.skip("the flags spec is not on this machine")
    text = open(spec, encoding="utf-8").read().split("# Megatron-LM Guide")[0]
    named = set(re.findall(r"`(--[a-zA-Z0-9_-]*[a-zA-Z0-9])`", text))
    named |= set(re.findall(r"`(--[a-z0-9-]+)` \(", text.split("### moe")[1]))
    declared = {flag for option in all_options() for flag in option.flags}
    missing = {flag for flag in named if flag not in declared and foreign.lookup(flag) is None}
    assert not missing


def test_add_tokenizer_args_adds_exactly_the_tokenizer_group():
    parser = add_tokenizer_args(argparse.ArgumentParser())
    args = parser.parse_args(["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", "v.json"])
    assert set(vars(args)) == {option.dest for option in options_in_group("tokenizer")}
    assert (args.tokenizer_type, args.vocab_file, args.vocab_extra_ids) == \
        ("GPT2BPETokenizer", "v.json", 0)
    args = add_option_group(argparse.ArgumentParser(), "learning rate").parse_args([])
    assert args.lr_decay_style == "linear" and args.lr is None
    with pytest.raises(ValueError, match="no option group"):
        add_option_group(argparse.ArgumentParser(), "no such group")


# --- parsing: spellings, unknown and foreign flags ----------------------------------------------

def test_underscore_spellings_and_launcher_local_rank():
    args = run("--tensor_model_parallel_size", "2", "--use_flash_attn", "--local_rank=3",
               world_size=2)
    assert args.tensor_model_parallel_size == 2 and args.local_rank == 3
    underscore_notes = [note for note in args.startup_notes if "underscore" in note]
    assert len(underscore_notes) == 2
    assert "--tensor-model-parallel-size" in underscore_notes[0]
    assert run("--local-rank", "1").local_rank == 1
    assert parse_args(argv=["--local-rank=2"]).local_rank == 2


def test_local_rank_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert run().local_rank == 5


def test_unknown_flag_names_the_closest():
    with pytest.raises(ConfigError, match=r"unrecognized flag --num-layer; did you mean "
                                          r"--num-layers\?"):
        parse_args(argv=["--num-layer", "2"])
    with pytest.raises(ConfigError, match="'yes' after --fp16"):
        parse_args(argv=["--fp16", "yes"])


def test_bad_choice_and_bad_type_name_the_flag():
    with pytest.raises(ConfigError, match=r"--normalization.*did you mean 'RMSNorm'"):
        parse_args(argv=["--normalization", "RMSnorm"])
    with pytest.raises(ConfigError, match="--num-layers: invalid int value"):
        parse_args(argv=["--num-layers", "two"])


@pytest.mark.parametrize("argv, equivalent", [
    (["--deepspeed"], "--use-distributed-optimizer"),
    (["--deepspeed"], "--recompute-activations"),
    (["--zero-stage", "1"], "--recompute-granularity full"),
    (["--partition-activations"], "--distribute-saved-activations"),
    (["--deepspeed_config", "ds.json"], "--micro-batch-size"),
    (["--zero-stage", "2"], "--use-distributed-optimizer"),
    (["--zero-stage=3"], "--use-distributed-optimizer"),
    (["--cpu-optimizer"], "--use-distributed-optimizer"),
    (["--cpu-torch-adam"], "CPU offload is not available"),
    (["--use-checkpoint-activations"], "--recompute-activations"),
    (["--deepspeed-activation-checkpointing"], "--recompute-granularity full"),
    (["--use_rms_norm"], "--normalization RMSNorm"),
    (["--glu_activation", "swiglu"], "--swiglu"),
    (["--no_tie_embed_logits"], "--untie-embeddings-and-output-weights"),
    (["--retro-add-retriever"], "Retro, which is not supported yet"),
])
def test_foreign_flags_name_our_equivalent(argv, equivalent):
    with pytest.raises(ConfigError) as info:
        parse_args(argv=BASE + argv)
    assert argv[0].split("=")[0] in str(info.value) and equivalent in str(info.value)


def test_exit_on_config_error_prints_and_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        with exit_on_config_error():
            parse_args(argv=["--deepspeed"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: --deepspeed is not a Megatron-LM flag")


# --- option states ------------------------------------------------------------------------------

def test_unsupported_flags_and_values_are_refused():
    assert refused("--num-experts", "8") == "--num-experts is not supported yet (mixture-of-" \
                                            "experts models)"
    assert "--pipeline-model-parallel-layout is not supported yet" in \
        refused("--pipeline-model-parallel-layout", "Et|tL", world_size=2)
    assert "--position-embedding-type mrope is not supported yet" in \
        refused("--position-embedding-type", "mrope")
    assert "--tokenizer-type TikTokenizer is not supported yet" in \
        refused("--tokenizer-type", "TikTokenizer")
    assert "--optimizer muon is not supported yet" in refused("--optimizer", "muon")
    assert "--ckpt-format zarr is not supported yet (torch and torch_dist accepted)" in \
        refused("--ckpt-format", "zarr")
    assert "--recompute-modules core_attn moe is not supported yet" in \
        refused("--recompute-modules", "core_attn", "moe")
    assert "--use-legacy-models was removed from Megatron-LM" in refused("--use-legacy-models")
    # All refusals at once, so a script is fixed in one go.
    message = refused("--num-experts", "8", "--fp8-format", "hybrid")
    assert "--num-experts" in message and "--fp8-format" in message
    # Set to their defaults, unsupported flags are harmless.
    args = run("--pipeline-model-parallel-size", "1", "--expert-model-parallel-size", "1",
               "--mtp-loss-scaling-factor", "0.1")
    assert args.pipeline_model_parallel_size == 1


def test_implementation_choices_are_accepted_with_a_note():
    args = run("--use-flash-attn", "--no-masked-softmax-fusion", "--transformer-impl", "local",
               "--ckpt-format", "torch")
    joined = "\n".join(args.startup_notes)
    for flag in ("--use-flash-attn", "--no-masked-softmax-fusion", "--transformer-impl local",
                 "--ckpt-format torch"):
        assert f"{flag}: accepted" in joined
    assert "per-rank format" in joined
    assert not any("accepted" in note for note in run().startup_notes)


def test_deprecated_aliases_map_and_warn():
    cases = [
        (["--batch-size", "3"], {"micro_batch_size": 3}),
        (["--warmup", "0.05"], {"lr_warmup_fraction": 0.05}),
        (["--warmup", "4"], {"lr_warmup_iters": 4}),
        (["--model-parallel-size", "2"], {"tensor_model_parallel_size": 2}),
        (["--checkpoint-activations"], {"recompute_granularity": "full",
                                        "recompute_method": "uniform",
                                        "recompute_num_layers": 1}),
        (["--checkpoint-activations", "--checkpoint-num-layers", "2"],
         {"recompute_num_layers": 2}),
        (["--use-rotary-position-embeddings"], {"position_embedding_type": "rope",
                                                "add_position_embedding": False}),
        (["--no-position-embedding"], {"position_embedding_type": "none"}),
        (["--use-rotary-position-embeddings", "--no-position-embedding"],
         {"position_embedding_type": "rope"}),
        (["--use-dist-ckpt", "--dist-ckpt-format", "zarr", "--ckpt-fully-parallel-save"], {}),
        (["--use-mcore-models", "--no-async-tensor-model-parallel-allreduce"], {}),
        (["--data-impl", "mmap"], {}),
    ]
    for extra, expected in cases:
        base = _without(BASE, "--micro-batch-size") if "--batch-size" in extra else BASE
        args = run(*extra, world_size=2, base=base)
        for dest, value in expected.items():
            assert getattr(args, dest) == value, (extra, dest)
        old_flag = extra[0]
        assert any(note.startswith(f"{old_flag} is deprecated") for note in args.startup_notes)
    # Like Megatron deleting them, the old options no longer hold the meaning they passed on.
    assert run("--batch-size", "3", base=_without(BASE, "--micro-batch-size")).batch_size is None
    assert run("--checkpoint-activations").checkpoint_activations is False
    assert "--data-impl lazy: only the mmap" in refused("--data-impl", "lazy")
    assert "contradicts --micro-batch-size 2" in refused("--batch-size", "4")
    args = run("--save", "/tmp/ckpt", "--persistent-save-interval", "5")
    assert args.save_interval == 5
    assert any("--persistent-save-interval is an old spelling" in n for n in args.startup_notes)
    assert run("--override-opt_param-scheduler").override_opt_param_scheduler
    assert run("--override-opt-param-scheduler").override_opt_param_scheduler


# --- validation: checks -------------------------------------------------------------------------

@pytest.mark.parametrize("extra, world_size, expected", [
    (["--hidden-size", "60", "--num-attention-heads", "8"], 1,
     "--hidden-size 60 is not divisible by --num-attention-heads 8"),
    (["--num-attention-heads", "6", "--hidden-size", "96", "--tensor-model-parallel-size", "4"],
     4, "--num-attention-heads 6 is not divisible by --tensor-model-parallel-size 4"),
    (["--tensor-model-parallel-size", "4"], 2, "world size is only 2"),
    (["--tensor-model-parallel-size", "2"], 3, "does not divide the world size 3"),
    (["--global-batch-size", "6"], 2,
     "--global-batch-size 6 is not divisible by --micro-batch-size 2 x data-parallel size 2"),
    (["--group-query-attention", "--num-query-groups", "3"], 1,
     "--num-query-groups 3 must divide --num-attention-heads 4"),
    (["--group-query-attention", "--num-query-groups", "1", "--tensor-model-parallel-size", "2"],
     2, "--num-query-groups 1 is not divisible by --tensor-model-parallel-size 2"),
    (["--train-samples", "100"], 1, "one of --train-iters and --train-samples"),
    (["--lr-warmup-samples", "10"], 1, "--lr-warmup-samples counts samples"),
    (["--lr-warmup-fraction", "0.1", "--lr-warmup-iters", "2"], 1,
     "one of --lr-warmup-fraction and --lr-warmup-iters"),
    (["--lr-warmup-iters", "10"], 1, "--lr-warmup-iters 10 must be shorter than the decay"),
    (["--rampup-batch-size", "2", "2", "100"], 1, "--rampup-batch-size ramps over samples"),
    (["--fp16", "--bf16"], 1, "--fp16 and --bf16 are exclusive"),
    (["--seq-length", "64"], 1, "--seq-length 64 is longer than --max-position-embeddings 32"),
    (["--lr-decay-style", "WSD"], 1, "--lr-decay-style WSD needs --lr-wsd-decay-iters"),
    (["--recompute-granularity", "full"], 1, "needs --recompute-method"),
    (["--distribute-saved-activations", "--recompute-granularity", "full", "--recompute-method", "uniform",
      "--recompute-num-layers", "1"], 1, "--distribute-saved-activations splits saved inputs across "
     "tensor-parallel ranks: it needs --tensor-model-parallel-size > 1"),
    (["--distribute-saved-activations", "--tensor-model-parallel-size", "2", "--recompute-activations"], 2,
     "--distribute-saved-activations applies to full recompute only"),
    (["--distribute-saved-activations", "--tensor-model-parallel-size", "2", "--sequence-parallel",
      "--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1"], 2,
     "--distribute-saved-activations cannot be used with --sequence-parallel"),
    (["--swiglu", "--squared-relu"], 1, "--squared-relu and --swiglu"),
    (["--save", "/tmp/x", "--save-retain-interval", "2"], 1, "--save-retain-interval needs --save-interval"),
    (["--min-lr", "0.1"], 1, "--min-lr 0.1 is above --lr 0.001"),
    (["--weight-decay-incr-style", "linear"], 1, "needs both --start-weight-decay"),
])
def test_invalid_combinations_name_the_flags(extra, world_size, expected):
    assert expected in refused(*extra, world_size=world_size)


def test_required_options():
    for flag in ("--num-layers", "--hidden-size", "--lr", "--micro-batch-size", "--seq-length"):
        assert f"{flag} is required" in refused(base=_without(BASE, flag))
    assert "run length is missing" in refused(base=_without(BASE, "--train-iters"))
    no_data = [t for t in BASE if t != "--mock-data"]
    assert "--tokenizer-type is required" in refused("--data-path", "x", base=no_data)
    assert "no training data" in refused("--tokenizer-type", "ByteTokenizer", base=no_data)
    assert run("--vocab-size", "1000", "--skip-train", base=no_data).tokenizer_type == \
        "NullTokenizer"
    assert run("--skip-train", base=_without(_without(BASE, "--lr"), "--train-iters")).lr is None


def test_files_must_exist(tmp_path):
    prefix = tmp_path / "corpus_text_document"
    (tmp_path / "corpus_text_document.bin").write_bytes(b"")
    no_mock = [t for t in BASE if t != "--mock-data"] + ["--tokenizer-type", "ByteTokenizer"]
    message = refused("--data-path", str(prefix), base=no_mock)
    assert "--data-path" in message and "missing" in message and ".idx" in message
    (tmp_path / "corpus_text_document.idx").write_bytes(b"")
    args = run("--data-path", str(prefix), base=no_mock)
    assert args.split == "969, 30, 1"
    assert run("--data-path", "0.3", str(prefix), "0.7", str(prefix), base=no_mock)
    assert "a weight before every prefix" in refused("--data-path", "0.3", str(prefix), str(prefix),
                                                     "x", base=no_mock)
    message = refused("--tokenizer-type", "GPT2BPETokenizer", "--vocab-file",
                      str(tmp_path / "nope.json"), "--merge-file", str(prefix) + ".bin")
    assert "--vocab-file" in message and "nope.json: file not found" in message
    assert "needs --vocab-file" in refused("--tokenizer-type", "GPT2BPETokenizer",
                                           base=no_mock + ["--data-path", str(prefix)])
    message = refused("--tokenizer-type", "SentencePieceTokenizer", "--vocab-file", str(prefix))
    assert "needs --tokenizer-model" in message and "give it as --tokenizer-model" in message
    with pytest.raises(ConfigError, match="--config .*missing.yaml: file not found"):
        parse_args(argv=["--config", str(tmp_path / "missing.yaml")])


def test_wandb_needs_its_package():
    if importlib.util.find_spec("wandb") is None:
        assert "--wandb-project demo needs the wandb package: pip install wandb" in \
            refused("--wandb-project", "demo")
    else:
        assert run("--wandb-project", "demo").wandb_project == "demo"


# --- validation: derived values -----------------------------------------------------------------

def test_derived_values():
    args = run("--tensor-model-parallel-size", "2", world_size=8)
    assert (args.world_size, args.data_parallel_size, args.global_batch_size) == (8, 4, 8)
    assert (args.ffn_hidden_size, args.kv_channels, args.num_query_groups) == (256, 16, 4)
    assert args.params_dtype == torch.float32 and args.rank == 0 and args.local_rank == 0
    assert not hasattr(args, "consumed_train_samples")  # where the run is lives in TrainState
    assert args.recompute_modules == ["core_attn"] and args.dataloader_type == "single"
    assert args.add_position_embedding and args.encoder_seq_length == 32
    swiglu = run("--swiglu", "--hidden-size", "4096", "--num-attention-heads", "32")
    assert swiglu.ffn_hidden_size == 10880  # int(4 * 4096 * 2 / 3 / 64) * 64
    bf16 = run("--bf16")
    assert bf16.params_dtype == torch.bfloat16 and bf16.accumulate_allreduce_grads_in_fp32
    assert not run("--bf16", "--grad-reduce-in-bf16").accumulate_allreduce_grads_in_fp32
    fp16 = run("--fp16")
    assert fp16.params_dtype == torch.half and fp16.check_for_nan_in_loss_and_grad  # stays on under fp16
    assert run("--recompute-activations").recompute_granularity == "selective"
    gqa = run("--group-query-attention", "--num-query-groups", "2")
    assert gqa.num_query_groups == 2
    encoder = [("--encoder-seq-length" if t == "--seq-length" else t) for t in BASE]
    assert run(base=encoder).seq_length == 32
    no_table = _without(BASE, "--max-position-embeddings")
    assert run("--position-embedding-type", "rope", base=no_table).max_position_embeddings == 32
    assert "--max-position-embeddings is required" in refused(base=no_table)


def test_sample_based_run_with_rampup_and_wsd():
    base = _without(BASE, "--train-iters") + ["--train-samples", "1000"]
    args = run("--rampup-batch-size", "2", "2", "100", "--global-batch-size", "8",
               "--lr-decay-style", "WSD", "--lr-wsd-decay-samples", "200",
               "--lr-warmup-samples", "50", base=base)
    # The loops count iterations: a --train-samples run's are derived here, walking the ramp.
    assert args.rampup_batch_size == [2, 2, 100] and args.train_iters == train_iters_from_samples(1000, 8, [2, 2, 100])
    assert "--lr-wsd-decay-samples" in refused("--lr-decay-style", "WSD", base=base)
    assert "multiples of --micro-batch-size 2" in refused(
        "--rampup-batch-size", "3", "1", "100", "--global-batch-size", "8", base=base)


def test_extra_args_provider_options_parse_and_load_from_config(tmp_path):
    def provider(parser):
        parser.add_argument_group(title="mine").add_argument("--my-size", type=int, default=None)
        return parser

    config = _write(tmp_path / "mine.yaml", "my-size: 7\n")
    args = parse_and_validate(argv=BASE + ["--config", config], extra_args_provider=provider)
    assert args.my_size == 7
    args = parse_and_validate(argv=BASE, extra_args_provider=provider,
                              args_defaults={"my_size": 3})
    assert args.my_size == 3
    ignored = parse_args(argv=BASE + ["--not-ours", "1"], ignore_unknown_args=True)
    assert ignored.num_layers == 2


def test_sequence_parallel_without_tensor_parallelism_is_turned_off():
    args = run("--sequence-parallel")
    assert args.sequence_parallel is False
    assert any("--sequence-parallel turned off" in note for note in args.startup_notes)
    assert run("--sequence-parallel", "--tensor-model-parallel-size", "2",
               world_size=2).sequence_parallel


def test_args_defaults_fill_only_what_the_user_left(tmp_path):
    args = run(defaults={"tokenizer_type": "NullTokenizer", "vocab_size": 100})
    assert args.tokenizer_type == "NullTokenizer"
    args = run("--tokenizer-type", "ByteTokenizer", defaults={"tokenizer_type": "NullTokenizer"})
    assert args.tokenizer_type == "ByteTokenizer"
    # Mock data with the entry script's default tokenizer but none of its files: no file needed.
    args = run(defaults={"tokenizer_type": "GPT2BPETokenizer"})
    assert (args.tokenizer_type, args.vocab_size) == ("NullTokenizer", 50256)  # GPT-2's 50257 ids


# --- --config and --print-config ----------------------------------------------------------------

def _write(path, text):
    path.write_text(text)
    return str(path)


def test_config_file_sets_values_and_the_command_line_wins(tmp_path):
    config = _write(tmp_path / "run.yaml", """
hidden_size: 128
num-attention-heads: 8
lr: 3e-4
bf16: true
no-load-optim: true
use_cpu_initialization: null
profile_ranks: [0, 1]
""")
    base = _without(_without(BASE, "--num-attention-heads"), "--lr")
    args = run("--config", config, "--hidden-size", "256", base=base)
    assert (args.hidden_size, args.num_attention_heads, args.lr) == (256, 8, 3e-4)
    # The command line wins over the file, in either order.
    assert run("--hidden-size", "32", "--config", config, base=base).hidden_size == 32
    assert args.bf16 and args.no_load_optim and args.profile_ranks == [0, 1]
    assert "hidden_size" in args.user_set_options


def test_config_file_errors(tmp_path):
    def error_of(text):
        with pytest.raises(ConfigError) as info:
            parse_args(argv=["--config", _write(tmp_path / "bad.yaml", text)])
        return str(info.value)

    assert "unknown option 'hiden_size'; did you mean 'hidden_size'?" in error_of("hiden_size: 8")
    assert "num_layers: expected an integer, got 'two'" in error_of("num_layers: two")
    assert "num_layers: expected an integer" in error_of("num_layers: 2.5")
    assert "bf16: expected true or false" in error_of("bf16: 1")
    assert "invalid choice 'RMSnorm'" in error_of("normalization: RMSnorm")
    assert "zero_stage" in error_of("zero_stage: 2") and "--use-distributed-optimizer" in \
        error_of("zero_stage: 2")
    assert "expected a mapping" in error_of("- a\n- b")
    assert "not valid YAML" in error_of("a: [b")


def test_print_config_round_trip(tmp_path, capsys):
    extra = ("--swiglu", "--bf16", "--checkpoint-activations", "--use-flash-attn",
             "--tensor-model-parallel-size", "2", "--sequence-parallel", "--data-impl", "mmap")
    with pytest.raises(SystemExit) as info:
        run("--print-config", *extra, world_size=4)
    assert info.value.code == 0
    printed = capsys.readouterr().out
    content = yaml.safe_load(printed)
    assert content["ffn_hidden_size"] == 128 and content["recompute_granularity"] == "full"
    assert "checkpoint_activations" not in content and "print_config" not in content
    assert "data_parallel_size" not in content and "#   data_parallel_size: 2" in printed
    config = _write(tmp_path / "printed.yaml", printed)
    again = run("--config", config, base=[], world_size=4)
    assert args_to_yaml(again) == printed.replace("print_config: true", "print_config: false")


# --- the seed launch script, and the docs -------------------------------------------------------

def _seed_001_argv(tmp_path, pipeline="2", data_args=True):
    """GPT_ARGS + DATA_ARGS + OUTPUT_ARGS of a user's torch.distributed.launch script."""
    prefix = tmp_path / "my_dataset_text_document"
    for name in ("my_dataset_text_document.bin", "my_dataset_text_document.idx", "vocab.json",
                 "merges.txt"):
        (tmp_path / name).write_text("")
    gpt = f"""--tensor-model-parallel-size 4 --pipeline-model-parallel-size {pipeline}
        --num-layers 24 --hidden-size 1024 --num-attention-heads 16 --seq-length 1024
        --max-position-embeddings 1024 --micro-batch-size 4 --global-batch-size 512
        --lr 0.00015 --train-iters 500000 --lr-decay-iters 320000 --lr-decay-style cosine
        --min-lr 1.0e-5 --weight-decay 1e-2 --lr-warmup-fraction .01 --clip-grad 1.0 --fp16"""
    data = (f"--data-path {prefix} --vocab-file {tmp_path}/vocab.json "
            f"--merge-file {tmp_path}/merges.txt --split 949,50,1") if data_args else "--mock-data"
    output = (f"--log-interval 100 --save-interval 10000 --eval-interval 1000 --eval-iters 10 "
              f"--save {tmp_path}/checkpoints --load {tmp_path}/checkpoints "
              f"--tensorboard-dir {tmp_path}/tensorboard")
    return ["--local-rank=0"] + f"{gpt} {data} {output} --distributed-backend nccl".split()


def test_seed_001_launch_script(tmp_path):
    defaults = {"tokenizer_type": "GPT2BPETokenizer"}  # what pretrain_gpt.py passes
    args = parse_args(argv=_seed_001_argv(tmp_path))
    assert args.pipeline_model_parallel_size == 2 and args.local_rank == 0
    args = validate_args(args, defaults=defaults, world_size=8)
    assert (args.data_parallel_size, args.virtual_pipeline_model_parallel_size) == (1, None)
    # The same script without pipelining: two data-parallel replicas.
    args = parse_and_validate(argv=_seed_001_argv(tmp_path, pipeline="1"),
                              args_defaults=defaults, world_size=8)
    assert (args.data_parallel_size, args.tokenizer_type, args.params_dtype) == \
        (2, "GPT2BPETokenizer", torch.half)
    args = parse_and_validate(argv=_seed_001_argv(tmp_path, pipeline="1", data_args=False),
                              world_size=8)
    assert args.mock_data and args.global_batch_size == 512


def test_flags_doc_is_up_to_date():
    with open(os.path.join(REPO, "docs", "flags.md"), encoding="utf-8") as stream:
        assert stream.read() == render_flags_markdown(), \
            "docs/flags.md is stale: run python tools/gen_flags_doc.py"


def test_help_lists_states(capsys):
    with pytest.raises(SystemExit):
        parse_args(argv=["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "[not supported yet" in text and "[implementation choice:" in text
    assert "[deprecated: use --micro-batch-size]" in text and "network size:" in text
    switches = [o for o in all_options() if o.action in (STORE_TRUE, STORE_FALSE)]
    assert switches and all(o.nargs is None for o in switches)
