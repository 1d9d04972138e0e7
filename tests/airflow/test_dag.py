"""Checks deploy/airflow/inlet_metrics.py with the real Airflow: it imports without errors,
its tasks follow `inlet-batch steps` (each step after the lake sensor and after the steps it
reads), and every task has retries. Run by tests/airflow/run.sh with Airflow's own Python."""
import os
import subprocess
import sys

from airflow.dag_processing.dagbag import DagBag

dags_folder, batch_bin = sys.argv[1:]
bag = DagBag(dag_folder=dags_folder)
assert not bag.import_errors, f"import errors: {bag.import_errors}"
dag = bag.get_dag("inlet_metrics")
assert dag is not None, f"no inlet_metrics DAG in {sorted(bag.dag_ids)}"

printed = subprocess.run([batch_bin, "steps"], check=True, capture_output=True, text=True).stdout
expected = {}
for line in printed.splitlines():
    name, after = line.split("after:")
    expected[name.strip()] = set() if after.strip() == "-" else {s.strip() for s in after.split(",")}

tasks = {task.task_id: task for task in dag.tasks}
listed = subprocess.run([batch_bin, "tables", "list"], check=True, capture_output=True, text=True).stdout
table_tasks = {"tables__" + line.split()[0].replace(".", "__") for line in listed.splitlines()}
assert table_tasks, "the test configuration has product tables"
for task_id in table_tasks:
    assert tasks[task_id].upstream_task_ids == {"latest_only"}, f"{task_id} after {tasks[task_id].upstream_task_ids}"
assert tasks["lake_retention"].upstream_task_ids == set(expected) | {"latest_only"}, "lake_retention after every step"
tasks = {k: v for k, v in tasks.items() if k not in table_tasks | {"latest_only", "lake_retention"}}
assert set(tasks) == set(expected) | {"lake_complete"}, f"tasks {sorted(tasks)} vs steps {sorted(expected)}"
for step, inputs in expected.items():
    upstream = set(tasks[step].upstream_task_ids)
    assert upstream == inputs | {"lake_complete"}, f"{step} runs after {sorted(upstream)}, expected {sorted(inputs)} and the sensor"
for task in dag.tasks:
    assert task.retries >= 1, f"{task.task_id} has no retries"

order = [t.task_id for t in dag.topological_sort() if t.task_id in tasks]
assert order[0] == "lake_complete", order
assert dag.max_active_runs == 1 and dag.catchup
print(f"airflow DAG: {len(table_tasks)} product table tasks after latest_only")
print(f"airflow DAG: imports cleanly; {len(expected)} steps in `inlet-batch steps` order after the lake sensor: {' → '.join(order[:3])} …")
