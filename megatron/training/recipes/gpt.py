"""The GPT recipe (GPT-2 or Llama style): Megatron's four callbacks for pretrain().

``model_provider`` builds the model from the flags, ``get_batch`` reads a micro-batch on
tensor-parallel rank 0 and broadcasts it, ``loss_func`` returns Megatron's 3-tuple (sum of the masked
per-token losses, token count, reporting dict), ``forward_step`` ties them together, and
``train_valid_test_datasets_provider`` builds GPTDatasets (or mock data) from the data flags.
Under pipeline parallelism each stage reads only what it uses (``get_batch``).
``main`` is ``pretrain_gpt.py`` / ``megatron-pretrain-gpt``.
"""
from functools import partial

import torch

from megatron.core import device, parallel_state
from megatron.core.enums import ModelType
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.tensor_parallel import broadcast_data
from megatron.core.utils import get_attr_wrapped_model
from megatron.training import get_args, get_tokenizer, pretrain
from megatron.training.config_from_args import core_transformer_config_from_args

_INT_KEYS = ["tokens", "labels", "position_ids"]


def model_provider(pre_process: bool = True, post_process: bool = True, vp_stage=None, config=None,
                   pg_collection=None) -> GPTModel:
    """The GPT the flags describe: this pipeline stage's part (``pre_process``: the embedding,
    ``post_process``: the output layer and loss) of virtual stage ``vp_stage``, over the process
    groups of ``pg_collection`` (default: the global layout's); ``config`` overrides the one built
    from the flags."""
    args = get_args()
    config = config or core_transformer_config_from_args(args)
    spec = get_gpt_layer_local_spec(qk_layernorm=args.qk_layernorm)
    return GPTModel(
        config=config, transformer_layer_spec=spec, vocab_size=args.padded_vocab_size,
        max_sequence_length=args.max_position_embeddings or args.seq_length,
        pre_process=pre_process, post_process=post_process, fp16_lm_cross_entropy=args.fp16_lm_cross_entropy,
        parallel_output=True, share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
        position_embedding_type=args.position_embedding_type, rotary_percent=args.rotary_percent,
        rotary_base=args.rotary_base, rope_scaling=args.use_rope_scaling,
        rope_scaling_factor=args.rope_scaling_factor,
        seq_len_interpolation_factor=args.rotary_seq_len_interpolation_factor,
        pg_collection=pg_collection, vp_stage=vp_stage, true_vocab_size=get_tokenizer().vocab_size)


def stage_reads_data(vp_stage=None) -> bool:
    """Whether this (virtual) pipeline stage reads micro-batches: the first needs tokens and positions,
    the last labels and loss masks, and every stage the attention mask when the loader makes one."""
    args = get_args()
    if args.reset_attention_mask and args.create_attention_mask_in_dataloader:
        return True
    ignore_virtual = vp_stage is None
    return (parallel_state.is_pipeline_first_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage)
            or parallel_state.is_pipeline_last_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage))


def _keys_for_stage(vp_stage):
    ignore_virtual = vp_stage is None
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=ignore_virtual, vp_stage=vp_stage)
    ints = (["tokens", "position_ids"] if first else []) + (["labels"] if last else [])
    return ints, last


def get_batch(data_iterator, vp_stage=None):
    """This stage's part of a micro-batch, read on tensor-parallel rank 0 and broadcast to the rest
    of the TP group: tokens and positions on the first pipeline stage, labels and loss mask on the
    last (None elsewhere), the attention mask wherever the loader makes one. A stage that needs
    nothing reads nothing. Returns (tokens, labels, loss_mask, attention_mask, position_ids)."""
    args = get_args()
    if not stage_reads_data(vp_stage):
        return None, None, None, None, None
    int_keys, last = _keys_for_stage(vp_stage)
    dev = device.current_device()
    first = parallel_state.get_tensor_model_parallel_rank() == 0
    data = next(data_iterator) if first else None
    batch = {}
    if int_keys:
        ints = {k: data[k].to(dev, torch.int64, non_blocking=True) for k in int_keys} if first else None
        batch.update(broadcast_data(int_keys, ints, torch.int64))
    if last:
        floats = {"loss_mask": data["loss_mask"].to(dev, torch.float32, non_blocking=True)} if first else None
        batch.update(broadcast_data(["loss_mask"], floats, torch.float32))
    attention_mask = None
    if args.reset_attention_mask and args.create_attention_mask_in_dataloader:
        # Only then does the mask differ from plain causal attention (which SDPA builds itself);
        # without a mask from the loader, attention stays causal across documents, as in Megatron.
        masks = {"attention_mask": data["attention_mask"].to(dev, torch.bool)} if first else None
        attention_mask = broadcast_data(["attention_mask"], masks, torch.bool)["attention_mask"]
    return (batch.get("tokens"), batch.get("labels"), batch.get("loss_mask"), attention_mask,
            batch.get("position_ids"))


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Sum of the masked per-token losses, with the token count (Megatron's 3-tuple contract)."""
    losses = output_tensor.view(-1).float()
    loss_mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * loss_mask)
    num_tokens = loss_mask.sum().detach().to(torch.int)
    reporting = torch.cat([loss.detach().view(1), num_tokens.float().view(1)])
    return loss, num_tokens, {"lm loss": reporting}


def forward_step(data_iterator, model: GPTModel):
    vp_stage = get_attr_wrapped_model(model, "vp_stage")
    tokens, labels, loss_mask, attention_mask, position_ids = get_batch(data_iterator, vp_stage)
    output_tensor = model(tokens, position_ids, attention_mask, labels=labels, loss_mask=loss_mask)
    return output_tensor, partial(loss_func, loss_mask)


def train_valid_test_datasets_provider(train_val_test_num_samples):
    from megatron.training.datasets.gpt import build_gpt_datasets
    args = get_args()
    return build_gpt_datasets(args, train_val_test_num_samples, get_tokenizer())


# Every rank calls the provider: the dataset builder synchronises ranks (only TP rank 0 reads data).
train_valid_test_datasets_provider.is_distributed = True


def main(argv=None) -> int:
    from megatron.cli.guard import main_guard
    with main_guard("pretrain_gpt.py"):
        pretrain(train_valid_test_datasets_provider, model_provider, ModelType.encoder_or_decoder,
                 forward_step, args_defaults={"tokenizer_type": "GPT2BPETokenizer"}, argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
