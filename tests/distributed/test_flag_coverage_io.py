"""Flag coverage (see test_flag_coverage.py): data sources and masks, validation, tokenizer files,
checkpointing and controlled exits, each through short real runs of pretrain()."""
import glob
import hashlib
import json
import math
import os
import re
import signal

import pytest
import torch

from megatron.core.errors import UserError
from tests.distributed.flag_runs import (  # noqa: F401  (corpus: a pytest fixture)
    EOD, base_argv, corpus, differs, inner_model, make_corpus, near, run_flags, sigterm_at, tracker_of,
    with_flags)
from tests.harness import run_distributed


# ------------------------------------------------------------------------------------------------
# Data and validation: where the samples come from, how batches are masked, what is evaluated.

def _validation_losses(stdout):
    return [float(v) for v in re.findall(r"validation loss at iteration \d+ \| lm loss value: ([-+.0-9Ee]+)", stdout)]


def _tokenizer_files(workdir):
    """A small SentencePiece model and a Hugging Face word-level tokenizer, and a corpus whose ids
    (0..19, EOD 19) both hold."""
    import io

    import sentencepiece as spm
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [f"w{i}" for i in range(40)]
    lines = [" ".join(words[i:i + 7]) for i in range(0, 40, 3)] * 5
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=60,
                                   model_type="bpe", hard_vocab_limit=False, minloglevel=2)
    sp_path = os.path.join(workdir, "sp.model")
    with open(sp_path, "wb") as f:
        f.write(model.getvalue())
    hf_dir = os.path.join(workdir, "hf")
    os.makedirs(hf_dir)
    hf = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words + ["<unk>", "</s>"])}, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.save(os.path.join(hf_dir, "tokenizer.json"))
    with open(os.path.join(hf_dir, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "</s>", "unk_token": "<unk>"}, f)
    return {"sp": sp_path, "hf": hf_dir, "corpus": make_corpus(os.path.join(workdir, "small_ids"), eod=19)}


def _data_runs(rank, world_size, corpus, other, workdir, tokenizers):
    base = base_argv(corpus)
    args_file = os.path.join(workdir, "data_args.txt")
    with open(args_file, "w") as f:
        f.write(corpus + "\n")
    per_split_file = os.path.join(workdir, "per_split.json")
    with open(per_split_file, "w") as f:
        json.dump({"train": corpus, "valid": other, "test": other}, f)
    no_data = with_flags(base, data_path=None, split=None)
    evaluation = ["--eval-interval", "2", "--eval-iters", "1", "--train-iters", "4"]
    variants = {
        "base": (base, 1),
        "masks": (base + ["--reset-position-ids", "--reset-attention-mask", "--eod-mask-loss"], 1),
        "no_mask": (base + ["--no-create-attention-mask-in-dataloader"], 0),
        "workers": (with_flags(base, num_workers=1), 0),
        "cache": (base + ["--data-cache-path", os.path.join(workdir, "cache"), "--no-mmap-bin-files",
                          "--num-dataset-builder-threads", "2"], 0),
        "encoder_seq": (with_flags(base, seq_length=None) + ["--encoder-seq-length", "16"], 0),
        "args_file": (no_data + ["--data-args-path", args_file, "--split", "100,0,0"], 0),
        "per_split": (no_data + ["--train-data-path", corpus, "--valid-data-path", other, "--test-data-path", other]
                      + evaluation, 0),
        "per_split_json": (no_data + ["--per-split-data-args-path", per_split_file] + evaluation, 0),
        "blend": (with_flags(base, data_path=["0.5", corpus, "0.5", other]) + ["--mid-level-dataset-surplus", "0.01"], 0),
        "mock": (with_flags(no_data, vocab_size=4096, tokenizer_type=None) + ["--mock-data"], 0),
        "cyclic": (base + ["--dataloader-type", "cyclic"], 0),
        "skip_train": (with_flags(base, split="80,10,10", train_iters=None, eval_iters=2) + ["--skip-train"], 0),
        "eval": (with_flags(base, split="80,20,0") + evaluation, 0),
        "full_validation": (with_flags(base, split="80,20,0", lr=0) + ["--eval-interval", "1", "--full-validation"], 0),
        "partial_validation": (with_flags(base, split="80,20,0", lr=0, eval_iters=1) + ["--eval-interval", "1"], 0),
    }
    # Tokenizer files: ids 0..19 fit every vocabulary here (the corpus' own EOD is id 19).
    small = with_flags(base, data_path=tokenizers["corpus"], tokenizer_type=None, vocab_size=None)
    sentencepiece = small + ["--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", tokenizers["sp"]]
    variants.update({
        "sentencepiece": (sentencepiece, 0),
        "sentencepiece_extra_ids": (sentencepiece + ["--vocab-extra-ids", "3", "--legacy-tokenizer"], 0),
        "huggingface": (small + ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tokenizers["hf"],
                                 "--trust-remote-code"], 0),
    })
    out = {}
    for name, (argv, keep) in variants.items():
        record = run_flags(argv, keep_batches=keep)
        out[name] = {key: record[key] for key in ("loss", "steps", "stdout", "batches", "get_batch_calls",
                                                  "sample_keys")}
    out["cache_files"] = sorted(n for n in os.listdir(os.path.join(workdir, "cache")) if not n.startswith("."))
    return out


def test_data_and_validation_flags(corpus, tmp_path):
    other = make_corpus(str(tmp_path / "other_document"), documents=200, seed=1)
    runs = run_distributed(_data_runs, 1, corpus, other, str(tmp_path), _tokenizer_files(str(tmp_path)))[0]
    base = runs["base"]
    for name in ("no_mask", "workers", "cache", "encoder_seq", "args_file"):
        assert near(runs[name]["loss"], base["loss"], 1e-6), f"{name} changed the training samples"
    for name in ("per_split", "per_split_json"):  # 4 iterations: the LR differs from the third on
        assert near(runs[name]["loss"][:2], base["loss"][:2], 1e-6), f"{name} changed the training samples"
    for name in ("blend", "cyclic", "masks"):
        assert differs(runs[name]["loss"], base["loss"]), f"{name} left the training samples unchanged"
    assert runs["mock"]["steps"] == 3 and all(math.isfinite(x) for x in runs["mock"]["loss"])
    assert "attention_mask" in base["sample_keys"] and "attention_mask" not in runs["no_mask"]["sample_keys"]
    assert any(name.endswith(".npy") for name in runs["cache_files"]), runs["cache_files"]

    # Masks: a document boundary (EOD) inside the first sample restarts positions, blocks attention
    # across it and takes the EOD out of the loss.
    tokens, _, loss_mask, attention_mask, position_ids = runs["masks"]["batches"][0]
    _, _, base_loss_mask, base_attention_mask, base_positions = base["batches"][0]
    assert base_attention_mask is None and bool((base_loss_mask == 1).all())
    assert bool((base_positions == torch.arange(16)).all())
    row = 0
    eods = (tokens[row] == EOD).nonzero().flatten().tolist()
    assert eods and eods[0] < 15, "the first sample should hold a document boundary"
    cut = eods[0] + 1
    assert position_ids[row, cut] == 0 and position_ids[row, cut - 1] == cut - 1
    assert bool(attention_mask[row, 0, cut, :cut].all()) and not bool(attention_mask[row, 0, cut, cut])
    assert bool((loss_mask[row][tokens[row] == EOD] == 0).all()) and bool((loss_mask[row][tokens[row] != EOD] == 1).all())

    # Per-split paths: validation on the other corpus, read from flags or from the JSON file alike.
    assert _validation_losses(runs["per_split"]["stdout"]) == _validation_losses(runs["per_split_json"]["stdout"])
    assert len(_validation_losses(runs["per_split"]["stdout"])) == 2  # at iterations 2 and 4

    skip = runs["skip_train"]
    assert skip["steps"] == 0
    assert "on validation set" in skip["stdout"] and "on test set" in skip["stdout"]
    assert skip["get_batch_calls"] == 2 * 2 * 2  # validation and test: 2 batches of 2 micro-batches each

    evaluation = runs["eval"]
    assert len(_validation_losses(evaluation["stdout"])) == 2 and "on validation set" in evaluation["stdout"]
    assert evaluation["get_batch_calls"] == 4 * 2 + 3 * 1 * 2  # 4 steps; evaluations at 2, 4 and the end

    # --full-validation with a frozen model (--lr 0): every evaluation sees the whole split, so
    # each reports the same loss; evaluating --eval-iters batches instead moves through the split.
    full = _validation_losses(runs["full_validation"]["stdout"])
    assert len(full) == 3 and len(set(full)) == 1, full
    partial = _validation_losses(runs["partial_validation"]["stdout"])
    assert len(set(partial)) == 3, partial
    eval_calls = runs["full_validation"]["get_batch_calls"] - 3 * 2
    assert eval_calls % 4 == 0 and eval_calls // 4 > 2 * 2  # 4 evaluations of more than 2 batches each

    # Tokenizer flags: with --legacy-tokenizer, SentencePieceTokenizer adds <CLS> <SEP> <EOD> <MASK>
    # <PAD> and --vocab-extra-ids <extra_id_N> tokens to the model's pieces; by default (Megatron-LM's
    # current tokenizers) it adds nothing and ignores --vocab-extra-ids.
    def vocabulary(name):
        return int(re.search(r"padded vocab \(size: (\d+)\)", runs[name]["stdout"]).group(1))
    assert vocabulary("sentencepiece_extra_ids") == vocabulary("sentencepiece") + 5 + 3
    assert vocabulary("huggingface") == 42
    for name in ("sentencepiece", "sentencepiece_extra_ids", "huggingface"):
        assert runs[name]["steps"] == 3 and all(math.isfinite(x) for x in runs[name]["loss"]), name




# ------------------------------------------------------------------------------------------------
# Checkpointing and controlled exits: what is saved, what is loaded, when the run stops.



def _started_minutes_ago(minutes, at_iteration):
    def hook(model_chunks, iteration):
        from megatron.training import training
        if iteration == at_iteration:
            training.current_job().start_time -= 60 * minutes
    return hook




def _rng_fingerprint(store, at_iteration):
    """A digest of torch's and the RNG tracker's generator states after the forward and backward of
    ``at_iteration`` (what its dropout masks were drawn from)."""
    def hook(model_chunks, iteration):
        if iteration == at_iteration:
            from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
            tracked = get_cuda_rng_tracker().get_states()
            states = [torch.get_rng_state()] + [tracked[name] for name in sorted(tracked)]
            store["rng"] = hashlib.md5(b"".join(state.numpy().tobytes() for state in states)).hexdigest()
    return hook


def _checkpoint_runs(rank, world_size, corpus, workdir):
    ckpt, empty = os.path.join(workdir, "ckpt"), os.path.join(workdir, "empty")
    os.makedirs(empty)
    # Dropout on, so that the random state matters for an exact resume.
    base = with_flags(base_argv(corpus), hidden_dropout=0.1, train_iters=6)
    resume = base + ["--load", ckpt, "--ckpt-step", "4"]
    straight_rng = {}
    out = {"straight": run_flags(base + ["--save", ckpt, "--save-interval", "2", "--save-retain-interval", "4",
                                    "--log-progress"], _rng_fingerprint(straight_rng, 5))}
    out["straight"]["rng_at_5"] = straight_rng["rng"]
    out["saved"] = sorted(os.listdir(ckpt))
    out["tracker"] = tracker_of(ckpt)
    with open(os.path.join(ckpt, "progress.txt")) as f:
        out["progress"] = f.read()
    runs = {
        "resume": resume,
        "no_load_optim": resume + ["--no-load-optim"],
        "no_load_rng": resume + ["--no-load-rng"],
        "finetune": with_flags(base, train_iters=3) + ["--load", ckpt, "--finetune"],
        "pretrained": with_flags(base, train_iters=3) + ["--load", empty, "--pretrained-checkpoint", ckpt],
        "fresh": with_flags(base, train_iters=3) + ["--load", empty],
        "override": with_flags(resume, lr=1e-2) + ["--override-opt_param-scheduler"],
        "use_checkpoint_schedule": with_flags(resume, lr=1e-2) + ["--use-checkpoint-opt_param-scheduler"],
        "no_save": with_flags(base, train_iters=3) + ["--save", os.path.join(workdir, "slim"), "--save-interval", "3",
                                                 "--no-save-optim", "--no-save-rng"],
        "exit_interval": base + ["--save", os.path.join(workdir, "exit1"), "--save-interval", "100",
                                 "--exit-interval", "2"],
        "long_duration": base + ["--exit-duration-in-mins", "10"],
    }
    fingerprints = {name: {} for name in ("resume", "no_load_rng")}
    for name, argv in runs.items():
        out[name] = run_flags(argv, _rng_fingerprint(fingerprints[name], 5) if name in fingerprints else None)
        out[name]["rng_at_5"] = fingerprints.get(name, {}).get("rng")
    # --exit-duration-in-mins counts whole minutes: pretend, during iteration 1, that the run
    # started two minutes ago.
    out["exit_duration"] = run_flags(base + ["--save", os.path.join(workdir, "exit2"), "--save-interval", "100",
                                        "--exit-duration-in-mins", "1"], _started_minutes_ago(2, at_iteration=1))
    handler_before = signal.getsignal(signal.SIGTERM)
    out["signal"] = run_flags(base + ["--save", os.path.join(workdir, "exit3"), "--save-interval", "100",
                                 "--exit-signal-handler"], sigterm_at(2))
    out["handler_restored"] = signal.getsignal(signal.SIGTERM) == handler_before
    # --use-checkpoint-args: sizes left out of the command line and the architecture switches come
    # from the checkpoint (its GeLU MLP overrides --swiglu here).
    shape_free = with_flags(base, num_layers=None, hidden_size=None, num_attention_heads=None,
                       max_position_embeddings=None, train_iters=8)
    params = {}
    out["checkpoint_args"] = run_flags(shape_free + ["--swiglu", "--use-checkpoint-args", "--load", ckpt,
                                                "--use-checkpoint-opt_param-scheduler"],
                                  _param_snapshot_at(params, 7))
    out["checkpoint_args"]["params"] = params
    for name, argv in (("missing", base + ["--load", empty, "--exit-on-missing-checkpoint"]),
                       ("schedule_mismatch", with_flags(resume, lr=1e-2))):
        try:
            run_flags(argv)
            out[name] = "no error"
        except (UserError, ValueError) as error:
            out[name] = f"{type(error).__name__}: {error}"
    for name in ("exit1", "exit2", "exit3", "slim"):
        out["tracker_" + name] = tracker_of(os.path.join(workdir, name))
    state = torch.load(glob.glob(os.path.join(workdir, "slim", "iter_*", "*", "*.pt"))[0], weights_only=True)
    out["slim_keys"] = sorted(state)
    state = torch.load(glob.glob(os.path.join(ckpt, "iter_0000006", "*", "*.pt"))[0], weights_only=True)
    out["full_keys"] = sorted(state)
    return {name: ({k: v for k, v in value.items() if k != "batches"} if isinstance(value, dict) else value)
            for name, value in out.items()}


def _param_snapshot_at(store, at_iteration):
    def hook(model_chunks, iteration):
        if iteration == at_iteration:
            model = inner_model(model_chunks)
            store.update({name: tuple(p.shape) for name, p in model.named_parameters()})
            store["__activation__"] = model.decoder.layers[0].mlp.activation_func(torch.linspace(-3, 3, 13)).tolist()
    return hook


def test_checkpointing_and_exit_flags(corpus, tmp_path):
    runs = run_distributed(_checkpoint_runs, 1, corpus, str(tmp_path))[0]
    straight = runs["straight"]
    assert straight["steps"] == 6
    # --save-retain-interval 4: iteration 2 was removed when 4 was saved; the latest is always kept.
    assert [name for name in runs["saved"] if name.startswith("iter_")] == ["iter_0000004", "iter_0000006"]
    assert runs["tracker"] == "6"
    progress = runs["progress"].splitlines()
    assert progress[0].endswith("\tStarting job") and "\t# GPUs: 1\t" in progress[0]
    saved_lines = [line for line in progress if "\tSaved checkpoint\t" in line]
    assert [re.search(r"Iteration: (\d+)", line).group(1) for line in saved_lines] == ["2", "4", "6"]
    assert all("Job throughput:" in line and "Tokens (in billions):" in line for line in saved_lines)

    # --ckpt-step 4 resumes exactly (model, optimizer, RNG, schedule, data position).
    resume = runs["resume"]
    assert resume["steps"] == 2 and resume["loss"] == straight["loss"][4:] and resume["lr"] == straight["lr"][4:]
    # Without the optimizer state the first loss (same weights) agrees, the next one does not.
    assert runs["no_load_optim"]["loss"][0] == straight["loss"][4]
    assert differs(runs["no_load_optim"]["loss"][1], straight["loss"][5])  # by 0.12
    # Without the RNG state the dropout masks differ from the first step on. Their effect on the loss
    # (3e-4 relative at dropout 0.1) is small: compare the generator states the masks came from.
    assert resume["rng_at_5"] == straight["rng_at_5"] and runs["no_load_rng"]["rng_at_5"] != straight["rng_at_5"]

    # --finetune and --pretrained-checkpoint both start at iteration 0 from the saved weights.
    finetune, pretrained, fresh = runs["finetune"], runs["pretrained"], runs["fresh"]
    assert finetune["steps"] == pretrained["steps"] == 3
    assert finetune["loss"] == pretrained["loss"]
    assert finetune["loss"][0] < fresh["loss"][0] - 0.1, (finetune["loss"], fresh["loss"])
    assert runs["missing"].startswith("CheckpointError") and "--exit-on-missing-checkpoint" in runs["missing"]

    # The schedule: the checkpoint's max LR must agree with --lr unless one of the two flags says who wins.
    assert "--override-opt_param-scheduler" in runs["schedule_mismatch"]
    assert runs["override"]["lr"][0] == pytest.approx(1e-2 * (1 - 16 / 24))
    assert runs["use_checkpoint_schedule"]["lr"][0] == pytest.approx(5e-3 * (1 - 16 / 24))

    assert "optimizer" in runs["full_keys"] and "rng_state" in runs["full_keys"]
    assert "optimizer" not in runs["slim_keys"] and "rng_state" not in runs["slim_keys"]
    assert "model" in runs["slim_keys"] and runs["tracker_slim"] == "3"

    checkpoint_args = runs["checkpoint_args"]
    assert checkpoint_args["steps"] == 2  # iterations 7 and 8 after the checkpoint's 6
    assert checkpoint_args["params"]["decoder.layers.0.mlp.linear_fc1.weight"] == (128, 32)
    gelu = torch.nn.functional.gelu(torch.linspace(-3, 3, 13)).tolist()
    assert near(checkpoint_args["params"]["__activation__"], gelu, 1e-6)

    # Controlled exits save a checkpoint at the iteration they stop at.
    for name, tracker, steps in (("exit_interval", "2", 2), ("exit_duration", "1", 1), ("signal", "2", 2)):
        run = runs[name]
        assert run["exit_code"] == 0 and run["steps"] == steps, (name, run["exit_code"], run["steps"])
    assert (runs["tracker_exit1"], runs["tracker_exit2"], runs["tracker_exit3"]) == ("2", "1", "2")
    assert runs["long_duration"]["steps"] == 6 and runs["long_duration"]["exit_code"] is None
    assert runs["handler_restored"]
