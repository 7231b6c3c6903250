"""Bad data found by the ranks that read it stops every rank with the same error, without a hang.

Like tensor-parallel size 2: only even ranks read data; the odd ones only join the build phases.
"""

import os
import struct

from tests.dataset_helpers import gpt_config, write_documents
from tests.harness import run_distributed


def _every_rank_fails_alike(rank, world_size, base_dir):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset
    from megatron.core.errors import DataError
    from megatron.training.datasets.vocab_check import check_config_token_ids

    reads = lambda: rank % 2 == 0  # noqa: E731
    outcomes = {}
    damaged = os.path.join(base_dir, "damaged")
    for name, work in (
        # A damaged .idx, found when the reading ranks open it inside the builder.
        ("idx", lambda: BlendedMegatronDatasetBuilder(
            GPTDataset, [10, None, None], reads, gpt_config(([damaged], None))).build()),
        # An id outside the vocabulary, found by the start-up token check of the reading ranks.
        ("token", lambda: check_config_token_ids(
            gpt_config(([os.path.join(base_dir, "good")], None), tokenizer=_Tokenizer(20)), reads)),
    ):
        try:
            work()
            outcomes[name] = None
        except DataError as error:
            outcomes[name] = (str(error), error.same_on_every_rank)
    # And the ranks still talk to each other afterwards.
    import torch
    import torch.distributed as dist
    total = torch.tensor([rank])
    dist.all_reduce(total)
    outcomes["after"] = int(total)

    # Which ranks need data: TP rank 0 of the first and last stage; with vp_stage, of the first
    # and last model chunk (pipeline 2 x virtual 2 x data 2 here).
    from megatron.core import parallel_state
    from megatron.training.datasets.gpt import is_dataset_built_on_rank
    parallel_state.initialize_model_parallel(pipeline_model_parallel_size=2,
                                             virtual_pipeline_model_parallel_size=2)
    outcomes["built"] = [is_dataset_built_on_rank(stage) for stage in (None, 0, 1)]
    return outcomes


class _Tokenizer:
    eod = 0
    unique_identifiers = {"class": "RankTestTokenizer"}

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size


def test_bad_data_stops_every_rank_with_one_error(tmp_path):
    write_documents(str(tmp_path / "good"), [30] * 10)  # ids up to 30
    damaged = write_documents(str(tmp_path / "damaged"), [30] * 10)
    with open(damaged + ".idx", "r+b") as stream:
        stream.seek(34 + 4 * 10 + 8 * 3)  # pointer of sequence 3
        stream.write(struct.pack("<q", 7))
    results = run_distributed(_every_rank_fails_alike, 4, str(tmp_path))
    idx_message, token_message = results[0]["idx"][0], results[0]["token"][0]
    assert "damaged.idx: sequence 3 starts at byte 7" in idx_message
    assert "token id 30 (sequence 0, token 29) is outside the tokenizer's vocabulary of 20 ids" in token_message
    for result in results:
        assert result["idx"] == (idx_message, True) and result["token"] == (token_message, True)
        assert result["after"] == 0 + 1 + 2 + 3
    # Ranks 0, 1 are pipeline stage 0 (whose chunk 0 is the first), ranks 2, 3 stage 1 (whose
    # chunk 1 is the last): for (no vp_stage, vp_stage 0, vp_stage 1).
    built = [result["built"] for result in results]
    assert built == [[True, True, False]] * 2 + [[True, False, True]] * 2, built
