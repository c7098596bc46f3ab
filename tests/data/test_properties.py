"""Property: whatever lines a data file holds, the loaders either load it or raise DataError."""

import json
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transfer_neurons.data import load_mc, load_parallel, load_qa, load_sentences
from transfer_neurons.errors import DataError

KEYS = st.sampled_from(["en", "ja", "id", "text", "question", "answers", "options", "answer", "queries", "x"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)
LINES = st.one_of(
    st.text(max_size=30),
    JSON_VALUES.map(json.dumps),
    st.dictionaries(KEYS, JSON_VALUES, max_size=5).map(json.dumps),
    st.lists(st.text(alphabet="ab \t,\"'", max_size=6), max_size=4).map("\t".join),
    st.lists(st.text(alphabet="ab \t,\"'", max_size=6), max_size=4).map(",".join),
)
CONTENT = st.one_of(
    st.lists(LINES, max_size=8).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
)


def loads_or_data_error(load: object, *args: object, **kwargs: object) -> None:
    """Call a loader; only success or DataError is acceptable."""
    try:
        load(*args, **kwargs)  # type: ignore[operator]
    except DataError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=CONTENT, suffix=st.sampled_from([".jsonl", ".tsv", ".csv", ".txt"]), skip=st.booleans())
def test_random_files_only_raise_data_error(content: bytes, suffix: str, skip: bool) -> None:
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = str(Path(folder) / f"data{suffix}")
        Path(path).write_bytes(content)
        if suffix != ".txt":
            loads_or_data_error(load_parallel, path, skip_invalid=skip)
            loads_or_data_error(load_parallel, path, languages=["en", "ja"], split="test", skip_invalid=skip)
        loads_or_data_error(load_sentences, path, "ja", split="train", skip_invalid=skip)
        if suffix == ".jsonl":
            loads_or_data_error(load_qa, path, "en")
            loads_or_data_error(load_mc, path, "en")
