"""The Megatron Core quick-start loop, unchanged except that it also runs on CPUs (gloo).

    torchrun --nproc-per-node 2 examples/run_simple_mcore_train_loop.py

Builds a GPT model with tensor-parallel size 2 (when 2 processes run), trains it for 5 iterations on
MockGPTDataset through Megatron Core's schedules, as in Megatron-LM's own quick-start guide.
"""
import os
from functools import partial

import torch
from torch.optim import Adam
from torch.utils.data import DataLoader

from megatron.core import parallel_state
from megatron.core.datasets.gpt_dataset import GPTDatasetConfig, MockGPTDataset
from megatron.core.datasets.utils import Split
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.pipeline_parallel.schedules import get_forward_backward_func
from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
from megatron.core.transformer.transformer_config import TransformerConfig

_SEQUENCE_LENGTH = 64
# The one change from the GPU-only original: use the CPU and gloo when there is no GPU.
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def initialize_distributed(tensor_model_parallel_size=1, pipeline_model_parallel_size=1):
    rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ.get("WORLD_SIZE", torch.cuda.device_count()))
    if device.type == "cuda":
        torch.cuda.set_device(rank)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                         world_size=world_size, rank=rank)
    parallel_state.initialize_model_parallel(tensor_model_parallel_size, pipeline_model_parallel_size)


def model_provider():
    transformer_config = TransformerConfig(
        num_layers=2, hidden_size=12, num_attention_heads=4, use_cpu_initialization=True,
        pipeline_dtype=torch.float32)
    return GPTModel(config=transformer_config, transformer_layer_spec=get_gpt_layer_local_spec(),
                    vocab_size=100, max_sequence_length=_SEQUENCE_LENGTH)


def get_train_data_iterator():
    config = GPTDatasetConfig(random_seed=0, sequence_length=_SEQUENCE_LENGTH, blend=[], mock=True,
                              reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
                              tokenizer="dummy")
    training_data = MockGPTDataset(Split.train, config)
    train_dataloader = DataLoader(training_data, batch_size=8, shuffle=True)
    return iter(train_dataloader)


def forward_step_func(data_iterator, model):
    def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
        losses = output_tensor.float()
        loss_mask = loss_mask.view(-1).float()
        loss = torch.sum(losses.view(-1) * loss_mask) / loss_mask.sum()
        return loss, {"lm loss": loss}

    data = next(data_iterator)
    tokens = data["tokens"].to(device)
    attention_mask = data["attention_mask"].to(device)
    position_ids = data["position_ids"].to(device)
    labels = data["labels"].to(device)
    loss_mask = data["loss_mask"].to(device)
    output_tensor = model(tokens, position_ids, attention_mask, labels=labels)
    return output_tensor, partial(loss_func, loss_mask)


def main(num_iterations: int = 5):
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    initialize_distributed(tensor_model_parallel_size=min(2, world_size), pipeline_model_parallel_size=1)
    model_parallel_cuda_manual_seed(123)
    gpt_model = model_provider()
    gpt_model.to(device)
    optim = Adam(gpt_model.parameters())
    train_iterator = get_train_data_iterator()
    forward_backward_func = get_forward_backward_func()
    all_losses = []
    for _ in range(num_iterations):
        optim.zero_grad()
        losses_reduced = forward_backward_func(
            forward_step_func=forward_step_func, data_iterator=train_iterator, model=gpt_model,
            num_microbatches=1, seq_length=_SEQUENCE_LENGTH, micro_batch_size=8,
            decoder_seq_length=_SEQUENCE_LENGTH, forward_only=False)
        optim.step()
        print(f"Losses reduced :  {losses_reduced}")
        all_losses.append(float(losses_reduced[0]["lm loss"]))
    return all_losses


if __name__ == "__main__":
    main()
