"""``fleet``: many models sharing a fleet of GPUs of several types, with MIG slices (issue 22)."""
