"""Checks the deploy files against the binaries they configure (the images themselves are not
built here: no container registry is reachable). The gateway's environment in the Kubernetes
StatefulSet and in docker-compose is validated by `inlet check-config`, the compose
inlet-batch settings by `inlet-batch`; probes, ports, volumes, user and shutdown budget must
agree with what the gateway does. The example configurations in config/ are loaded by the
binaries; every metric the alert rules in prometheus/ use is one the gateway documents.
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
admin_port = int(env["INLET_ADMIN__LISTEN"].rsplit(":", 1)[1])
check(named.get("admin") == admin_port, f"container port {named} has no admin port {admin_port}")
check(annotations["prometheus.io/path"] == "/metrics" and int(annotations["prometheus.io/port"]) == admin_port, "scrape annotations")
check(pod["spec"]["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
check(pod["spec"].get("automountServiceAccountToken") is False, "the pod mounts a service account token")
check(kinds["ServiceAccount"].get("automountServiceAccountToken") is False, "the service account hands out API tokens")
check(not container["image"].endswith(":latest") and ":" in container["image"].rsplit("/", 1)[-1], "the image tag is not pinned")
policy = kinds.get("NetworkPolicy")
check(policy is not None and policy["spec"]["podSelector"]["matchLabels"] == {"app": "inlet"}, "no NetworkPolicy for the pods")
if policy:
    admin_rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == "admin" for p in r.get("ports", []))]
    check(admin_rules and all(r.get("from") for r in admin_rules), "the admin port is open to every peer")
check(pod["spec"]["securityContext"]["runAsUser"] == 10001 and pod["spec"]["securityContext"]["runAsNonRoot"], "not the image's non-root user")
monitor = kinds["ServiceMonitor"]
scraped = [d for d in docs if d["kind"] == "Service" and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"].get("labels", {}).items()]
check(len(scraped) == 1 and scraped[0]["spec"].get("clusterIP") == "None", "the ServiceMonitor should select exactly the headless Service")
check([e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"], "the ServiceMonitor should scrape the admin port")

# docker-compose
compose_text = (deploy / "docker-compose.yml").read_text()
compose = yaml.safe_load(compose_text)
# Every secret comes from deploy/.env (deploy/compose/make-env.sh): none has a default, and
# every published port is on loopback.
for match in re.finditer(r"\$\{(\w+)(:[?-][^}]*)?\}", compose_text):
    check(match.group(2) is None or match.group(2).startswith(":?"), f"compose gives ${{{match.group(1)}}} a default")
for name, svc in compose["services"].items():
    for published in svc.get("ports", []):
        check(str(published).startswith("127.0.0.1:"), f"compose service {name} publishes {published} beyond loopback")
literal = re.search(r"(?i)password(=\S|:[ \t]+[^\s\"])", re.sub(r"\$\{[^}]*\}|\$\$\w+", "", compose_text))
check(not literal, f"a literal password in compose: {literal and literal.group(0)}")
make_env = (deploy / "compose" / "make-env.sh").read_text()
for variable in set(re.findall(r"\$\{(\w+):\?", compose_text)):
    check(f"{variable}=" in make_env, f"make-env.sh does not set {variable}")


def interpolated(value):
    """A compose value with its variables set as make-env.sh would (a stand-in value each)."""
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: f"trial_{m.group(1).lower()}", str(value))


service = compose["services"]["inlet"]
compose_env = {k: interpolated(v) for k, v in service["environment"].items() if k.startswith("INLET_")}
output = check_config(compose_env, "docker-compose")
grace = int(re.match(r"(\d+)s", service["stop_grace_period"]).group(1))
check(grace >= seconds(output, "shutdown_grace_secs") + seconds(output, "shutdown_flush_secs"), "compose stop_grace_period too short")
airflow = compose["services"]["airflow"]["environment"]
batch_env = {k: interpolated(v) for k, v in airflow.items() if k.startswith("INLET_BATCH_")}
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

# Example configurations, as a user would copy them (their secrets would come from the environment).
result = subprocess.run([inlet, "check-config", "--config", str(deploy / "config" / "inlet.toml")],
                        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
check(result.returncode == 0, f"config/inlet.toml: inlet check-config refused it: {result.stderr.strip()}")
result = subprocess.run([batch, "--config", str(deploy / "config" / "batch.toml"), "steps"],
                        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
check(result.returncode == 0, f"config/batch.toml: inlet-batch refused it: {result.stderr.strip()}")

# Alert rules: well-formed, and every inlet_* series they read is documented (histograms by their
# _bucket/_sum/_count series).
documented = set(re.findall(r"^\| `(inlet_\w+)`", (deploy.parent / "docs" / "instrumentation.md").read_text(), re.M))
rules = yaml.safe_load((deploy / "prometheus" / "alerts.yml").read_text())
alerts = [rule for group in rules["groups"] for rule in group["rules"]]
check(len(alerts) > 0, "prometheus/alerts.yml has no rules")
for rule in alerts:
    check({"alert", "expr", "annotations"} <= rule.keys(), f"alert rule {rule.get('alert')} lacks alert/expr/annotations")
    check({"summary", "action"} <= rule.get("annotations", {}).keys(), f"alert {rule.get('alert')}: summary and action expected")
    for series in re.findall(r"\binlet_\w+", rule["expr"]):
        base = re.sub(r"_(bucket|sum|count)$", "", series)
        check(series in documented or base in documented, f"alert {rule['alert']} reads {series}, which docs/instrumentation.md does not list")

if problems:
    sys.exit("deploy files:\n  " + "\n  ".join(problems))
print(f"deploy files: the StatefulSet's and compose's gateway settings pass `inlet check-config`; probes, ports, volume, user, shutdown budget and scraping agree; the example configurations load; {len(alerts)} alert rules read documented metrics")
