"""Field names and defaults of megatron-core 0.16.1's config dataclasses (data, for error messages).

Generated once from an installed megatron-core 0.16.1 with dataclasses.fields(); a default that is
not a plain literal is COMPLEX (any value given for that field counts as non-default).
"""
COMPLEX = object()

MCORE_FIELDS = {
    'ModelParallelConfig': {
        'tensor_model_parallel_size': 1, 'pipeline_model_parallel_comm_backend': None,
        'pipeline_model_parallel_size': 1, 'virtual_pipeline_model_parallel_size': None, 'sequence_parallel':
        False, 'context_parallel_size': 1, 'hierarchical_context_parallel_sizes': None,
        'max_seqlen_per_dp_cp_rank': None, 'hybrid_context_parallel': False, 'expert_model_parallel_size': 1,
        'expert_tensor_parallel_size': None, 'moe_extended_tp': False, 'perform_initialization': True,
        'use_cpu_initialization': False, 'fp16': False, 'bf16': False, 'params_dtype': COMPLEX,
        'timers': None, 'finalize_model_grads_func': None, 'grad_scale_func': None, 'no_sync_func': None,
        'grad_sync_func': None, 'param_sync_func': None, 'deterministic_mode': False, 'enable_autocast':
        False, 'autocast_dtype': None, 'num_microbatches_with_partial_activation_checkpoints': None,
        'gradient_accumulation_fusion': False, 'async_tensor_model_parallel_allreduce': True,
        'use_te_rng_tracker': False, 'tp_comm_overlap': False, 'tp_comm_bulk_wgrad': True,
        'tp_comm_bulk_dgrad': True, 'tp_comm_overlap_ag': True, 'tp_comm_overlap_rs': True,
        'tp_comm_overlap_rs_dgrad': False, 'tp_comm_split_ag': True, 'tp_comm_atomic_ag': False,
        'tp_comm_split_rs': True, 'tp_comm_atomic_rs': False, 'cross_entropy_loss_fusion': False,
        'cross_entropy_fusion_impl': 'native', 'tp_comm_overlap_disable_qkv': False,
        'tp_comm_overlap_disable_fc1': False, 'tp_comm_bootstrap_backend': 'nccl',
        'overlap_moe_expert_parallel_comm': False, 'delay_wgrad_compute': False,
        'ep_overlap_early_attn_memory_release': False, 'pipeline_dtype': None, 'variable_seq_lengths': False,
        'overlap_p2p_comm': False, 'batch_p2p_comm': True, 'batch_p2p_sync': True, 'use_ring_exchange_p2p':
        False, 'deallocate_pipeline_outputs': False, 'defer_embedding_wgrad_compute': False,
        'wgrad_deferral_limit': 0, 'overlap_p2p_comm_warmup_flush': False,
        'microbatch_group_size_per_vp_stage': None, 'mtp_standalone': False, 'cpu_offloading': False,
        'cpu_offloading_num_layers': 0, '_cpu_offloading_context': None, 'cpu_offloading_activations': True,
        'cpu_offloading_weights': False, 'cpu_offloading_double_buffering': False, 'barrier_with_L1_time':
        True
    },
    'TransformerConfig': {
        'num_layers': 0, 'mtp_num_layers': None, 'mtp_loss_scaling_factor': 0.1,
        'num_layers_in_first_pipeline_stage': None, 'num_layers_in_last_pipeline_stage': None,
        'pipeline_model_parallel_layout': None, 'account_for_embedding_in_pipeline_split': False,
        'account_for_loss_in_pipeline_split': False, 'hidden_size': 0, 'num_attention_heads': 0,
        'attention_backend': COMPLEX, 'softmax_scale': None, 'softmax_type': 'vanilla', 'num_query_groups':
        None, 'ffn_hidden_size': None, 'kv_channels': None, 'hidden_dropout': 0.1, 'attention_dropout': 0.1,
        'fp32_residual_connection': False, 'apply_residual_connection_post_layernorm': False,
        'layernorm_epsilon': 1e-05, 'layernorm_zero_centered_gamma': False, 'add_bias_linear': True,
        'add_qkv_bias': False, 'gated_linear_unit': False, 'activation_func': COMPLEX,
        'activation_func_fp8_input_store': False, 'glu_linear_offset': 0.0, 'activation_func_clamp_value':
        None, 'num_moe_experts': None, 'rotary_interleaved': False, 'window_size': None,
        'window_attn_skip_freq': None, 'normalization': 'LayerNorm', 'qk_layernorm': False, 'qk_l2_norm':
        False, 'qk_clip': False, 'qk_clip_alpha': 0.5, 'qk_clip_threshold': 100, 'log_max_attention_logit':
        False, 'attention_output_gate': False, 'test_mode': False, 'calculate_per_token_loss': False,
        'multi_latent_attention': False, 'no_rope_freq': None, 'experimental_attention_variant': None,
        'dsa_indexer_n_heads': None, 'dsa_indexer_head_dim': None, 'dsa_indexer_topk': None,
        'dsa_indexer_loss_coeff': None, 'dsa_indexer_use_sparse_loss': False, 'linear_attention_freq': None,
        'linear_conv_kernel_dim': 4, 'linear_key_head_dim': 128, 'linear_value_head_dim': 128,
        'linear_num_key_heads': 16, 'linear_num_value_heads': 32, 'init_method': None,
        'output_layer_init_method': None, 'init_method_std': 0.02, 'embedding_init_method': None,
        'embedding_init_method_std': None, 'init_model_with_meta_device': False,
        'apply_query_key_layer_scaling': False, 'attention_softmax_in_fp32': True,
        'disable_bf16_reduced_precision_matmul': False, 'bias_activation_fusion': False,
        'masked_softmax_fusion': False, 'persist_layer_norm': False, 'memory_efficient_layer_norm': False,
        'bias_dropout_fusion': False, 'apply_rope_fusion': False, 'use_fused_weighted_squared_relu': False,
        'fused_single_qkv_rope': False, 'recompute_granularity': None, 'recompute_method': None,
        'recompute_num_layers': None, 'distribute_saved_activations': False, 'recompute_modules': None, 'fp8':
        None, 'fp8_recipe': 'delayed', 'fp8_param': False, 'fp8_quantizer_factory': None, 'fp8_margin': 0,
        'fp8_interval': 1, 'fp8_amax_history_len': 1, 'fp8_amax_compute_algo': 'most_recent', 'fp8_wgrad':
        True, 'fp8_dot_product_attention': False, 'fp8_multi_head_attention': False, 'tp_only_amax_red':
        False, 'first_last_layers_bf16': False, 'num_layers_at_start_in_bf16': 1, 'num_layers_at_end_in_bf16':
        1, 'use_kitchen': False, 'use_kitchen_attention': False, 'kitchen_attention_backend': 'sdpa', 'fp4':
        None, 'fp4_recipe': 'nvfp4', 'fp4_param': False, 'fp4_quantizer_factory': None,
        'moe_shared_expert_intermediate_size': None, 'moe_shared_expert_gate': False,
        'moe_shared_expert_overlap': False, 'moe_layer_freq': 1, 'moe_ffn_hidden_size': None,
        'moe_router_load_balancing_type': 'aux_loss', 'moe_router_topk': 2, 'moe_enable_routing_replay':
        False, 'moe_router_topk_limited_devices': None, 'moe_router_padding_for_quantization': False,
        'moe_router_padding_for_fp8': False, 'moe_router_num_groups': None, 'moe_router_group_topk': None,
        'moe_router_pre_softmax': False, 'moe_router_topk_scaling_factor': None, 'moe_router_score_function':
        'softmax', 'moe_router_dtype': None, 'moe_router_enable_expert_bias': False,
        'moe_router_bias_update_rate': 0.001, 'moe_router_force_load_balancing': False, 'moe_grouped_gemm':
        False, 'moe_use_legacy_grouped_gemm': False, 'moe_aux_loss_coeff': 0.0, 'moe_z_loss_coeff': None,
        'moe_input_jitter_eps': None, 'moe_token_dropping': False, 'moe_token_dispatcher_type': 'allgather',
        'moe_enable_deepep': False, 'moe_flex_dispatcher_backend': 'deepep', 'moe_per_layer_logging': False,
        'moe_expert_capacity_factor': None, 'moe_pad_expert_input_to_capacity': False,
        'moe_token_drop_policy': 'probs', 'moe_layer_recompute': False, 'moe_permute_fusion': False,
        'moe_router_fusion': False, 'moe_apply_probs_on_input': False, 'moe_latent_size': None,
        'moe_deepep_num_sms': 20, 'moe_hybridep_num_sms': 16, 'cp_comm_type': None, 'enable_cuda_graph':
        False, 'cuda_graph_use_single_mempool': False, 'cuda_graph_retain_backward_graph': False,
        'cuda_graph_warmup_steps': 3, 'external_cuda_graph': False, 'cuda_graph_impl': 'none',
        'cuda_graph_scope': 'full', 'clone_scatter_output_in_embedding': True,
        'disable_parameter_transpose_cache': False, 'config_logger_dir': '', 'flash_decode': False,
        'batch_invariant_mode': False, 'use_te_activation_func': False, 'inference_rng_tracker': False,
        'inference_sampling_seed': 42, 'symmetric_ar_type': None, 'use_inference_optimized_layers': False,
        'inference_fuse_tp_communication': False, 'mrope_section': None, 'is_hybrid_model': False,
        'mamba_state_dim': 128, 'mamba_head_dim': 64, 'mamba_num_groups': 8, 'mamba_num_heads': None,
        'use_mamba_mem_eff_path': True, 'mlp_chunks_for_prefill': 1, 'heterogeneous_block_specs': False,
        'hetereogenous_dist_checkpoint': False, 'quant_recipe': None, 'transformer_impl':
        'transformer_engine', 'fine_grained_activation_offloading': False, 'offload_modules': COMPLEX,
        'min_offloaded_tensor_size': 1048576
    },
    'OptimizerConfig': {
        'lr': None, 'min_lr': None, 'decoupled_lr': None, 'decoupled_min_lr': None, 'weight_decay': 0.01,
        'apply_wd_to_qk_layernorm': False, 'fp8_recipe': None, 'fp16': False, 'bf16': False,
        'reuse_grad_buf_for_mxfp8_param_ag': False, 'params_dtype': COMPLEX,
        'use_precision_aware_optimizer': False, 'store_param_remainders': True, 'main_grads_dtype':
        COMPLEX, 'main_params_dtype': COMPLEX, 'exp_avg_dtype': COMPLEX,
        'exp_avg_sq_dtype': COMPLEX, 'optimizer': 'adam', 'loss_scale': None, 'initial_loss_scale':
        4294967296, 'min_loss_scale': 1.0, 'loss_scale_window': 1000, 'hysteresis': 2, 'adam_beta1': 0.9,
        'adam_beta2': 0.999, 'adam_eps': 1e-08, 'decoupled_weight_decay': True, 'sgd_momentum': 0.9,
        'muon_momentum': 0.95, 'muon_split_qkv': True, 'muon_use_nesterov': False, 'muon_scale_mode':
        'spectral', 'muon_fp32_matmul_prec': 'medium', 'muon_num_ns_steps': 5, 'muon_tp_mode': 'blockwise',
        'muon_extra_scale_factor': 1.0, 'use_distributed_optimizer': False, 'overlap_param_gather': False,
        'overlap_param_gather_with_optimizer_step': False, 'optimizer_cpu_offload': False,
        'optimizer_offload_fraction': 0.0, 'use_torch_optimizer_for_cpu_offload': False,
        'overlap_cpu_optimizer_d2h_h2d': False, 'pin_cpu_grads': True, 'pin_cpu_params': True, 'clip_grad':
        1.0, 'log_num_zeros_in_grad': False, 'barrier_with_L1_time': False, 'timers': None,
        'config_logger_dir': ''
    },
    'DistributedDataParallelConfig': {
        'grad_reduce_in_fp32': False, 'overlap_grad_reduce': False, 'overlap_param_gather': False,
        'align_param_gather': False, 'use_distributed_optimizer': False,
        'num_distributed_optimizer_instances': 1, 'check_for_nan_in_grad': False, 'check_for_large_grads':
        False, 'bucket_size': None, 'pad_buckets_for_high_nccl_busbw': False,
        'reduce_scatter_with_fp32_accumulation': False, 'average_in_collective': False, 'fp8_param_gather':
        False, 'reuse_grad_buf_for_mxfp8_param_ag': False, 'use_megatron_fsdp': False, 'use_custom_fsdp':
        False, 'data_parallel_sharding_strategy': 'no_shard', 'gradient_reduce_div_fusion': True,
        'suggested_communication_unit_size': None, 'preserve_fp32_weights': True, 'keep_fp8_transpose_cache':
        False, 'nccl_ub': False, 'fsdp_double_buffer': False, 'outer_dp_sharding_strategy': 'no_shard',
        'disable_symmetric_registration': False, 'fsdp_manual_registration': False, 'delay_wgrad_compute':
        False
    },
}
# TransformerConfig derives from ModelParallelConfig.
MCORE_FIELDS["TransformerConfig"] = {**MCORE_FIELDS["ModelParallelConfig"], **MCORE_FIELDS["TransformerConfig"]}
