import pytest

from transfer_neurons.errors import ModelLoadError, TransferNeuronsError
from transfer_neurons.option_files import read_options


def written(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name, content", [
    ("a.yaml", b"langs: [ja, ko]\nseeds: 3\n"),
    ("a.yml", b"langs:\n  - ja\n  - ko\nseeds: 3\n"),
    ("a.json", b'{"langs": ["ja", "ko"], "seeds": 3}'),
    ("a.toml", b'langs = ["ja", "ko"]\nseeds = 3\n'),
])
def test_each_format_reads_the_same_mapping(tmp_path, name, content):
    assert read_options(written(tmp_path, name, content), "config", "config") == {"langs": ["ja", "ko"], "seeds": 3}


def test_an_empty_file_is_no_options(tmp_path):
    assert read_options(written(tmp_path, "a.yaml", b""), "config", "config") == {}


@pytest.mark.parametrize("name, content, message", [
    ("a.yaml", b"seeds: 3\nlangs: [ja,\n", r"a\.yaml, line 3, column 1: not valid YAML \(while parsing .*; .*'<stream end>'\)$"),
    ("a.json", b'{"seeds": 3,\n "langs": [ja]}', r"a\.json, line 2, column 12: not valid JSON \(Expecting value\)$"),
    ("a.toml", b"seeds = 3\nlangs = [ja]\n", r"a\.toml: not valid TOML \(.*line 2, column 10.*\)$"),
    ("a.yaml", b"seeds: 3\n# caf\xe9\n", r"a\.yaml, line 2: not valid UTF-8; re-save the file as UTF-8$"),
    ("a.yaml", b"- ja\n- ko\n", r"a\.yaml: expected a mapping of config fields at the top level, got list$"),
    ("a.json", b"[" * 10_000, r"a\.json: not valid JSON \(nested too deeply\)$"),
])
def test_a_bad_file_is_one_line_naming_file_line_and_problem(tmp_path, name, content, message):
    with pytest.raises(TransferNeuronsError, match=message) as caught:
        read_options(written(tmp_path, name, content), "config", "config")
    assert "\n" not in str(caught.value) and caught.value.option == "config"


def test_the_caller_chooses_the_error_type_and_names(tmp_path):
    with pytest.raises(ModelLoadError, match=r"^adapter .*: cannot read it") as caught:
        read_options(tmp_path, "adapter", "adapter", ModelLoadError)  # a folder, not a file
    assert caught.value.option == "adapter"
