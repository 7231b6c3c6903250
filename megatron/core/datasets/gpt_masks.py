"""Left-to-right attention mask, loss mask and position ids of one GPT sample.

Same results as Megatron's `_get_ltor_masks_and_position_ids`, computed without a Python loop
over the EOD tokens: a token's document starts right after the last EOD before it, so a running
maximum of "EOD position + 1" gives every token's document start at once.
"""


def get_ltor_masks_and_position_ids(
    data,
    eod_token,
    reset_position_ids: bool,
    reset_attention_mask: bool,
    eod_mask_loss: bool,
    create_attention_mask: bool = True,
):
    """(attention_mask [1, L, L] bool with True = masked, or None; loss_mask [L] float;
    position_ids [L] long) for the token ids `data` [L]."""
    import torch

    seq_length = data.numel()
    device = data.device
    positions = torch.arange(seq_length, dtype=torch.long, device=device)

    loss_mask = torch.ones(seq_length, dtype=torch.float, device=device)
    if eod_mask_loss:
        loss_mask[data == eod_token] = 0.0

    document_start = None
    if reset_position_ids or reset_attention_mask:
        # Tokens after an EOD at i begin a new document at i + 1 (an EOD ends its document).
        start_marks = torch.zeros(seq_length, dtype=torch.long, device=device)
        after_eod = positions[data == eod_token] + 1
        after_eod = after_eod[after_eod < seq_length]
        start_marks[after_eod] = after_eod
        document_start = torch.cummax(start_marks, dim=0).values

    position_ids = positions - document_start if reset_position_ids else positions

    attention_mask = None
    if create_attention_mask:
        query = positions.view(-1, 1)
        key = positions.view(1, -1)
        allowed = key <= query
        if reset_attention_mask:
            allowed &= key >= document_start.view(-1, 1)
        attention_mask = (~allowed).unsqueeze(0)
    return attention_mask, loss_mask, position_ids
