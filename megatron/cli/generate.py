"""Continue a prompt with a GPT model saved by pretrain_gpt.py.

    python tools/generate_text.py --load CKPT_DIR <the model and tokenizer flags of the run> \
        --prompt "def fibonacci(n):" --max-new-tokens 64 [--temperature 0.8 --top-k 40]

Works under torchrun with the run's tensor-parallel size; rank 0 prints the text.
"""

def add_generation_args(parser):
    group = parser.add_argument_group(title="text generation")
    group.add_argument("--prompt", type=str, default="", help="text to continue")
    group.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate at most")
    group.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    group.add_argument("--top-k", type=int, default=40, help="sample among the k most likely tokens (0 = all)")
    group.add_argument("--top-p", type=float, default=0.0, help="nucleus sampling threshold (0 = off)")
    group.add_argument("--sample-seed", type=int, default=0, help="seed of the sampler")
    return parser


def main(argv=None):
    from megatron.training.recipes import gpt as pretrain_gpt
    from megatron.inference.text_generation import generate_text
    from megatron.training import get_args, get_tokenizer
    from megatron.training.arguments import exit_on_config_error
    from megatron.training.checkpointing import load_checkpoint
    from megatron.training.initialize import initialize_megatron
    from megatron.training.model_setup import get_model
    from megatron.training.utils import print_rank_0

    # Generation reads no dataset and steps no optimizer: defaults that make training flags optional.
    defaults = {"skip_train": True, "mock_data": True, "micro_batch_size": 1, "no_load_optim": True,
                "no_load_rng": True, "exit_on_missing_checkpoint": True, "tokenizer_type": "GPT2BPETokenizer"}
    with exit_on_config_error():
        initialize_megatron(extra_args_provider=add_generation_args, args_defaults=defaults, argv=argv)
    args = get_args()
    if not args.load:
        raise SystemExit("error: --load: give the checkpoint directory written by pretrain_gpt.py --save")
    model = get_model(pretrain_gpt.model_provider, wrap_with_ddp=False)
    load_checkpoint(model, None, None)
    text = generate_text(model[0], get_tokenizer(), args.prompt, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.sample_seed)
    print_rank_0(args.prompt + text)
    return args.prompt + text


if __name__ == "__main__":
    main()
