"""Kubernetes manifests: the kustomization names files that exist and every document parses."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1] / "manifests"


def test_kustomization_resources_exist_and_parse():
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    kinds = []
    for resource in kustomization["resources"]:
        path = ROOT / resource
        assert path.is_file(), resource
        kinds += [doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert sorted(kinds) == ["ClusterRole", "ClusterServingRuntime", "RoleBinding"]


def test_generated_runtime_is_fresh():
    from serving.rollout.isvc import render_serving_runtime

    committed = yaml.safe_load((ROOT / "generated" / "cluster-serving-runtime.yaml").read_text())
    assert committed == render_serving_runtime(), "stale: run `make manifests`"
