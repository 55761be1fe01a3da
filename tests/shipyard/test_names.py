"""Tests for shipyard.names: model names derived from the data, checked when given."""

from __future__ import annotations

import re

import pytest

from shipyard.errors import ConfigError
from shipyard.names import derive_model_name, dns1035, resolve_model_name, service_name

#: Kubernetes DNS-1035 label (the InferenceService name).
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("sklearn:diabetes", "diabetes"),
        ("sklearn:breast_cancer", "breast-cancer"),
        ("gs://b/x/Churn Export.csv", "churn-export"),
        ("/data/sales.csv.gz", "sales"),
        ("data/Q3_Orders.parquet", "q3-orders"),
        ("s3://bucket/2024-churn.pq", "m-2024-churn"),
        ("./tables/features.v2.csv", "features-v2"),
        ("/data/exports/", "exports"),
        ("relative.CSV", "relative"),
        (".csv", "csv"),
        ("gs://b/" + "x" * 80 + ".csv", "x" * 63),
    ],
)
def test_derived_names(source, expected):
    name = derive_model_name(source)
    assert name == expected
    assert DNS_1035.fullmatch(name) and len(name) <= 63  # a Kubernetes name...
    assert resolve_model_name(name, "") == name  # ...and a URL path segment / MLflow name as well
    assert service_name(name) == name  # the InferenceService keeps the model's name


def test_an_empty_name_means_derived():
    assert resolve_model_name("", "sklearn:wine") == "wine"


def test_a_given_name_wins_over_the_data():
    assert resolve_model_name("Breast_Cancer.v2", "sklearn:diabetes") == "Breast_Cancer.v2"
    assert service_name("Breast_Cancer.v2") == "breast-cancer-v2"


@pytest.mark.parametrize("name", ["team/bc", "my model", "-bc", "bc?x=1", "bc#1", "é"])
def test_a_given_name_that_is_not_a_url_segment_is_a_config_error(name):
    with pytest.raises(ConfigError, match=re.escape(f"model_name {name!r}")):
        resolve_model_name(name, "sklearn:wine")


@pytest.mark.parametrize("source", ["", "   "])
def test_nothing_to_derive_from_is_a_config_error(source):
    with pytest.raises(ConfigError, match="no data source"):
        resolve_model_name("", source)


@pytest.mark.parametrize(
    ("text", "expected"), [("Breast_Cancer", "breast-cancer"), ("___", "m"), ("9" * 70, "m-" + "9" * 61)]
)
def test_dns1035(text, expected):
    assert dns1035(text) == expected
