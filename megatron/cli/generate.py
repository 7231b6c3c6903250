"""Continue a prompt with a GPT model saved by pretrain_gpt.py.

    megatron-generate --load CKPT_DIR --prompt "def fibonacci(n):" --max-new-tokens 64 [--temperature 0.8]
    python tools/generate_text.py --load CKPT_DIR ...        (the same, from a clone)

The checkpoint holds the model's shape and a copy of its tokenizer, so no model or tokenizer flag is
needed (--use-checkpoint-args is implied; flags given on the command line still win where Megatron's
rule allows). An empty prompt starts from the end-of-document token. Works under torchrun with the
run's tensor-parallel size; rank 0 prints the text.
"""
from megatron.core.errors import ConfigError


def add_generation_args(parser):
    group = parser.add_argument_group(title="text generation")
    group.add_argument("--prompt", type=str, default="", help="text to continue (empty: start a new document)")
    group.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most (>= 1)")
    group.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    group.add_argument("--top-k", type=int, default=40, help="sample among the k most likely tokens (0 = all)")
    group.add_argument("--top-p", type=float, default=0.0, help="nucleus sampling threshold (0 = off)")
    group.add_argument("--sample-seed", type=int, default=0, help="seed of the sampler")
    return parser


def _check_generation_args(args) -> None:
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must not be negative, got {args.temperature} (0 = greedy)")
    if args.top_k < 0:
        raise ConfigError(f"--top-k must not be negative, got {args.top_k} (0 = all tokens)")
    if not 0.0 <= args.top_p <= 1.0:
        raise ConfigError(f"--top-p must be in [0, 1], got {args.top_p} (0 = off)")


def _with_checkpoint_args(argv):
    """The command line with --use-checkpoint-args added: the model's shape and tokenizer come from
    the checkpoint, which must be given."""
    import argparse
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--load")
    probe.add_argument("--config")
    given, _ = probe.parse_known_args(argv)
    if not given.load and not given.config:
        raise ConfigError("--load: give the checkpoint directory written by pretrain_gpt.py --save")
    return argv if "--use-checkpoint-args" in argv else ["--use-checkpoint-args"] + argv


def prompt_tokens(tokenizer, prompt: str, max_context: int, max_new_tokens: int):
    """The prompt's token ids, cut from the left (with a notice) to leave room for the new tokens;
    an empty prompt is the end-of-document token, which starts a new document."""
    from megatron.training.utils import print_rank_0
    ids = tokenizer.tokenize(prompt) if prompt else [tokenizer.eod]
    room = max(max_context - max_new_tokens, 1)
    if len(ids) > room:
        print_rank_0(f"note: the prompt has {len(ids)} tokens; the model's context is {max_context} tokens and "
                     f"{max_new_tokens} are to be generated: keeping the prompt's last {room} tokens")
        ids = ids[-room:]
    return ids


def _main(argv=None) -> str:
    from megatron.inference.text_generation import generate_tokens
    from megatron.training import get_args, get_tokenizer
    from megatron.training.checkpointing import load_checkpoint
    from megatron.training.initialize import initialize_megatron
    from megatron.training.model_setup import get_model
    from megatron.training.recipes import gpt
    from megatron.training.utils import print_rank_0

    # Generation reads no dataset and steps no optimizer: defaults that make training flags optional.
    defaults = {"skip_train": True, "mock_data": True, "micro_batch_size": 1, "no_load_optim": True,
                "no_load_rng": True, "exit_on_missing_checkpoint": True, "tokenizer_type": "GPT2BPETokenizer"}
    initialize_megatron(extra_args_provider=add_generation_args, args_defaults=defaults,
                        argv=_with_checkpoint_args(argv))
    args = get_args()
    _check_generation_args(args)
    model = get_model(gpt.model_provider, wrap_with_ddp=False)
    load_checkpoint(model, None, None)
    tokenizer = get_tokenizer()
    max_context = args.max_position_embeddings or args.seq_length
    ids = prompt_tokens(tokenizer, args.prompt, max_context, args.max_new_tokens)
    new = generate_tokens(model[0], ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, eod=tokenizer.eod, seed=args.sample_seed, max_context=max_context)
    text = args.prompt + tokenizer.detokenize(new)
    print_rank_0(text)
    return text


def main(argv=None) -> int:
    from megatron.cli.guard import main_guard
    with main_guard("generate_text.py"):
        _main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
