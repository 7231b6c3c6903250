"""Lines of jsonl -> documents, with every unusable line reported by file and line number."""

import json
from dataclasses import dataclass
from typing import Dict, List, Sequence, Union

from megatron.preprocess.inputs import LineChunk

# A document's field: one text, or a list of already split sentences (Megatron's _ss files).
FieldValue = Union[str, List[str]]


@dataclass(frozen=True)
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ParsedChunk:
    fields: Dict[str, List[FieldValue]]  # per json key, one value per good line, in order
    line_numbers: List[int]  # of the good lines
    bad_lines: List[BadLine]
    blank_lines: int
    input_bytes: int  # bytes of all lines of the chunk, newlines included


def _field_problem(value) -> str:
    if isinstance(value, str):
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ""
    return f"is a {type(value).__name__}, expected a string (or a list of strings)"


def parse_chunk(chunk: LineChunk, json_keys: Sequence[str]) -> ParsedChunk:
    """Parse every line; a line that is not a JSON object with all `json_keys` as strings is a
    bad line and yields no document for any key (so the outputs of all keys stay aligned).
    Blank lines are skipped and counted: Megatron stopped on them, they carry no document."""
    fields: Dict[str, List[FieldValue]] = {key: [] for key in json_keys}
    line_numbers: List[int] = []
    bad_lines: List[BadLine] = []
    blank_lines = 0
    input_bytes = 0
    for number, raw in zip(chunk.line_numbers, chunk.lines):
        input_bytes += len(raw) + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad_lines.append(BadLine(chunk.path, number, f"not valid UTF-8 ({err.reason} at byte {err.start})"))
            continue
        if not text.strip():
            blank_lines += 1
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            bad_lines.append(BadLine(chunk.path, number, f"invalid JSON ({err.msg} at column {err.colno})"))
            continue
        if not isinstance(record, dict):
            bad_lines.append(
                BadLine(chunk.path, number, f"a JSON {type(record).__name__}, expected an object")
            )
            continue
        problem = ""
        for key in json_keys:
            if key not in record:
                present = ", ".join(sorted(record)[:8]) or "none"
                problem = f"missing key {key!r} (keys present: {present}); see --json-keys"
                break
            issue = _field_problem(record[key])
            if issue:
                problem = f"key {key!r} {issue}"
                break
        if problem:
            bad_lines.append(BadLine(chunk.path, number, problem))
            continue
        for key in json_keys:
            fields[key].append(record[key])
        line_numbers.append(number)
    return ParsedChunk(fields, line_numbers, bad_lines, blank_lines, input_bytes)
