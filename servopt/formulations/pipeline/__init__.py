"""``pipeline`` (IPA): ``types`` (stages, variants, the plan), ``problem`` (the MILP), ``dp`` (the exact search),
``files`` (problem files).
"""
