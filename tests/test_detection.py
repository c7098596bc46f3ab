"""check_detection_model: what the refusal of a detection made on another model says."""

import pytest
from tiny import tiny_lm

from transfer_neurons.detection import check_detection_model, model_shape
from transfer_neurons.errors import TransferNeuronsError


def test_a_refusal_says_whether_the_shape_was_recorded():
    lm = tiny_lm("llama")
    with pytest.raises(TransferNeuronsError, match=r"\(its shape not recorded, another name\)"):
        check_detection_model({"model": "meta-llama/Meta-Llama-3-8B"}, lm, "ja_type1.json")
    with pytest.raises(TransferNeuronsError, match=r"\(same shape, another name\)"):
        check_detection_model({"model": "another", **model_shape(lm)}, lm, "ja_type1.json")
    check_detection_model({"model": lm.name, **model_shape(lm)}, lm, "ja_type1.json")  # its own model passes
