"""Rotary position embedding (RoPE) frequencies, with Llama-3.1 scaling and linear interpolation."""
import math
from typing import Optional

import torch

from megatron.core import device
from megatron.core.utils import get_pg_size, reject_unsupported


def llama3_scaled_inv_freq(inv_freq: torch.Tensor, factor: float = 8.0, low_freq_factor: float = 1.0,
                           high_freq_factor: float = 4.0, original_max_positions: int = 8192) -> torch.Tensor:
    """Llama 3.1's frequency rescaling: long wavelengths slowed by ``factor``, short ones kept,
    a smooth blend in between."""
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = original_max_positions / low_freq_factor
    high_freq_wavelen = original_max_positions / high_freq_factor
    slowed = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    blend = (original_max_positions / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - blend) * slowed / factor + blend * slowed
    in_between = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(in_between, blended, slowed)


class RotaryEmbedding(torch.nn.Module):
    """Angles for RoPE: ``forward(seq_len)`` returns [seq_len, 1, 1, rotary_dim] (fp32)."""

    def __init__(self, kv_channels: int, rotary_percent: float, rotary_interleaved: bool = False,
                 seq_len_interpolation_factor: Optional[float] = None, rotary_base: int = 10000,
                 rope_scaling: bool = False, rope_scaling_factor: float = 8.0,
                 use_cpu_initialization: bool = False, cp_group=None):
        super().__init__()
        dim = int(kv_channels * rotary_percent)
        if dim % 2 != 0 or dim == 0:
            raise ValueError(f"rotary dimension kv_channels x rotary_percent = {kv_channels} x {rotary_percent} "
                             "must be a positive even number")
        reject_unsupported("RotaryEmbedding", {"context_parallel_size": 1}, context_parallel_size=get_pg_size(cp_group))
        self.rotary_interleaved = rotary_interleaved
        self.seq_len_interpolation_factor = seq_len_interpolation_factor
        where = torch.device("cpu") if use_cpu_initialization else device.current_device()
        exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=where) / dim
        inv_freq = 1.0 / (rotary_base ** exponents)
        if rope_scaling:
            inv_freq = llama3_scaled_inv_freq(inv_freq, factor=rope_scaling_factor)
        self.register_buffer("inv_freq", inv_freq.to(device.current_device()), persistent=False)

    def forward(self, max_seq_len: int, offset: int = 0, packed_seq: bool = False) -> torch.Tensor:
        reject_unsupported("RotaryEmbedding.forward", {"packed_seq": False}, packed_seq=packed_seq)
        positions = torch.arange(max_seq_len, device=self.inv_freq.device, dtype=torch.float32) + offset
        if self.seq_len_interpolation_factor is not None:
            positions = positions / self.seq_len_interpolation_factor
        freqs = torch.outer(positions, self.inv_freq)
        if self.rotary_interleaved:
            emb = torch.stack((freqs, freqs), dim=-1).reshape(max_seq_len, -1)
        else:
            emb = torch.cat((freqs, freqs), dim=-1)
        return emb[:, None, None, :]


def _rotate_half(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((-x2, x1), dim=-1).flatten(-2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(t: torch.Tensor, freqs: torch.Tensor, config=None, cu_seqlens=None,
                         mscale: float = 1.0, cp_group=None, rotary_interleaved: Optional[bool] = None) -> torch.Tensor:
    """Rotate the first ``freqs.shape[-1]`` channels of ``t`` [s, b, heads, d]; pass the rest through.

    ``mscale`` multiplies cos and sin (YaRN's attention scaling). ``rotary_interleaved`` (ours)
    overrides ``config.rotary_interleaved``.
    """
    reject_unsupported("apply_rotary_pos_emb", {"context_parallel_size": 1}, cu_seqlens=cu_seqlens,
                       context_parallel_size=get_pg_size(cp_group))
    if rotary_interleaved is None:
        rotary_interleaved = bool(config is not None and config.rotary_interleaved)
    rot_dim = freqs.shape[-1]
    t_rot, t_pass = t[..., :rot_dim], t[..., rot_dim:]
    freqs = freqs[: t.shape[0]]
    cos, sin = (freqs.cos() * mscale).to(t.dtype), (freqs.sin() * mscale).to(t.dtype)
    t_rot = t_rot * cos + _rotate_half(t_rot, rotary_interleaved) * sin
    return torch.cat((t_rot, t_pass), dim=-1) if t_pass.numel() else t_rot
