"""tools/preprocess_data.py's machinery: jsonl text in, Megatron .bin/.idx datasets out.

    inputs.py      which files, in which order (partitions), read in large line-aligned chunks
    documents.py   one chunk of lines -> documents (JSON parsing, bad lines with file:line)
    sentences.py   NLTK punkt sentence splitting (--split-sentences), never downloading anything
    encoding.py    worker side: documents -> token arrays, in batches
    pipeline.py    the worker pool, ordered streaming writes, atomic outputs, summary
    progress.py    docs/s, MB/s, progress bar and ETA lines
    options.py     the command line (Megatron's flags) -> PreprocessConfig
    outputs.py     the output directory: created, writable, dead runs' temporaries removed
    merge.py       tools/merge_datasets.py's merge of a folder of datasets
    cli.py         the preprocess_data command: main(argv) -> status (python -m megatron.preprocess.cli)
    merge_cli.py   the merge_datasets command: main(argv) -> status
    exit_status.py one-line user errors (megatron.cli.guard) as a returned status
"""

from megatron.preprocess.pipeline import PreprocessConfig, PreprocessError, PreprocessSummary, preprocess

__all__ = ["PreprocessConfig", "PreprocessError", "PreprocessSummary", "preprocess"]
