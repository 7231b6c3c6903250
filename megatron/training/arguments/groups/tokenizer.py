"""Megatron's "tokenizer" group: which tokenizer, and the files it is built from."""

from ..option import IMPL_CHOICE, UNSUPPORTED, OptionGroup

# Megatron's names, plus ByteTokenizer (ours: 256 byte ids and a few specials, needs no file).
SUPPORTED_TOKENIZERS = (
    "GPT2BPETokenizer", "HuggingFaceTokenizer", "SentencePieceTokenizer",
    "GPTSentencePieceTokenizer", "Llama2Tokenizer", "BertWordPieceLowerCase",
    "BertWordPieceCase", "NullTokenizer", "ByteTokenizer",
)
UNSUPPORTED_TOKENIZERS = (
    "TikTokenizer", "MultimodalTokenizer", "NullMultimodalTokenizer", "SFTTokenizer",
)

group = OptionGroup("tokenizer")

group.value("--vocab-size", type=int,
            help="Vocabulary size before padding (NullTokenizer, or mock data without a "
                 "tokenizer file).")
group.value("--vocab-file", help="Vocabulary file: GPT-2 vocab.json, or a WordPiece vocab.txt.")
group.value("--merge-file", help="BPE merges file (GPT-2 merges.txt).")
group.value("--vocab-extra-ids", type=int, default=0,
            help="Extra sentinel tokens appended to the vocabulary (T5 span masking).")
group.value("--tokenizer-type", choices=SUPPORTED_TOKENIZERS + UNSUPPORTED_TOKENIZERS,
            unsupported_values=frozenset(UNSUPPORTED_TOKENIZERS),
            supported_text="TikTokenizer and the multimodal/SFT tokenizers are not supported yet",
            help="Which tokenizer to build. ByteTokenizer needs no file (quickstart).")
group.value("--tokenizer-model",
            help="SentencePiece model file, or a Hugging Face tokenizer name or directory.")
group.value("--tokenizer-metadata", state=UNSUPPORTED,
            help="JSON file with tokenizer metadata (new tokenizer system).")
group.value("--tiktoken-pattern", state=UNSUPPORTED, note="TikTokenizer is not available",
            help="Pre-tokenization pattern of the tiktoken tokenizer (v1 or v2).")
group.value("--tiktoken-num-special-tokens", type=int, default=1000, state=UNSUPPORTED,
            note="TikTokenizer is not available",
            help="How many special tokens the tiktoken tokenizer reserves.")
group.value("--tiktoken-special-tokens", nargs="+", state=UNSUPPORTED,
            note="TikTokenizer is not available", help="Special tokens of the tiktoken tokenizer.")
group.switch("--legacy-tokenizer",
             help="Token ids of Megatron-LM's older tokenizer classes (core_v0.15) instead of "
                  "its current megatron.core.tokenizers ones; docs/data.md lists what differs.")
group.switch("--tokenizer-hf-include-special-tokens",
             help="HuggingFaceTokenizer: add the tokens of the file's post-processor (a BOS in "
                  "front, ...) to every text, as transformers' tokenizer(text) does. Always so "
                  "with --legacy-tokenizer.")
group.switch("--tokenizer-hf-use-fast", state=IMPL_CHOICE,
             note="Hugging Face tokenizers always run in the tokenizers library (the fast one)",
             help="Use the fast (Rust) Hugging Face tokenizer.")
group.switch("--tokenizer-sentencepiece-legacy", state=UNSUPPORTED,
             note="use --legacy-tokenizer for Megatron-LM's older SentencePiece special tokens",
             help="megatron-core's SentencePiece wrapper matching its special tokens in the text.")
group.value("--tokenizer-special-tokens", nargs="+", state=UNSUPPORTED,
            note="add special tokens to the tokenizer file itself",
            help="Special tokens to add to the tokenizer's vocabulary.")
group.switch("--trust-remote-code",
             help="Let a Hugging Face tokenizer run code shipped with it.")
