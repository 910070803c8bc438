"""prune keeps the N newest of each kind and never the newest verified pre_deploy snapshot."""

from __future__ import annotations

from conftest import HelperEnv


def test_prune_keeps_newest_of_each_kind_and_the_newest_verified_pre_deploy(helper_env: HelperEnv) -> None:
    verified = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    newer_pre = [helper_env.run_json("snapshot", "--kind", "pre_deploy") for _ in range(2)]
    manual = [helper_env.run_json("snapshot", "--kind", "manual") for _ in range(2)]

    dry = helper_env.run_json("prune", "--keep", "1", "--dry-run")
    assert sorted(dry["removed"]) == sorted([newer_pre[0]["id"], manual[0]["id"]])
    assert len(helper_env.run_json("list")) == 5

    helper_env.run_json("prune", "--keep", "1")

    remaining = {s["id"] for s in helper_env.run_json("list")}
    assert remaining == {verified["id"], newer_pre[1]["id"], manual[1]["id"]}


def test_prune_refuses_keep_zero(helper_env: HelperEnv) -> None:
    result = helper_env.run("prune", "--keep", "0")
    assert result.returncode == 2 and "--keep" in result.stderr
