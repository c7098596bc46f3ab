"""Property: whatever a file holds, every loader either reads it or raises the project's own error.

Data files (parallel, sentences, QA, MC, MKQA) may raise only DataError; detection folders
(neurons.json, meta.json, .npy arrays), study configs (YAML, TOML) and arrays only TransferNeuronsError,
adapter files only ModelLoadError.
"""

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from transfer_neurons.data import load_mc, load_parallel, load_qa, load_sentences
from transfer_neurons.detection import read_detection, read_meta, read_neurons
from transfer_neurons.errors import DataError, ModelLoadError, TransferNeuronsError
from transfer_neurons.models.user_adapter import read_adapter
from transfer_neurons.outputs import load_npy
from transfer_neurons.study import read_config_file, resolve_config

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


DEEP = ("[" * 10_000).encode()  # nesting past the parser's recursion limit
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def loads_or_raises(error: type[Exception], load: object, *args: object, **kwargs: object) -> None:
    """Call a loader; only success or `error` is acceptable."""
    try:
        load(*args, **kwargs)  # type: ignore[operator]
    except error:
        pass


def loads_or_data_error(load: object, *args: object, **kwargs: object) -> None:
    """Call a data loader; only success or DataError is acceptable."""
    loads_or_raises(DataError, load, *args, **kwargs)


@SETTINGS
@given(
    content=CONTENT,
    suffix=st.sampled_from([".jsonl", ".tsv", ".csv", ".txt", ".jsonl.gz"]),
    skip=st.booleans(),
    strict=st.booleans(),
    dedupe=st.booleans(),
)
@example(content=DEEP, suffix=".jsonl", skip=True, strict=False, dedupe=False)
def test_random_files_only_raise_data_error(content: bytes, suffix: str, skip: bool, strict: bool, dedupe: bool) -> None:
    options = {"skip_invalid": skip, "strict_pairs": strict, "dedupe": dedupe}
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / f"data{suffix}")
        Path(path).write_bytes(content)
        if suffix != ".txt":
            loads_or_data_error(load_parallel, path, **options)
            loads_or_data_error(load_parallel, path, languages=["en", "ja"], split="test", limit=3, **options)
        loads_or_data_error(load_sentences, path, "ja", split="train", **options)
        if suffix.startswith(".jsonl"):
            loads_or_data_error(load_qa, path, "en")
            loads_or_data_error(load_mc, path, "en")


MKQA_ANSWER = st.fixed_dictionaries(
    {}, optional={"type": st.sampled_from(["entity", "long_answer", "unanswerable", "number"]) | JSON_VALUES,
                  "text": st.text(max_size=6) | JSON_VALUES, "aliases": st.lists(st.text(max_size=4)) | JSON_VALUES},
)
MKQA_ROWS = st.fixed_dictionaries(
    {"queries": st.dictionaries(st.sampled_from(["en", "ja", "zh_cn"]), st.text(max_size=8) | JSON_VALUES, max_size=3)
     | JSON_VALUES},
    optional={"answers": st.dictionaries(st.sampled_from(["en", "ja", "zh_cn"]), st.lists(MKQA_ANSWER, max_size=3)
                                         | JSON_VALUES, max_size=3) | JSON_VALUES, "example_id": JSON_VALUES},
)
QUESTION_ROWS = st.fixed_dictionaries(
    {"question": st.dictionaries(st.sampled_from(["en", "ja"]), JSON_VALUES, max_size=2) | JSON_VALUES},
    optional={
        "answers": st.dictionaries(st.sampled_from(["en", "ja"]), st.lists(JSON_VALUES, max_size=3), max_size=2)
        | JSON_VALUES,
        "options": st.dictionaries(st.sampled_from(["en", "ja"]), st.lists(JSON_VALUES, max_size=4), max_size=2)
        | JSON_VALUES,
        "answer": JSON_VALUES,
    },
)


@SETTINGS
@given(rows=st.lists(MKQA_ROWS | QUESTION_ROWS, min_size=1, max_size=5), lang=st.sampled_from(["en", "ja", "zh"]))
def test_question_shaped_rows_only_raise_data_error(rows: list, lang: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "questions.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        loads_or_data_error(load_qa, str(path), lang)
        loads_or_data_error(load_mc, str(path), lang)


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy file bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


ARRAY_FILES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.floats(width=32), max_size=12).map(lambda xs: npy_bytes(np.array(xs, dtype=np.float32))),
    st.tuples(st.binary(max_size=40), st.integers(0, 120)).map(  # a real header, then corrupted or cut
        lambda cut: (npy_bytes(np.zeros((2, 3), np.float32))[: cut[1]] + cut[0])),
)


@SETTINGS
@given(content=ARRAY_FILES)
@example(content=b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + b" " * 50)
@example(content=npy_bytes(np.zeros((2, 3), np.float32))[:109] + b"\x00" * 18 + b"(")  # numpy's header parser: TokenError
def test_random_npy_files_only_raise_data_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "array.npy"
        path.write_bytes(content)
        loads_or_data_error(load_npy, path)


META_VALUES = {
    "type": st.sampled_from(["type1", "type2"]) | JSON_VALUES,
    "language": st.sampled_from(["ja", "nl"]) | JSON_VALUES,
    "candidate_layers": st.lists(st.integers(-2, 5), max_size=4) | JSON_VALUES,
    "num_layers": st.integers(-1, 5) | JSON_VALUES,
    "d_ff": st.integers(-1, 8) | JSON_VALUES,
    "d_model": st.integers(-1, 8) | JSON_VALUES,
    "model": st.text(max_size=5) | JSON_VALUES,
    "top_n": st.integers(-1, 8) | JSON_VALUES,
}
JSON_FILES = st.one_of(
    st.binary(max_size=80),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({}, optional=META_VALUES).map(lambda value: json.dumps(value).encode()),
    st.lists(st.fixed_dictionaries({}, optional={"layer": st.integers(-2, 5) | JSON_VALUES,
                                                 "neuron": st.integers(-2, 9) | JSON_VALUES,
                                                 "score": JSON_VALUES}), max_size=4).map(
        lambda rows: json.dumps(rows).encode()),
)


@SETTINGS
@given(neurons=JSON_FILES, meta=JSON_FILES, arrays=st.lists(ARRAY_FILES, min_size=3, max_size=3),
       top_k=st.none() | st.integers(-1, 3))
@example(neurons=DEEP, meta=DEEP, arrays=[b"", b"", b""], top_k=None)
def test_random_detection_folders_only_raise_transfer_neurons_error(
    neurons: bytes, meta: bytes, arrays: list[bytes], top_k: int | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "neurons.json").write_bytes(neurons)
        (root / "meta.json").write_bytes(meta)
        for name, content in zip(("scores.npy", "magnitudes.npy", "centroids.npy"), arrays):
            (root / name).write_bytes(content)
        loads_or_raises(TransferNeuronsError, read_neurons, root, top_k)
        loads_or_raises(TransferNeuronsError, read_neurons, root / "neurons.json")
        loads_or_raises(TransferNeuronsError, read_meta, root)
        loads_or_raises(TransferNeuronsError, read_detection, root, top_k)


CONFIG_KEYS = st.sampled_from(["langs", "hub_lang", "model", "data", "controls", "stages", "sizes", "types",
                               "top_n", "seeds", "quick", "knn_k", "dose_counts", "batch_size", "x"])
CONFIG_MAPPINGS = st.dictionaries(CONFIG_KEYS, JSON_VALUES, max_size=5)


def toml_text(mapping: dict) -> str:
    """A rough TOML rendering of flat values (strings, numbers, booleans, lists); anything else as a string."""
    lines = []
    for key, value in mapping.items():
        rendered = json.dumps(value) if isinstance(value, (str, int, float, bool, list)) else json.dumps(str(value))
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines)


CONFIG_FILES = st.one_of(
    st.tuples(st.sampled_from([".yaml", ".yml", ".toml"]), st.binary(max_size=80)),
    st.tuples(st.sampled_from([".yaml", ".yml"]), CONFIG_MAPPINGS.map(lambda m: yaml.safe_dump(m).encode())),
    st.tuples(st.sampled_from([".yaml"]), st.text(max_size=40).map(str.encode)),
    st.tuples(st.just(".toml"), CONFIG_MAPPINGS.map(lambda m: toml_text(m).encode())),
)


@SETTINGS
@given(config=CONFIG_FILES)
@example(config=(".yaml", b"\xff\xfe bad"))
@example(config=(".toml", b"\xc3\x28 = 1"))
def test_random_config_files_only_raise_transfer_neurons_error(config: tuple[str, bytes]) -> None:
    suffix, content = config
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"study{suffix}"
        path.write_bytes(content)
        try:
            options = read_config_file(path)
        except TransferNeuronsError:
            return
        loads_or_raises(TransferNeuronsError, resolve_config, options)


ADAPTER_FIELDS = st.sampled_from(["decoder", "layers", "out_proj", "mlp_out_norm", "norm_gain_offset",
                                  "value_vectors_are_rows", "unembed", "norm"])
ADAPTER_FILES = st.one_of(
    st.tuples(st.sampled_from([".yaml", ".json"]), st.binary(max_size=80)),
    st.tuples(st.just(".yaml"), st.dictionaries(ADAPTER_FIELDS, JSON_VALUES, max_size=4).map(
        lambda m: yaml.safe_dump(m).encode())),
    st.tuples(st.just(".json"), JSON_VALUES.map(lambda v: json.dumps(v).encode())),
)


@SETTINGS
@given(adapter=ADAPTER_FILES)
@example(adapter=(".yaml", b"decoder: mod\xe9l"))  # not UTF-8: was a UnicodeDecodeError
@example(adapter=(".json", DEEP))
def test_random_adapter_files_only_raise_model_load_error(adapter: tuple[str, bytes]) -> None:
    suffix, content = adapter
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"adapter{suffix}"
        path.write_bytes(content)
        loads_or_raises(ModelLoadError, read_adapter, path)
