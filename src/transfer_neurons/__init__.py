"""transfer-neurons: find, test and deactivate the MLP neurons that move a multilingual
LLM's representations between language-specific latent spaces and its shared semantic space."""

__version__ = "0.1.0"
