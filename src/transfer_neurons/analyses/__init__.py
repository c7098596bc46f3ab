"""One module per measurement of method.md §6; each takes a loaded model and in-memory data and returns arrays."""
