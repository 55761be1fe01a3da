"""The tier markers are enforced: a test that reaches a resource fixture without its marker fails collection.

The checks run a small suite through ``pytester`` with the same plugin (tests/tiers.py) as this one.
"""

from __future__ import annotations

import pytest
from tiers import TIER_MARKERS, resource

CONFTEST = """
import pytest
from tiers import pytest_make_collect_report, resource  # noqa: F401

@resource("slow", scope="session")
def trained():
    return "a trained model"

@resource("serving", "slow")
def server(trained):
    return "a server of " + trained

@pytest.fixture
def cheap():
    return 1

@pytest.fixture
def through_cheap(cheap, trained):
    return trained
"""

INI = "[pytest]\nmarkers =\n" + "".join(f"    {m}: tier\n" for m in TIER_MARKERS)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # With CI set (as .ci/run sets it) pytest prints every summary line in full, repeating the messages
    # the checks below count: the inner suite runs as on a developer's terminal, wherever this one runs.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def test_an_unmarked_test_using_a_resource_fixture_fails_collection_naming_test_fixture_and_marker(suite):
    suite.makepyfile(
        test_unmarked="""
        import pytest

        def test_direct(trained):
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_through_another_fixture(through_cheap, n):
            pass

        def test_fine(cheap):
            pass
        """
    )
    result = suite.runpytest("-m", "not slow")  # deselecting does not hide the mistake
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_unmarked.py*",
            "test_unmarked.py::test_direct: uses fixture 'trained', which needs the marker 'slow'; add *.slow *",
            "test_unmarked.py::test_through_another_fixture: uses fixture 'trained', which needs the marker 'slow'*",
        ]
    )
    assert "test_fine" not in result.stdout.str() and result.stdout.str().count("test_through_another_fixture:") == 1


def test_every_marker_a_fixture_declares_is_required(suite):
    suite.makepyfile(
        test_half="""
        import pytest

        @pytest.mark.slow
        def test_only_slow(server):
            pass
        """
    )
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*test_only_slow: uses fixture 'server', which needs the marker 'serving'*"])


def test_marked_tests_are_collected_and_run_and_the_tier_filter_deselects_them(suite):
    suite.makepyfile(
        test_marked="""
        import pytest

        pytestmark = pytest.mark.slow

        def test_module_marker(trained):
            assert trained == "a trained model"

        @pytest.mark.serving
        def test_both(server):
            assert server.startswith("a server")

        class TestInAClass:
            def test_method(self, through_cheap):
                pass
        """,
        test_fast="""
        def test_cheap(cheap):
            assert cheap == 1
        """,
    )
    suite.runpytest().assert_outcomes(passed=4)
    fast = suite.runpytest("-m", "not local and not serving and not integration and not slow")
    fast.assert_outcomes(passed=1, deselected=3)


def test_an_override_that_does_not_reach_the_resource_needs_no_marker(suite):
    suite.makepyfile(
        test_override="""
        import pytest

        @pytest.fixture
        def trained():
            return "a stand-in"

        def test_uses_the_override(trained):
            assert trained == "a stand-in"
        """,
        test_extends="""
        import pytest

        @pytest.fixture
        def trained(trained):
            return trained + ", extended"

        def test_uses_the_extension(trained):
            pass
        """,
    )
    result = suite.runpytest("--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_extends.py::test_uses_the_extension: uses fixture 'trained'*'slow'*"])


@pytest.mark.parametrize("markers", [(), ("fast",), ("slow", "gpu")])
def test_resource_takes_tier_markers_only(markers):
    with pytest.raises(ValueError, match="tier markers"):
        resource(*markers)


@pytest.mark.parametrize(
    ("args", "logs"),
    [
        (("run", "train_and_deploy", "--local", "--output", "/o"), "/o/logs"),
        (("run", "train_and_deploy", "--local", "--output", "o"), "/cwd/o/logs"),
        (("run", "drift_check", "--local"), "/cwd/shipyard-output/logs"),
        (("run", "train_and_deploy", "--host", "http://kfp", "--output", "/o"), None),
        (("compile", "--output", "/o"), None),
        ((), None),
    ],
)
def test_the_cli_fixture_knows_where_a_local_run_writes_its_logs(args, logs):
    from pathlib import Path

    from conftest import _run_logs

    assert _run_logs(args, Path("/cwd")) == (Path(logs) if logs else None)


@pytest.mark.local
def test_the_cli_fixture_fails_a_test_that_starts_a_kfp_local_run(cli, tmp_path):
    """``cli`` is for everything but pipeline runs; a command that starts kfp.local is ``local_cli``'s."""
    with pytest.raises(pytest.fail.Exception, match="started a kfp.local run .*use the local_cli fixture"):
        cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", "data=/no/such/file.csv")
