#!/usr/bin/env python3
"""Reference embeddings for all-mpnet-base-v2 (sentence-transformers).

Writes tests/fixtures/embeddings_mpnet.json, the same shape as
embeddings.py's fixture:
  {"model": "all-mpnet-base-v2", "max_seq_length": 384,
   "texts": [str], "vectors": [[768 floats]], "token_counts": [int],
   "token_ids": [[int]]}
A few texts of embeddings.py, one of ~180 tokens and one of ~290 (relative
distances past 128, the last relative-position bucket) and one past the
384-token window (truncated). Encoded in batches of 4 so that short texts
are padded next to long ones. Vectors are mean-pooled (attention-masked)
and L2-normalised, rounded to 7 significant digits.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from embeddings import LONG_1, LONG_3, REPO, TEXTS as MINILM_TEXTS, write_fixture  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "embeddings_mpnet.json"
MAX_SEQ = 384

MEDIUM = (
    "The committee met on Tuesday to review the budget for the coming year. After a long discussion "
    "about road repairs, school funding and the new library, the members agreed to postpone the vote "
    "until the auditors had finished their report. Several residents spoke during the public comment "
    "period, most of them asking for better street lighting near the park and for longer opening hours "
    "at the swimming pool during the summer months, when the town fills with visitors."
) * 2

TEXTS = MINILM_TEXTS[:10] + [MEDIUM, LONG_3[: len(LONG_3) // 5], LONG_1]


def check(counts: list, full: list) -> None:
    assert any(128 < c < MAX_SEQ for c in counts), "need a text past the 128-token bucket range"
    assert any(f > MAX_SEQ for f in full), "need a truncated text"


def main() -> None:
    write_fixture("all-mpnet-base-v2", OUT, TEXTS, MAX_SEQ, batch_size=4, check=check)


if __name__ == "__main__":
    main()
