"""The project's own transformations.

Every function marked with ``@transformation`` in ``transforms/*.py`` is found automatically; files
whose name starts with ``_`` are not scanned, so keep helpers there and import them with
``from transforms._helpers import ...``. DataFrame parameters are the stage's inputs; the one
parameter annotated with a pydantic model is its config, filled from the stage's ``with:``.

Uncomment the example below, then use it in pipeline.yaml::

    stages:
      shifted:
        uses: add_constant
        inputs: [raw]
        with: {column: amount, value: 1.5}
"""

# import pandas as pd
# from pydantic import BaseModel, ConfigDict
#
# from tessera import transformation
#
#
# class AddConstant(BaseModel):
#     model_config = ConfigDict(extra="forbid")
#
#     column: str
#     value: float = 1.0
#
#
# @transformation
# def add_constant(df: pd.DataFrame, cfg: AddConstant) -> pd.DataFrame:
#     """Add a constant to one column."""
#     return df.assign(**{cfg.column: df[cfg.column] + cfg.value})
