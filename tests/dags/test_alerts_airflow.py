"""A task that fails for good sends exactly one message to TRAJ_ALERT_WEBHOOK: real task runs
(`dag.test()`) of a DAG with the trajectory default args, a local HTTP receiver as the webhook.

A retried task is announced once, after its last try (not once per try); an error the retry
policy fails at once (ConfigError) is announced once too; a task that succeeds sends nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_receiver import Receiver, serve

pytestmark = [pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"

PROBE_DAG = '''
from datetime import timedelta

from airflow.sdk import dag, task
from trajectory_common.defaults import DAG_KWARGS


@dag(dag_id="alerts_probe", schedule=None, **DAG_KWARGS)
def alerts_probe():
    @task(retries=1, retry_delay=timedelta(seconds=0), retry_exponential_backoff=False)
    def flaky():
        raise RuntimeError("the machine is on fire")

    @task
    def bad_config():
        from trajectory.exceptions import ConfigError

        raise ConfigError("no such model")

    @task
    def fine():
        return 1

    flaky()
    bad_config()
    fine()


alerts_probe()
'''


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with serve() as server:
        monkeypatch.setenv("TRAJ_ALERT_WEBHOOK", server.url)
        yield server


def test_a_failing_task_sends_one_message_after_its_retries(
    airflow_db: Path, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    monkeypatch.syspath_prepend(str(DAGS))  # trajectory_common, as in the dags folder

    folder = tmp_path / "probe_dags"
    folder.mkdir()
    (folder / "alerts_probe.py").write_text(textwrap.dedent(PROBE_DAG))
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
    assert bag.import_errors == {}
    sync_bag_to_db(bag, "dags-folder", None)  # serialized, as the dag-processor would
    run = bag.dags["alerts_probe"].test()

    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert {t: str(ti.state) for t, ti in tis.items()} == {
        "flaky": "failed", "bad_config": "failed", "fine": "success"}
    assert tis["flaky"].try_number == 2 and tis["bad_config"].try_number == 1
    texts = sorted(body["text"] for body in receiver.bodies)
    assert len(texts) == 2, texts  # one per failed task: none per retry, none for success
    assert all(set(body) == {"text"} for body in receiver.bodies)
    flaky, bad = (t for t in texts if "alerts_probe.flaky" in t), (
        t for t in texts if "alerts_probe.bad_config" in t)
    flaky_text, bad_text = next(flaky), next(bad)
    assert flaky_text.startswith("[trajectory] task_failed: alerts_probe.flaky failed")
    assert "RuntimeError: the machine is on fire" in flaky_text and "try: 2" in flaky_text
    assert "ConfigError: no such model" in bad_text and "try: 1" in bad_text
    assert f"run: {run.run_id}" in flaky_text
