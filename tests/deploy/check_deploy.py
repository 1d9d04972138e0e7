"""Checks the deploy files against the binaries they configure (the images themselves are not
built here: no container registry is reachable). The gateway's environment in the Kubernetes
StatefulSet and in docker-compose is validated by `inlet check-config`, the compose
inlet-batch settings by `inlet-batch`; probes, ports, volumes, user and shutdown budget must
agree with what the gateway does.
Usage: python check_deploy.py DEPLOY_DIR INLET_BIN INLET_BATCH_BIN (needs PyYAML)."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

deploy, inlet, batch = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def check_config(env, where):
    """Runs `inlet check-config` with exactly this environment; returns its output."""
    result = subprocess.run([inlet, "check-config"], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
    check(result.returncode == 0, f"{where}: inlet check-config refused the environment: {result.stderr.strip()}")
    return result.stdout


def seconds(output, key):
    match = re.search(rf"{key}: (\d+)", output)
    return int(match.group(1)) if match else 0


# Kubernetes
docs = [d for f in sorted((deploy / "kubernetes").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
kinds = {d["kind"]: d for d in docs}
statefulset, secret = kinds["StatefulSet"], kinds["Secret"]
pod = statefulset["spec"]["template"]
[container] = pod["spec"]["containers"]
env = {}
for var in container["env"]:
    if "value" in var:
        env[var["name"]] = var["value"]
    else:
        ref = var["valueFrom"]["secretKeyRef"]
        check(ref["name"] == secret["metadata"]["name"], f"{var['name']} refers to an unknown secret")
        env[var["name"]] = secret["stringData"][ref["key"]]
output = check_config(env, "kubernetes")
port = int(env["INLET_SERVER__LISTEN"].rsplit(":", 1)[1])
named = {p["name"]: p["containerPort"] for p in container["ports"]}
check(named.get("http") == port, f"container port {named} is not the listen port {port}")
check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe is not /readyz")
check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe is not /healthz")
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
claims = [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]]
check(mounts.get(claims[0]) == env["INLET_DATA_DIR"], f"the persistent volume {mounts} is not the data dir {env['INLET_DATA_DIR']}")
budget = seconds(output, "shutdown_grace_secs") + seconds(output, "shutdown_flush_secs")
pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
check(pod["spec"]["terminationGracePeriodSeconds"] >= budget + pre_stop, f"terminationGracePeriodSeconds below {budget + pre_stop}")
annotations = pod["metadata"]["annotations"]
check(annotations["prometheus.io/path"] == "/metrics" and int(annotations["prometheus.io/port"]) == port, "scrape annotations")
check(pod["spec"]["securityContext"]["runAsUser"] == 10001 and pod["spec"]["securityContext"]["runAsNonRoot"], "not the image's non-root user")
monitor = kinds["ServiceMonitor"]
scraped = [d for d in docs if d["kind"] == "Service" and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"].get("labels", {}).items()]
check(len(scraped) == 1 and scraped[0]["spec"].get("clusterIP") == "None", "the ServiceMonitor should select exactly the headless Service")

# docker-compose
compose = yaml.safe_load((deploy / "docker-compose.yml").read_text())
service = compose["services"]["inlet"]
compose_env = {k: str(v) for k, v in service["environment"].items() if k.startswith("INLET_")}
output = check_config(compose_env, "docker-compose")
grace = int(re.match(r"(\d+)s", service["stop_grace_period"]).group(1))
check(grace >= seconds(output, "shutdown_grace_secs") + seconds(output, "shutdown_flush_secs"), "compose stop_grace_period too short")
airflow = compose["services"]["airflow"]["environment"]
batch_env = {k: str(v) for k, v in airflow.items() if k.startswith("INLET_BATCH_")}
batch_env["INLET_BATCH_CONFIG"] = str(deploy / "compose" / "inlet-batch.toml")
result = subprocess.run([batch, "steps"], env={"PATH": "/usr/bin:/bin", **batch_env}, capture_output=True, text=True)
check(result.returncode == 0, f"docker-compose: inlet-batch refused its configuration: {result.stderr.strip()}")
for name, svc in compose["services"].items():
    for volume in svc.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            check((deploy / source).exists(), f"compose service {name} mounts missing {source}")

# Dockerfile
dockerfile = (deploy / "Dockerfile").read_text()
check("USER 10001:10001" in dockerfile, "runtime image does not run as uid 10001")
check(re.search(r"^FROM \S+ AS build$", dockerfile, re.M) and "AS runtime" in dockerfile, "not a multi-stage build")
for copied in re.findall(r"^COPY (deploy/\S+)", dockerfile, re.M):
    check((deploy.parent / copied).exists(), f"Dockerfile copies missing {copied}")

if problems:
    sys.exit("deploy files:\n  " + "\n  ".join(problems))
print("deploy files: the StatefulSet's and compose's gateway settings pass `inlet check-config`; probes, ports, volume, user, shutdown budget and scraping agree")
