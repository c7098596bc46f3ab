"""protocols.choose: a name picks an analysis' protocol object; an unknown name is refused with the choices."""

import pytest

from transfer_neurons.analyses.latent_spaces import latent_protocol
from transfer_neurons.analyses.qa import qa_protocol
from transfer_neurons.analyses.specificity import specificity_protocol
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.protocols import NAMES


@pytest.mark.parametrize("lookup", [qa_protocol, latent_protocol, specificity_protocol])
def test_every_analysis_knows_both_protocols_and_refuses_others(lookup):
    for name in NAMES:
        chosen = lookup(name)
        assert chosen.name == name and lookup(chosen) is chosen
    with pytest.raises(TransferNeuronsError, match="protocol must be one of default, paper, got 'papr'"):
        lookup("papr")
