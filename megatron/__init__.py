"""Megatron-LM-compatible LLM pretraining, pip-installable, CPU to many GPUs."""
__version__ = "0.1.0"
