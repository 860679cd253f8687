#!/usr/bin/env python3
"""Offline checks of deploy/: the Kustomize overlays and the systemd units.

Run by scripts/validate-deploy.sh with the venv that scripts/setup.sh makes (kubernetes-validate,
pinned, ships the Kubernetes JSON schemas, so nothing is downloaded).

Kubernetes: every overlay under deploy/k8s/overlays is rendered (by `kubectl kustomize` or
`kustomize build` when present, else by the small renderer below, which knows only the features
our manifests use and refuses others), every object is validated strictly against the schemas,
and then what a schema cannot see is checked: probes hit /healthz and /readyz on ports the
offsite configuration of that container really opens, every declared container port is one the
process opens, Services and PodDisruptionBudgets select pods and name their ports, referenced
Secrets and ConfigMaps exist with the keys used, every container is non-root on a read-only root
file system with requests and limits. When kubectl is present its rendering is also compared with
the Python renderer's, so the fallback cannot drift unnoticed.

systemd: every unit is checked structurally (sandboxing, restart, the offsite subcommand) and,
where `systemd-analyze` exists, with `systemd-analyze verify` (unknown keys count as errors).

Exit status 0 when everything passes; 1 with one line per problem otherwise.
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

K8S_VERSION = "1.37.0"
TIERS = {"up", "broker", "ingest", "analytics", "portal"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass"}

problems = []


def problem(msg):
    problems.append(msg)


# --------------------------------------------------------------------------------------------
# A small Kustomize renderer: resources, namespace, labels (pairs, includeTemplates), patches
# (strategic merge from a file or inline, optional target by kind/name, `$patch: delete`).


class Unsupported(Exception):
    pass


KNOWN_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "patches"}


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(directory):
    kfile = os.path.join(directory, "kustomization.yaml")
    with open(kfile, encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - KNOWN_KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{kfile}: the Python renderer does not support {sorted(unknown)}; install kubectl")
    objects = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(directory, r))
        if os.path.isdir(p):
            objects.extend(render(p))
        else:
            objects.extend(load_docs(p))
    for entry in k.get("patches", []):
        if "path" in entry:
            patches = load_docs(os.path.join(directory, entry["path"]))
        elif "patch" in entry:
            patches = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
        else:
            raise Unsupported(f"{kfile}: a patch without path or patch")
        for patch in patches:
            if isinstance(patch, list):
                raise Unsupported(f"{kfile}: JSON 6902 patches are not supported by the Python renderer")
            target = entry.get("target") or {}
            kind = target.get("kind", patch.get("kind"))
            name = target.get("name", patch.get("metadata", {}).get("name"))
            matches = [o for o in objects if o.get("kind") == kind and o["metadata"].get("name") == name]
            if not matches:
                raise ValueError(f"{kfile}: patch target {kind}/{name} matches no resource")
            for o in matches:
                if patch.get("$patch") == "delete":
                    objects.remove(o)
                else:
                    merged = strategic_merge(o, {k2: v for k2, v in patch.items() if k2 != "$patch"})
                    objects[objects.index(o)] = merged
    for lab in k.get("labels", []):
        if lab.get("includeSelectors"):
            raise Unsupported(f"{kfile}: labels.includeSelectors is not supported by the Python renderer")
        for o in objects:
            o.setdefault("metadata", {}).setdefault("labels", {}).update(lab["pairs"])
            if lab.get("includeTemplates") and o.get("kind") in WORKLOADS:
                tmpl = o.setdefault("spec", {}).setdefault("template", {})
                tmpl.setdefault("metadata", {}).setdefault("labels", {}).update(lab["pairs"])
    if "namespace" in k:
        for o in objects:
            if o.get("kind") not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objects


def merge_key(items):
    for key in ("name", "mountPath", "containerPort", "port"):
        if all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def strategic_merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = merge_key(base + patch)
        if key is None:
            return copy.deepcopy(patch)
        # As Kustomize orders them: the patch's new items first, then the base's (merged).
        out = copy.deepcopy(base)
        added = []
        for item in patch:
            same = [i for i, b in enumerate(out) if b[key] == item[key]]
            if same:
                out[same[0]] = strategic_merge(out[same[0]], item)
            else:
                added.append(copy.deepcopy(item))
        return added + out
    return copy.deepcopy(patch)


# --no-tools: behave as on a machine without kubectl, kustomize and systemd-analyze.
NO_TOOLS = False


def have(tool):
    return not NO_TOOLS and shutil.which(tool) is not None


def render_with_tool(directory):
    if have("kubectl"):
        cmd = ["kubectl", "kustomize", directory]
    elif have("kustomize"):
        cmd = ["kustomize", "build", directory]
    else:
        return None
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"{' '.join(cmd)} failed: {out.stderr.strip()[:500]}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def key_of(o):
    return (o.get("kind"), o.get("metadata", {}).get("namespace"), o.get("metadata", {}).get("name"))


# --------------------------------------------------------------------------------------------
# What a schema cannot see.


def parse_port(addr):
    """Port of a listen address ("0.0.0.0:9100", "[::]:8443"); None for "off"/unset."""
    if not addr or str(addr).strip() in ("off", "none", ""):
        return None
    m = re.search(r":(\d+)$", str(addr))
    return int(m.group(1)) if m else None


def effective_config(toml_text, env):
    cfg = tomllib.loads(toml_text)
    for name, value in env.items():
        if not name.startswith("OFFSITE_") or "__" not in name:
            continue
        path = name[len("OFFSITE_"):].lower().split("__")
        node = cfg
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return cfg


def opened_ports(tier, cfg):
    """{port: what} that `offsite <tier>` listens on with this configuration."""
    ports = {}
    get = lambda sec, key: (cfg.get(sec) or {}).get(key)
    def add(sec, key, what):
        p = parse_port(get(sec, key))
        if p:
            ports[p] = what
    if tier in ("broker", "up"):
        add("broker", "tls_listen", "mqtts")
        add("broker", "plain_listen", "mqtt")
    if tier in ("portal", "up"):
        add("portal", "listen", "http")
        add("portal", "https_listen", "https")
    if tier in ("ingest", "up") and str(get("hj212", "enabled")).lower() != "false":
        add("hj212", "listen", "hj212")
    if tier in ("broker", "ingest", "analytics"):
        add("ops", "listen", "ops")
    return ports


def check_objects(label, objects):
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"]: o for o in by_kind.get("Secret", [])}
    workloads = [o for o in objects if o["kind"] in WORKLOADS]

    def secret_has(name, key):
        s = secrets.get(name)
        return s is not None and key in {**(s.get("data") or {}), **(s.get("stringData") or {})}

    pod_ports = []  # (labels, {name: port}, {port})
    for w in workloads:
        wname = f"{label}: {w['kind']}/{w['metadata']['name']}"
        spec = w["spec"]["template"]["spec"]
        psc = spec.get("securityContext") or {}
        if not psc.get("runAsNonRoot"):
            problem(f"{wname}: pod securityContext.runAsNonRoot is not true")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problem(f"{wname}: volume {v['name']} names a missing ConfigMap {v['configMap']['name']}")
            if "secret" in v:
                for item in v["secret"].get("items", []):
                    if not secret_has(v["secret"]["secretName"], item["key"]):
                        problem(f"{wname}: volume {v['name']} needs key {item['key']} of Secret {v['secret']['secretName']}")
                if v["secret"]["secretName"] not in secrets:
                    problem(f"{wname}: volume {v['name']} names a missing Secret {v['secret']['secretName']}")
            for src in (v.get("projected") or {}).get("sources", []):
                s = src.get("secret")
                if s:
                    for item in s.get("items", []):
                        if not secret_has(s["name"], item["key"]):
                            problem(f"{wname}: volume {v['name']} needs key {item['key']} of Secret {s['name']}")
        names, numbers = {}, set()
        for c in spec["containers"]:
            cname = f"{wname} container {c['name']}"
            sc = c.get("securityContext") or {}
            if not sc.get("readOnlyRootFilesystem"):
                problem(f"{cname}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(f"{cname}: allowPrivilegeEscalation is not false")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (res.get(part) or {}):
                        problem(f"{cname}: resources.{part}.{what} missing")
            env = {}
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not secret_has(ref["name"], ref["key"]):
                    problem(f"{cname}: env {e['name']} needs key {ref['key']} of Secret {ref['name']}")
            args = c.get("args") or []
            tier = args[0] if args else None
            if tier not in TIERS:
                problem(f"{cname}: args must start with an offsite tier ({sorted(TIERS)}), not {tier!r}")
                continue
            # The configuration file the process reads: OFFSITE_CONFIG inside a ConfigMap mount.
            conf_path = env.get("OFFSITE_CONFIG")
            toml_text = None
            for m in c.get("volumeMounts", []):
                v = volumes.get(m["name"]) or {}
                if conf_path and "configMap" in v and conf_path.startswith(m["mountPath"].rstrip("/") + "/"):
                    key = conf_path[len(m["mountPath"].rstrip("/")) + 1:]
                    toml_text = (configmaps.get(v["configMap"]["name"], {}).get("data") or {}).get(key)
            if toml_text is None:
                problem(f"{cname}: OFFSITE_CONFIG does not name a file of a mounted ConfigMap")
                continue
            try:
                cfg = effective_config(toml_text, env)
            except tomllib.TOMLDecodeError as e:
                problem(f"{cname}: the configuration is not valid TOML: {e}")
                continue
            opened = opened_ports(tier, cfg)
            declared = {}
            for p in c.get("ports", []):
                declared[p.get("name")] = p["containerPort"]
                numbers.add(p["containerPort"])
                if p["containerPort"] not in opened:
                    problem(f"{cname}: declares port {p['containerPort']} but `offsite {tier}` with this "
                            f"configuration opens only {sorted(opened)}")
            names.update({k: v for k, v in declared.items() if k})
            for probe_kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                probe = c.get(probe_kind)
                if not probe or "httpGet" not in probe:
                    problem(f"{cname}: {probe_kind} must be an httpGet of {path}")
                    continue
                hg = probe["httpGet"]
                if hg.get("path") != path:
                    problem(f"{cname}: {probe_kind} path is {hg.get('path')!r}, expected {path}")
                port = hg.get("port")
                port = declared.get(port) if isinstance(port, str) else port
                if port is None or port not in opened:
                    problem(f"{cname}: {probe_kind} port {hg.get('port')!r} is not a port `offsite {tier}` "
                            f"opens with this configuration ({sorted(opened)})")
                    continue
                if opened[port] not in ("ops", "http", "https"):
                    problem(f"{cname}: {probe_kind} port {port} is the {opened[port]} listener, which serves no HTTP")
                want = "HTTPS" if opened[port] == "https" else "HTTP"
                if hg.get("scheme", "HTTP") != want:
                    problem(f"{cname}: {probe_kind} on port {port} must use scheme {want}")
        pod_ports.append((w["spec"]["template"]["metadata"].get("labels") or {}, names, numbers, wname))

    def selected(selector):
        return [p for p in pod_ports if selector and all(p[0].get(k) == v for k, v in selector.items())]

    for s in by_kind.get("Service", []):
        sname = f"{label}: Service/{s['metadata']['name']}"
        pods = selected(s["spec"].get("selector") or {})
        if not pods:
            problem(f"{sname}: its selector matches no pod template")
            continue
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            for labels, names, numbers, wname in pods:
                if (isinstance(tp, str) and tp not in names) or (isinstance(tp, int) and tp not in numbers):
                    problem(f"{sname}: targetPort {tp!r} is not a port of {wname}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selected((pdb["spec"].get("selector") or {}).get("matchLabels") or {}):
            problem(f"{label}: PodDisruptionBudget/{pdb['metadata']['name']}: its selector matches no pod template")
    for ing in by_kind.get("Ingress", []):
        services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
        for rule in ing["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                svc = path["backend"]["service"]
                target = services.get(svc["name"])
                if target is None:
                    problem(f"{label}: Ingress/{ing['metadata']['name']} names a missing Service {svc['name']}")
                elif svc["port"].get("name") and svc["port"]["name"] not in [p.get("name") for p in target["spec"]["ports"]]:
                    problem(f"{label}: Ingress/{ing['metadata']['name']} names a missing port {svc['port']['name']} of {svc['name']}")


def check_k8s(root):
    import kubernetes_validate
    overlays = os.path.join(root, "k8s", "overlays")
    names = sorted(os.listdir(overlays))
    if not names:
        problem("no overlays under deploy/k8s/overlays")
    for name in ["../base"] + names:
        label = "base" if name == "../base" else f"overlay {name}"
        directory = os.path.normpath(os.path.join(overlays, name))
        try:
            rendered = render(directory)
        except (Unsupported, ValueError, OSError, yaml.YAMLError) as e:
            problem(f"{label}: rendering failed: {e}")
            continue
        try:
            by_tool = render_with_tool(directory)
        except ValueError as e:
            problem(f"{label}: {e}")
            continue
        if by_tool is not None:
            mine = {key_of(o): o for o in rendered}
            theirs = {key_of(o): o for o in by_tool}
            if set(mine) != set(theirs):
                problem(f"{label}: the Python renderer and kubectl disagree on the objects: "
                        f"only Python {sorted(set(mine) - set(theirs), key=str)}, only kubectl {sorted(set(theirs) - set(mine), key=str)}")
            else:
                for k2 in mine:
                    if mine[k2] != theirs[k2]:
                        problem(f"{label}: the Python renderer and kubectl render {k2} differently")
            rendered = by_tool
        for o in rendered:
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                problem(f"{label}: {o.get('kind')}/{o.get('metadata', {}).get('name')}: {where}: {e.message}")
            except Exception as e:  # unknown kind, bad apiVersion, not a mapping
                problem(f"{label}: {o.get('kind') if isinstance(o, dict) else o!r}: {type(e).__name__}: {e}")
        check_objects(label, rendered)
        print(f"validate-deploy: {label}: {len(rendered)} objects rendered and checked", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# systemd units.

REQUIRED_SERVICE = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "Restart": "always",
}


def parse_unit(path):
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            if current is None or "=" not in line:
                raise ValueError(f"{path}:{n}: not a key=value line in a section: {line!r}")
            k, v = line.split("=", 1)
            current.setdefault(k.strip(), []).append(v.strip())
    return sections


def check_systemd(root):
    d = os.path.join(root, "systemd")
    units = sorted(f for f in os.listdir(d) if f.endswith(".service"))
    if not units:
        problem("no systemd units under deploy/systemd")
    for u in units:
        path = os.path.join(d, u)
        try:
            s = parse_unit(path)
        except ValueError as e:
            problem(str(e))
            continue
        svc = s.get("Service", {})
        for k, v in REQUIRED_SERVICE.items():
            if v not in svc.get(k, []):
                problem(f"systemd {u}: [Service] needs {k}={v}")
        if not any("/var/lib/offsite" in v for v in svc.get("ReadWritePaths", [])):
            problem(f"systemd {u}: [Service] needs ReadWritePaths=/var/lib/offsite (ProtectSystem=strict)")
        if not svc.get("EnvironmentFile"):
            problem(f"systemd {u}: [Service] needs an EnvironmentFile for secrets")
        if "Install" not in s:
            problem(f"systemd {u}: no [Install] section")
        execs = svc.get("ExecStart", [])
        if len(execs) != 1 or len(execs[0].split()) < 2 or execs[0].split()[1] not in TIERS:
            problem(f"systemd {u}: ExecStart must be `offsite <tier>` with a tier of {sorted(TIERS)}: {execs}")
        elif not execs[0].split()[0].startswith("/"):
            problem(f"systemd {u}: ExecStart needs an absolute path")
        elif execs[0].split()[1] in ("broker", "up"):
            limit = (svc.get("LimitNOFILE") or ["0"])[-1]
            if not limit.isdigit() or int(limit) < 65536:
                problem(f"systemd {u}: the broker needs LimitNOFILE >= 65536 (three descriptors per device: device, front relay, rumqttd)")
    if have("systemd-analyze"):
        verify_with_systemd(d, units)
    else:
        print("validate-deploy: systemd-analyze not found; structural checks only", file=sys.stderr)


def verify_with_systemd(d, units):
    """`systemd-analyze verify` on copies whose ExecStart names a stub executable (the real binary
    is not installed where the units expect it on a build machine)."""
    with tempfile.TemporaryDirectory() as tmp:
        stub = os.path.join(tmp, "offsite")
        with open(stub, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(stub, 0o755)
        names = []
        for u in units:
            with open(os.path.join(d, u), encoding="utf-8") as f:
                text = re.sub(r"^ExecStart=(\S+)", f"ExecStart={stub}", f.read(), flags=re.M)
            with open(os.path.join(tmp, u), "w", encoding="utf-8") as f:
                f.write(text)
            names.append(os.path.join(tmp, u.replace("@.service", "@1.service")))
        env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")
        out = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], capture_output=True, text=True, env=env, cwd=tmp)
        text = (out.stdout + out.stderr).replace(tmp + "/", "")
        bad = [l for l in text.splitlines() if re.search(r"Unknown key|Unknown section|Failed to parse|not executable|Invalid|bad-setting|Missing", l)]
        if out.returncode != 0 or bad:
            for l in bad or text.splitlines() or [f"exit status {out.returncode}"]:
                problem(f"systemd-analyze verify: {l}")
        else:
            print(f"validate-deploy: systemd-analyze verify: {len(names)} units pass", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deploy_dir", help="the deploy/ directory (or a copy of it)")
    ap.add_argument("--no-tools", action="store_true",
                    help="ignore kubectl, kustomize and systemd-analyze (the Python renderer and structural checks only)")
    a = ap.parse_args()
    global NO_TOOLS
    NO_TOOLS = a.no_tools
    check_k8s(a.deploy_dir)
    check_systemd(a.deploy_dir)
    for p in problems:
        print(f"validate-deploy: FAIL {p}")
    if problems:
        print(f"validate-deploy: {len(problems)} problem(s)")
        return 1
    print("validate-deploy: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
