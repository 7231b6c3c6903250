"""Sample a completion from a GPT model (works under tensor parallelism).

Each new token recomputes the whole context (no KV cache): simple and exact, fine for the short
completions of examples and tests. The sampled token is chosen on tensor-parallel rank 0 and
broadcast, so every rank of the group continues with the same text.
"""
from typing import List, Optional

import torch
import torch.distributed as dist

from megatron.core import device, parallel_state
from megatron.core.tensor_parallel.mappings import all_gather_last_dim_from_tensor_parallel_region
from megatron.core.utils import unwrap_model


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0,
                      generator: Optional[torch.Generator] = None) -> int:
    """One token id from logits [vocab] (greedy when temperature is 0). Masked (-inf) entries never win."""
    logits = logits.float()
    if temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


@torch.no_grad()
def generate_tokens(model, prompt_tokens: List[int], max_new_tokens: int, *, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 0.0, eod: Optional[int] = None, seed: int = 0,
                    max_context: Optional[int] = None) -> List[int]:
    """Continue ``prompt_tokens`` by up to ``max_new_tokens`` tokens; stops early at ``eod``."""
    gpt = unwrap_model(model)
    was_training = gpt.training
    gpt.eval()
    dev = device.current_device()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    generator = torch.Generator().manual_seed(seed)
    max_context = max_context or gpt.max_sequence_length
    tokens = list(prompt_tokens)
    generated: List[int] = []
    for _ in range(max_new_tokens):
        context = tokens[-max_context:]
        # Sequence parallelism splits the sequence over TP ranks: pad on the right (causal attention
        # makes the padding invisible to the real positions) and read the last real position.
        pad = (-len(context)) % tp if gpt.config.sequence_parallel else 0
        ids = torch.tensor([context + [0] * pad], dtype=torch.long, device=dev)
        logits = model(ids, None, None)[0, len(context) - 1]
        if gpt.parallel_output and tp > 1:
            logits = all_gather_last_dim_from_tensor_parallel_region(logits)
        logits = logits[: gpt.true_vocab_size]
        choice = torch.tensor([sample_next_token(logits, temperature, top_k, top_p, generator)], device=dev)
        if tp > 1:
            dist.broadcast(choice, parallel_state.get_tensor_model_parallel_src_rank(),
                           group=parallel_state.get_tensor_model_parallel_group())
        token = int(choice)
        if eod is not None and token == eod:
            break
        tokens.append(token)
        generated.append(token)
    if was_training:
        gpt.train()
    return generated


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 64, **kwargs) -> str:
    """Tokenize ``prompt``, sample a continuation, return the continuation's text."""
    ids = tokenizer.tokenize(prompt)
    new = generate_tokens(model, ids, max_new_tokens, eod=getattr(tokenizer, "eod", None), **kwargs)
    return tokenizer.detokenize(new)
