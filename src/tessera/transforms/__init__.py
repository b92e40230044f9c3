"""Tessera's built-in transformations.

Discovery imports this module and collects every transformation found at its top level, so each
one defined in a submodule is re-exported here. They need no learned statistics: anything fitted
on data (imputation by mean, scaling, encodings) belongs to the model's preprocessing, after the
train/test split.
"""

from tessera.transforms.columns import (
    cast_columns,
    clean_strings,
    drop_columns,
    rename_columns,
    replace_values,
    select_columns,
)
from tessera.transforms.combine import concat_tables, join_tables
from tessera.transforms.dates import date_diff, date_parts
from tessera.transforms.groups import group_aggregate
from tessera.transforms.io import read_table, write_table
from tessera.transforms.missing import drop_missing, fill_missing, flag_missing
from tessera.transforms.numeric import (
    bin_values,
    clip_values,
    derive_column,
    log_transform,
    power_transform,
    ratio_columns,
)
from tessera.transforms.rows import (
    drop_duplicates,
    filter_rows,
    one_row_per,
    sample_rows,
    sort_rows,
)
from tessera.transforms.split import train_test_split
from tessera.transforms.windows import lag_columns, rolling_aggregate

__all__ = [
    "bin_values",
    "cast_columns",
    "clean_strings",
    "clip_values",
    "concat_tables",
    "date_diff",
    "date_parts",
    "derive_column",
    "drop_columns",
    "drop_duplicates",
    "drop_missing",
    "fill_missing",
    "filter_rows",
    "flag_missing",
    "group_aggregate",
    "join_tables",
    "lag_columns",
    "log_transform",
    "one_row_per",
    "power_transform",
    "ratio_columns",
    "read_table",
    "rename_columns",
    "replace_values",
    "rolling_aggregate",
    "sample_rows",
    "select_columns",
    "sort_rows",
    "train_test_split",
    "write_table",
]
