"""Test helpers that ship with servopt: a real tritonserver (from the ``nvidia-pytriton`` wheel) to check that
written repositories load and serve (:mod:`servopt.testing.triton_server`). Nothing here is imported by
``import servopt``."""
