"""Profiles: measured performance of models, one row per measurement (SPEC §2).

The canonical schema, its validation, readers for CSV and Parquet in that schema, and importers for
perf_analyzer, Triton Model Analyzer, InfAdapter's and IPA's CPU profiles. Every error names the file, the row and
the column, and says what would be accepted; nothing is silently dropped.

>>> from servopt.profiles import load_profile
>>> table = load_profile("profiles/nvidia_resnet50_triton.csv")
>>> table.frame.columns[:4].tolist()                            
['model', 'variant', 'hardware', 'input_size']
"""

from __future__ import annotations

from servopt.profiles._importers import batch_size_from_name, read_perf_analyzer
from servopt.profiles._model_analyzer import read_model_analyzer
from servopt.profiles._io import (
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    ProfileTable,
    default_mode,
    load_profile,
    profile_from_frame,
    read_csv_cells,
    read_csv_fast,
    read_raw,
    write_profile,
)
from servopt.profiles._schema import (
    CANONICAL,
    COLUMNS,
    IDENTITY_COLUMNS,
    MEASURED_COLUMNS,
    NUMERIC_LABELS,
    Column,
    hw_columns,
    label_columns,
    missing_mask,
    parse_numbers,
    point_columns,
    validate_frame,
)
from servopt.profiles._papers import read_infadapter_capacity, read_ipa_profile
from servopt.profiles._repeats import REPEAT_MODES, average_runs
from servopt.profiles._select import read_where, require_single_group, select_rows

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "ProfileTable",
    "load_profile",
    "profile_from_frame",
    "write_profile",
    "default_mode",
    "validate_frame",
    "read_csv_cells",
    "read_csv_fast",
    "read_raw",
    "average_runs",
    "REPEAT_MODES",
    "parse_numbers",
    "missing_mask",
    "read_perf_analyzer",
    "batch_size_from_name",
    "read_model_analyzer",
    "read_infadapter_capacity",
    "read_ipa_profile",
    "select_rows",
    "require_single_group",
    "read_where",
    "Column",
    "COLUMNS",
    "CANONICAL",
    "IDENTITY_COLUMNS",
    "MEASURED_COLUMNS",
    "NUMERIC_LABELS",
    "label_columns",
    "hw_columns",
    "point_columns",
]
