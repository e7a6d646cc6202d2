"""Serving a plan: request traces (``traces``), the simulated deployment of a plan (``deployment``), the
discrete-event simulator (``simulate``) and online re-planning along a trace (``adapt``). Nothing is imported
here; ``servopt.simulate`` and ``servopt.Adapter`` are the public entry points."""
