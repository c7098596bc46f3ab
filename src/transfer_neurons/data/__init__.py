"""Data for the experiments: parallel corpora, monolingual sentences, QA and multiple-choice sets.

A SPEC is a file path, a bundled set name ("parallel", "qa", "mc") or "hf:<dataset id>[:<config>]".
Every bad input raises transfer_neurons.errors.DataError naming the file (and line) and what was expected.
"""

from transfer_neurons.data.derived import nonparallel_pairs, split_of
from transfer_neurons.data.loaders import (
    describe_bundled,
    describe_bundled_set,
    load_mc,
    load_parallel,
    load_qa,
    load_sentences,
    parallel_languages,
    rows_left_out,
)
from transfer_neurons.data.types import MCItem, MCSet, ParallelCorpus, ParallelPairs, QAItem, QASet, Sentences

__all__ = [
    "MCItem",
    "MCSet",
    "ParallelCorpus",
    "ParallelPairs",
    "QAItem",
    "QASet",
    "Sentences",
    "describe_bundled",
    "describe_bundled_set",
    "load_mc",
    "load_parallel",
    "load_qa",
    "load_sentences",
    "nonparallel_pairs",
    "parallel_languages",
    "rows_left_out",
    "split_of",
]
