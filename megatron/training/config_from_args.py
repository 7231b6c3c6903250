"""Build Megatron Core config objects from parsed arguments (the only place that maps flags to configs)."""
import torch
import torch.nn.functional as F

from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig
from megatron.core.transformer.mlp import openai_gelu, squared_relu
from megatron.core.transformer.transformer_config import TransformerConfig


def _activation(args):
    if args.swiglu:
        return F.silu
    if args.openai_gelu:
        return openai_gelu
    if args.squared_relu:
        return squared_relu
    return F.gelu


def core_transformer_config_from_args(args, config_class=TransformerConfig) -> TransformerConfig:
    kw = dict(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups if args.group_query_attention else None,
        ffn_hidden_size=args.ffn_hidden_size,
        kv_channels=args.kv_channels,
        hidden_dropout=args.hidden_dropout,
        attention_dropout=args.attention_dropout,
        fp32_residual_connection=args.fp32_residual_connection,
        apply_residual_connection_post_layernorm=args.apply_residual_connection_post_layernorm,
        layernorm_epsilon=args.norm_epsilon,
        layernorm_zero_centered_gamma=args.apply_layernorm_1p,
        add_bias_linear=args.add_bias_linear,
        add_qkv_bias=args.add_qkv_bias,
        gated_linear_unit=args.swiglu,
        activation_func=_activation(args),
        rotary_interleaved=args.rotary_interleaved,
        normalization=args.normalization,
        qk_layernorm=args.qk_layernorm,
        init_method_std=args.init_method_std,
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=args.virtual_pipeline_model_parallel_size,
        num_layers_in_first_pipeline_stage=args.decoder_first_pipeline_num_layers,
        num_layers_in_last_pipeline_stage=args.decoder_last_pipeline_num_layers,
        sequence_parallel=args.sequence_parallel,
        context_parallel_size=args.context_parallel_size,
        expert_model_parallel_size=args.expert_model_parallel_size,
        fp16=args.fp16,
        bf16=args.bf16,
        params_dtype=args.params_dtype,
        pipeline_dtype=args.params_dtype,
        # Megatron's driver frees what a stage sent once the next stage has it.
        deallocate_pipeline_outputs=True,
        microbatch_group_size_per_vp_stage=args.microbatch_group_size_per_vp_stage,
        recompute_granularity=args.recompute_granularity,
        recompute_method=args.recompute_method,
        recompute_num_layers=args.recompute_num_layers,
        recompute_modules=args.recompute_modules,
        calculate_per_token_loss=args.calculate_per_token_loss,
        deterministic_mode=args.deterministic_mode,
        fp16_lm_cross_entropy=args.fp16_lm_cross_entropy,
        attention_softmax_in_fp32=args.attention_softmax_in_fp32,
        perform_initialization=args.perform_initialization,
        use_cpu_initialization=args.use_cpu_initialization,
    )
    if args.init_method_xavier_uniform:
        kw["init_method"] = torch.nn.init.xavier_uniform_
        kw["output_layer_init_method"] = torch.nn.init.xavier_uniform_
    return config_class(**kw)


def ddp_config_from_args(args) -> DistributedDataParallelConfig:
    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=args.accumulate_allreduce_grads_in_fp32,
        overlap_grad_reduce=args.overlap_grad_reduce,
        use_distributed_optimizer=args.use_distributed_optimizer,
        overlap_param_gather=args.overlap_param_gather,
        check_for_nan_in_grad=args.check_for_nan_in_loss_and_grad,
        bucket_size=args.ddp_bucket_size,
        average_in_collective=args.ddp_average_in_collective,
        calculate_per_token_loss=args.calculate_per_token_loss,
    )


def optimizer_config_from_args(args) -> OptimizerConfig:
    return OptimizerConfig(
        optimizer=args.optimizer, lr=args.lr, min_lr=args.min_lr, decoupled_lr=args.decoupled_lr,
        decoupled_min_lr=args.decoupled_min_lr, weight_decay=args.weight_decay, fp16=args.fp16, bf16=args.bf16,
        params_dtype=args.params_dtype, loss_scale=args.loss_scale, initial_loss_scale=args.initial_loss_scale,
        min_loss_scale=args.min_loss_scale, loss_scale_window=args.loss_scale_window, hysteresis=args.hysteresis,
        adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2, adam_eps=args.adam_eps,
        sgd_momentum=args.sgd_momentum, use_distributed_optimizer=args.use_distributed_optimizer,
        clip_grad=args.clip_grad, log_num_zeros_in_grad=args.log_num_zeros_in_grad,
    )
