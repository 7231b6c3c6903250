"""Recipes: what an entry script provides to pretrain() (Megatron's four callbacks) for one model
family. ``pretrain_gpt.py`` and the tools import them from here; BERT, T5 and fine-tuning recipes
sit beside ``gpt.py``."""
