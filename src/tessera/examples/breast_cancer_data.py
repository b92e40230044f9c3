"""The Wisconsin breast-cancer table that ships with scikit-learn, as a CSV with snake_case names.

569 rows, 30 numeric measurements and ``target`` (0 = malignant, 1 = benign, as scikit-learn codes
it). No download: the data is part of the scikit-learn package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

INSTALL_HINT = "the breast_cancer example needs scikit-learn: pip install 'tessera[sklearn]'"


def snake_case(name: str) -> str:
    """``"mean radius"`` -> ``"mean_radius"``, ``"concave points error"`` -> ``"..._error"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def load_table() -> pd.DataFrame:
    """The dataset as one DataFrame: measurement columns in snake_case, then ``target``.

    Raises:
        ModuleNotFoundError: scikit-learn is not installed (the message says how to install it).
    """
    try:
        from sklearn.datasets import load_breast_cancer
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(INSTALL_HINT) from exc

    bunch = load_breast_cancer(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame.rename(columns=snake_case)


def write_table(path: Path) -> Path:
    """Write the dataset as CSV to ``path`` (parents created)."""
    df = load_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n")
    return path
