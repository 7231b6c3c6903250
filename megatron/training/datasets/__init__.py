"""The driver's data side: build the GPT datasets from parsed flags, and the pretraining loaders.

from megatron.training.datasets.gpt import build_gpt_datasets
from megatron.training.datasets.data_samplers import build_pretraining_data_loader
"""
