"""``variant_selection`` (InfAdapter): ``types`` (variants, the plan), ``problem`` (the MILP), ``dp`` (the exact dynamic
program), ``files`` (problem files).
"""
