"""Generated tables for tests: a mixed-type table as users bring them, and palmerpenguins.

:func:`mixed_table` holds every column kind ingest and validation must handle, with a label that
depends on both numeric and categorical features (so a model trained on it must beat chance):

| column | what it is | ingest infers |
|---|---|---|
| ``customer_id`` | ``"C00000"``, ``"C00001"``, ... (one per row) | role ``id`` |
| ``age`` | float, about 10 % null | numeric feature |
| ``tenure`` | int months | numeric feature |
| ``plan`` | ``basic`` / ``pro`` / ``team`` and a rare ``legacy`` (``RARE_ROWS`` rows) | categorical feature |
| ``region`` | four strings, about 5 % null | categorical feature |
| ``autopay`` | bool | categorical feature |
| ``notes`` | a sentence per row (free text) | role ``text`` |
| ``signup`` | ``datetime64[ns]`` (``as_text=True``: ISO date strings, as a CSV gives them) | role ``time`` |
| ``target`` | 0/1, more likely for short tenure, ``basic`` plan and no autopay | label |

:func:`with_unseen_category` gives test rows holding a plan never seen in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PLANS = ("basic", "pro", "team")
RARE_PLAN = "legacy"
UNSEEN_PLAN = "enterprise"
RARE_ROWS = 3
REGIONS = ("north", "south", "east", "west")
WORDS = ("late", "payment", "asked", "about", "discount", "support", "ticket", "upgrade", "happy", "slow", "app")
#: The feature columns ingest infers, with their kinds.
FEATURE_KINDS = {
    "age": "numeric",
    "tenure": "numeric",
    "plan": "categorical",
    "region": "categorical",
    "autopay": "categorical",
}
#: The columns ingest keeps but excludes from the features, with their roles.
EXCLUDED_ROLES = {"customer_id": "id", "notes": "text", "signup": "time"}


def mixed_table(rows: int = 400, seed: int = 0, as_text: bool = False) -> pd.DataFrame:
    """A mixed-type table (see the module docstring).

    Args:
        rows: Rows (at least ``4 * RARE_ROWS``).
        seed: Seed of the generator; the same seed gives the same table.
        as_text: Give ``signup`` as ``YYYY-MM-DD`` strings instead of datetimes.
    """
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, size=rows, p=(0.5, 0.3, 0.2)).astype(object)
    plan[rng.choice(rows, size=RARE_ROWS, replace=False)] = RARE_PLAN
    tenure = rng.integers(1, 72, size=rows)
    age = rng.normal(45.0, 12.0, size=rows).round(1)
    age[rng.random(rows) < 0.1] = np.nan
    region = rng.choice(REGIONS, size=rows).astype(object)
    region[rng.random(rows) < 0.05] = None
    autopay = rng.random(rows) < 0.6
    logit = 1.5 - tenure / 18.0 + 1.2 * (plan == "basic") - 1.0 * autopay + rng.normal(0.0, 0.5, size=rows)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, size=rows), unit="D")
    notes = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))) + f" #{i}" for i in range(rows)]
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
            "age": age,
            "tenure": tenure,
            "plan": plan,
            "region": region,
            "autopay": autopay,
            "notes": notes,
            "signup": signup.strftime("%Y-%m-%d") if as_text else signup,
            "target": (logit > 0).astype(np.int64),
        }
    )
    return frame


def with_unseen_category(df: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """A copy of ``df`` whose first ``rows`` rows have the plan :data:`UNSEEN_PLAN`."""
    out = df.copy()
    out.loc[out.index[:rows], "plan"] = UNSEEN_PLAN
    return out


def penguins() -> pd.DataFrame:
    """palmerpenguins' table (344 rows: species, island, sex as strings; measurements with nulls)."""
    import palmerpenguins

    frame: Any = palmerpenguins.load_penguins()
    return frame


def penguins_csv() -> str:
    """The path of the penguins CSV that ships inside the palmerpenguins package."""
    from importlib import resources

    return str(resources.files("palmerpenguins") / "data" / "penguins.csv")
