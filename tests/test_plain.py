"""The one conversion to builtins used by reports (JSON), model metadata (YAML) and hashes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import yaml

from loglead_lo2.plain import plain


def test_plain_converts_numpy_paths_and_tuples() -> None:
    value = {1: (np.int64(3), np.float32(0.5)), "p": Path("a/b"), "arr": np.array([[1, 2]]),
             "nested": [{"x": np.bool_(True)}]}
    out = plain(value)
    assert out == {"1": [3, 0.5], "p": "a/b", "arr": [[1, 2]], "nested": [{"x": True}]}
    assert type(out["1"][0]) is int and type(out["nested"][0]["x"]) is bool
    yaml.safe_dump(out)  # safe_dump refuses numpy objects: none is left


def test_nan_is_null_and_infinity_only_when_finite_is_asked() -> None:
    value = [float("nan"), np.float64("nan"), float("inf"), np.array([-np.inf])]
    assert plain(value) == [None, None, math.inf, [-math.inf]]
    finite = plain(value, finite=True)
    assert finite == [None, None, None, [None]]
    assert json.loads(json.dumps(finite, allow_nan=False)) == finite
