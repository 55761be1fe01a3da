"""Tests for serving.guard: requests are counted by route template, never by raw path."""

from __future__ import annotations

import pytest

from serving.guard import route_of


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/models/bc:predict", "v1_predict"),
        ("/v2/models/bc/infer", "v2_infer"),
        ("/v2/models/bc/versions/3/infer", "v2_infer"),
        ("/v2/models/bc/ready", "v2_model_ready"),
        ("/v2/models/bc", "v2_model_metadata"),
        ("/v2/health/ready", "v2_health_ready"),
        ("/metrics", "metrics"),
        ("/v2/models/bc/infer/../../etc", "other"),
        ("/anything/else", "other"),
    ],
)
def test_routes_are_templates_not_raw_paths(path, route):
    assert route_of(path) == route
