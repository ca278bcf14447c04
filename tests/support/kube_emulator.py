"""A strict Kubernetes API emulator for hybrid's tests: an in-memory API
server over HTTP or HTTPS that stores objects the way a real one does.

What it enforces, like a real API server:
- schemas: every write of a built-in kind is checked against the Kubernetes
  OpenAPI schema of the pinned version (PyPI kubernetes-validate, its
  strict variant); Calico's and the Tigera operator's kinds against
  tests/support/schemas/calico-3.30.json (the project's transcription of
  their CRDs, with its source). Unknown fields are errors, as with
  fieldValidation=Strict (400 "strict decoding error" on create/update,
  422 "field not declared in schema" on apply); wrong types, enums and
  missing required fields are 422 Invalid;
- defaulting: the API server's defaults for the kinds hybrid writes
  (pkg/apis/{core,apps,batch,rbac}/v1/defaults.go: containers, volumes,
  env fieldRefs, DaemonSet/Deployment/Job specs, Secret stringData, ...) and
  the CRDs' structural defaults (Installation ipPools[].disableBGPExport);
  status is not writable through the main resource (the /status
  subresource is);
- server-side apply (PATCH application/apply-patch+yaml): fieldManager
  required, merge by the schemas' list types (map lists by their keys, sets,
  atomic lists and maps), managedFields per manager in FieldsV1, conflicts
  (409) with other managers' differing fields unless force, removal of
  fields a manager stops applying when nobody else owns them, create by
  apply (201), dryRun=All without storing; a write that changes nothing
  keeps its resourceVersion;
- with --operator: the Tigera operator's write-backs (as manager
  "operator", operation Update): Installation spec defaults as
  tigera/operator fillDefaults and the IP pool defaulting fill them
  (v1.38-v1.42, which write defaults into spec), and FelixConfiguration
  healthPort/vxlanVNI/vxlanPort;
- graceful deletion: a deleted (or evicted) pod keeps deletionTimestamp for
  its grace period (scaled by --grace-scale) before it goes; a deleted
  namespace is Terminating, refuses new objects (403) and goes once its
  contents are gone;
- evictions are strictly decoded policy/v1 Evictions naming their pod, and
  honour PodDisruptionBudgets (minAvailable or maxUnavailable,
  counting Ready pods; unhealthy pods only while the budget holds);
- with --tls CA_CERT CA_KEY SERVER_IP: HTTPS with a server certificate for
  SERVER_IP signed by the cluster CA, client certificates required and
  checked against the CA, and only the groups kubeadm:cluster-admins or
  system:masters authorized (403 otherwise);
- faults on request (POST /_test/faults): 429 with Retry-After, 5xx,
  dropped responses (the write happens, the answer is lost) and slow
  answers, for the next N matching requests.

Test hooks: GET /_test/log (method, path, dry-run flag of each request),
GET /_test/writes (writing requests, dry runs excluded: what "a second
apply writes nothing" is measured by).

What it still cannot prove: controllers (no pods appear for a DaemonSet;
tests play kubelet and the Job controller), admission webhooks and
validation beyond the schema (CEL rules, immutable fields other than the
ones listed), Calico's aggregated API server's own defaulting of
projectcalico.org/v3 kinds, the exact order SSA gives merged list items,
and authentication beyond client certificates.

usage: kube_emulator.py PORT [--calico-v3] [--operator] [--kube-version 1.36]
       [--grace-scale 0.05] [--tls CA_CERT CA_KEY SERVER_IP] [--namespaces a,b]
"""
import argparse
import asyncio
import base64
import copy
import datetime
import importlib.resources
import itertools
import json
import os
import re
import ssl
import sys
import tempfile
import uuid

import aiohttp.web
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------
# Shapes: what validation, defaulting and server-side apply need to know of
# each point of an object, from either kind of schema.
# --------------------------------------------------------------------------


class Shape:
    """kind: struct | map | list-map | list-set | atomic | scalar | any."""

    __slots__ = ("kind", "fields", "values", "items", "keys", "types", "enum", "default", "required", "nullable")

    def __init__(self, kind, **kw):
        self.kind = kind
        self.fields = kw.get("fields")
        self.values = kw.get("values")
        self.items = kw.get("items")
        self.keys = kw.get("keys")
        self.types = kw.get("types")
        self.enum = kw.get("enum")
        self.default = kw.get("default", Ellipsis)
        self.required = kw.get("required") or []
        self.nullable = kw.get("nullable", True)

    def field(self, name):
        if self.kind == "struct":
            return self.fields.get(name) if callable(getattr(self.fields, "get", None)) else None
        if self.kind == "map":
            return self.values
        return None


ANY = Shape("any")


class LazyFields(dict):
    """Struct fields built on first use (the OpenAPI graph is large)."""

    def __init__(self, props, build):
        super().__init__()
        self.props = props
        self.build = build

    def get(self, k, default=None):
        if dict.__contains__(self, k):
            return dict.__getitem__(self, k)
        if k not in self.props:
            return default
        s = self.build(self.props[k])
        self[k] = s
        return s

    def __contains__(self, k):
        return k in self.props

    def items(self):
        return [(k, self.get(k)) for k in self.props]


class OpenApi:
    """Shapes from kubernetes-validate's strict JSON schemas."""

    def __init__(self, version):
        base = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}.0-local-strict"
        self.defs = json.loads((base / "_definitions.json").read_text())["$defs"]
        self.by_gvk = {}
        for name, d in self.defs.items():
            for gvk in d.get("x-kubernetes-group-version-kind", []):
                self.by_gvk[(gvk["group"], gvk["version"], gvk["kind"])] = name
        self.memo = {}

    def kind(self, group, version, kind):
        name = self.by_gvk.get((group, version, kind))
        if name is None:
            raise KeyError(f"{group}/{version} {kind} is not in the OpenAPI schemas")
        return self.ref(name)

    def ref(self, name):
        if name not in self.memo:
            self.memo[name] = Shape("any")  # placeholder for recursion
            self.memo[name] = self.build(self.defs[name])
        return self.memo[name]

    def build(self, s):
        if "$ref" in s:
            return self.ref(s["$ref"].rsplit("/", 1)[1])
        if "allOf" in s and len(s["allOf"]) == 1:
            return self.build(s["allOf"][0])
        if "oneOf" in s or "anyOf" in s or s.get("x-kubernetes-int-or-string"):
            return Shape("scalar", types={"string", "integer"})
        t = s.get("type")
        types = set(t) if isinstance(t, list) else ({t} if t else set())
        nullable = "null" in types
        types.discard("null")
        if "properties" in s:
            return Shape("struct", fields=LazyFields(s["properties"], self.build), required=s.get("required"), nullable=nullable)
        if "object" in types:
            ap = s.get("additionalProperties")
            if isinstance(ap, dict):
                kind = "atomic" if s.get("x-kubernetes-map-type") == "atomic" else "map"
                return Shape(kind, values=self.build(ap), nullable=nullable)
            return Shape("any", nullable=nullable)
        if "array" in types:
            items = self.build(s.get("items", {}))
            lt = s.get("x-kubernetes-list-type", "atomic")
            if lt == "map":
                return Shape("list-map", items=items, keys=s["x-kubernetes-list-map-keys"], nullable=nullable)
            if lt == "set":
                return Shape("list-set", items=items, nullable=nullable)
            return Shape("atomic", items=items, nullable=nullable)
        if types:
            return Shape("scalar", types=types, enum=s.get("enum"), nullable=nullable)
        return Shape("any")


def compact_shape(s):
    """Shapes from the project's compact CRD format (schemas/calico-3.30.json)."""
    t = s["type"]
    if t == "object":
        return Shape("struct", fields={k: compact_shape(v) for k, v in s["fields"].items()}, required=s.get("required"), nullable=False)
    if t == "object-any" or t == "any":
        return ANY
    if t == "map":
        return Shape("map", values=compact_shape(s["values"]))
    if t == "list":
        items = compact_shape(s["items"])
        lt = s.get("listType", "atomic")
        if lt == "map":
            return Shape("list-map", items=items, keys=s["mapKeys"])
        if lt == "set":
            return Shape("list-set", items=items)
        return Shape("atomic", items=items)
    if t == "int-or-string":
        return Shape("scalar", types={"string", "integer"})
    return Shape("scalar", types={t}, enum=s.get("enum"), default=s.get("default", Ellipsis), nullable=False)


def with_metadata(spec_shape, meta):
    """A CRD's root: its own fields plus apiVersion, kind and ObjectMeta."""
    fields = dict(spec_shape.fields)
    fields.update({"apiVersion": Shape("scalar", types={"string"}), "kind": Shape("scalar", types={"string"}), "metadata": meta})
    return Shape("struct", fields=fields)


# --------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------

BUILTIN = [
    ("", "v1", "nodes", "Node", False, True),
    ("", "v1", "pods", "Pod", True, True),
    ("", "v1", "configmaps", "ConfigMap", True, False),
    ("", "v1", "secrets", "Secret", True, False),
    ("", "v1", "namespaces", "Namespace", False, True),
    ("", "v1", "services", "Service", True, True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, False),
    ("apps", "v1", "daemonsets", "DaemonSet", True, True),
    ("apps", "v1", "deployments", "Deployment", True, True),
    ("batch", "v1", "jobs", "Job", True, True),
    ("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, False),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, True),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, False),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, False),
]


class Resource:
    def __init__(self, group, version, plural, kind, namespaced, status, shape):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.status, self.shape = namespaced, status, shape

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version


PATH = re.compile(
    r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return aiohttp.web.json_response(body, status=code)


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


# --------------------------------------------------------------------------
# Validation and defaulting
# --------------------------------------------------------------------------

SERVER_SET = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}


def type_ok(value, types):
    for t in types:
        if t == "string" and isinstance(value, str):
            return True
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t == "boolean" and isinstance(value, bool):
            return True
    return False


def unknown_fields(value, shape, path=""):
    """Field paths a strict decoder would call unknown."""
    out = []
    if shape.kind == "struct" and isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}" if path else k
            child = shape.fields.get(k)
            if child is None:
                out.append(p)
            else:
                out.extend(unknown_fields(v, child, p))
    elif shape.kind == "map" and isinstance(value, dict):
        for k, v in value.items():
            out.extend(unknown_fields(v, shape.values, f"{path}.{k}"))
    elif shape.kind in ("list-map", "list-set", "atomic") and isinstance(value, list) and shape.items is not None:
        for i, v in enumerate(value):
            out.extend(unknown_fields(v, shape.items, f"{path}[{i}]"))
    return out


def invalid_values(value, shape, path=""):
    """Type, enum and required errors, as `path: reason` strings."""
    out = []
    if value is None:
        return [] if shape.nullable or shape.kind == "any" else [f"{path}: Invalid value: null"]
    if shape.kind == "struct":
        if not isinstance(value, dict):
            return [f"{path}: Invalid value: must be an object"]
        for r in shape.required:
            if r not in value:
                out.append(f"{path + '.' if path else ''}{r}: Required value")
        for k, v in value.items():
            child = shape.fields.get(k)
            if child is not None:
                out.extend(invalid_values(v, child, f"{path}.{k}" if path else k))
    elif shape.kind == "map" or (shape.kind == "atomic" and shape.values is not None):
        if not isinstance(value, dict):
            return [f"{path}: Invalid value: must be a map"]
        for k, v in value.items():
            out.extend(invalid_values(v, shape.values, f"{path}.{k}"))
    elif shape.kind in ("list-map", "list-set", "atomic"):
        if not isinstance(value, list):
            return [f"{path}: Invalid value: must be a list"]
        for i, v in enumerate(value):
            if shape.items is not None:
                out.extend(invalid_values(v, shape.items, f"{path}[{i}]"))
        if shape.kind == "list-map":
            seen = set()
            for i, v in enumerate(value):
                key = item_key(v, shape.keys)
                if key in seen:
                    out.append(f"{path}[{i}]: Duplicate value: {key}")
                seen.add(key)
    elif shape.kind == "scalar":
        if not type_ok(value, shape.types):
            out.append(f"{path}: Invalid value: {json.dumps(value)}: must be {' or '.join(sorted(shape.types))}")
        elif shape.enum and value not in shape.enum:
            out.append(f"{path}: Unsupported value: {json.dumps(value)}: supported values: {', '.join(json.dumps(e) for e in shape.enum)}")
    return out


def structural_defaults(value, shape):
    """CRD defaults: a field with `default` is filled in when its parent object exists."""
    if shape.kind == "struct" and isinstance(value, dict):
        for k, child in shape.fields.items():
            if k not in value and child.default is not Ellipsis:
                value[k] = copy.deepcopy(child.default)
            if k in value:
                structural_defaults(value[k], child)
    elif shape.kind in ("list-map", "list-set", "atomic") and isinstance(value, list) and shape.items is not None:
        for v in value:
            structural_defaults(v, shape.items)


def image_pull_policy(image):
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        tag = last.split("@", 1)[0].partition(":")[2]
        return "Always" if tag == "latest" else "IfNotPresent"
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_container(c):
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", image_pull_policy(c.get("image", "")))
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("fieldRef")
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            for k, v in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
                pr.setdefault(k, v)
            if isinstance(pr.get("httpGet"), dict):
                pr["httpGet"].setdefault("path", "/")
                pr["httpGet"].setdefault("scheme", "HTTP")


def default_pod_spec(s):
    s.setdefault("restartPolicy", "Always")
    s.setdefault("terminationGracePeriodSeconds", 30)
    s.setdefault("dnsPolicy", "ClusterFirst")
    s.setdefault("securityContext", {})
    s.setdefault("schedulerName", "default-scheduler")
    for c in (s.get("containers") or []) + (s.get("initContainers") or []):
        default_container(c)
    for v in s.get("volumes") or []:
        for src in ("configMap", "secret", "projected", "downwardAPI"):
            if isinstance(v.get(src), dict):
                v[src].setdefault("defaultMode", 420)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")
        if not any(k != "name" for k in v):
            v["emptyDir"] = {}


def apply_defaults(res, obj):
    """What pkg/apis/*/v1/defaults.go (and create strategies) fill in."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    k = res.kind
    if k == "DaemonSet" and spec is not None:
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif k == "Deployment" and spec is not None:
        spec.setdefault("replicas", 1)
        st = spec.setdefault("strategy", {})
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif k == "Job" and spec is not None:
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("manualSelector", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif k == "Pod" and spec is not None:
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
    elif k == "Service" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif k == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for key, v in string_data.items():
            data[key] = base64.b64encode(v.encode()).decode()
        if not data:
            obj.pop("data")
    elif k in ("ClusterRoleBinding", "RoleBinding"):
        obj.setdefault("roleRef", {}).setdefault("apiGroup", "rbac.authorization.k8s.io")
        for s in obj.get("subjects") or []:
            s.setdefault("apiGroup", "" if s.get("kind") == "ServiceAccount" else "rbac.authorization.k8s.io")
    elif k == "Namespace":
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    structural_defaults(obj, res.shape)


# --------------------------------------------------------------------------
# Server-side apply: field sets, merging, ownership
# --------------------------------------------------------------------------


def item_key(item, keys):
    if not isinstance(item, dict):
        return json.dumps(item, sort_keys=True)
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys)}, separators=(",", ":"))


def set_key(item):
    return "v:" + json.dumps(item, separators=(",", ":"), sort_keys=True)


def field_set(value, shape, prefix=()):
    """Every path `value` sets: leaves, atomic values, and list items."""
    out = set()
    if shape.kind == "struct" and isinstance(value, dict):
        if not value and prefix:
            out.add(prefix)
        for k, v in value.items():
            if not prefix and k in ("apiVersion", "kind", "status"):
                continue
            if prefix == ("f:metadata",) and k in SERVER_SET | {"name", "namespace", "generateName"}:
                continue
            child = shape.fields.get(k)
            p = prefix + (f"f:{k}",)
            if child is None or v is None or v == {}:
                out.add(p)
            else:
                # A struct whose only fields are server-set (metadata with just
                # a name) sets nothing itself.
                out |= field_set(v, child, p)
    elif shape.kind == "map" and isinstance(value, dict):
        if not value:
            out.add(prefix)
        for k, v in value.items():
            p = prefix + (f"f:{k}",)
            out |= field_set(v, shape.values, p) if isinstance(v, (dict, list)) and v else {p}
    elif shape.kind == "list-map" and isinstance(value, list):
        for item in value:
            p = prefix + (item_key(item, shape.keys),)
            out.add(p + (".",))
            out |= field_set(item, shape.items, p)
    elif shape.kind == "list-set" and isinstance(value, list):
        for item in value:
            out.add(prefix + (set_key(item),))
    else:
        out.add(prefix)
    return out


def get_path(obj, path):
    cur = obj
    for e in path:
        if e == ".":
            continue
        if e.startswith("f:"):
            if not isinstance(cur, dict) or e[2:] not in cur:
                return Ellipsis
            cur = cur[e[2:]]
        elif e.startswith("k:"):
            keys = json.loads(e[2:])
            if not isinstance(cur, list):
                return Ellipsis
            found = [i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in keys.items())]
            if not found:
                return Ellipsis
            cur = found[0]
        elif e.startswith("v:"):
            v = json.loads(e[2:])
            if not isinstance(cur, list) or v not in cur:
                return Ellipsis
            cur = v
    return cur


def delete_path(obj, path):
    *parents, last = [e for e in path if e != "."]
    holder = get_path(obj, parents) if parents else obj
    if holder is Ellipsis:
        return
    if last.startswith("f:") and isinstance(holder, dict):
        holder.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(holder, list):
        keys = json.loads(last[2:])
        holder[:] = [i for i in holder if not (isinstance(i, dict) and all(i.get(k) == v for k, v in keys.items()))]
    elif last.startswith("v:") and isinstance(holder, list):
        v = json.loads(last[2:])
        holder[:] = [i for i in holder if i != v]


def merge(current, applied, shape):
    """The applied configuration merged onto the current object."""
    if applied is None:
        return None
    if shape.kind == "struct" and isinstance(applied, dict) and isinstance(current, dict):
        out = copy.deepcopy(current)
        for k, v in applied.items():
            child = shape.fields.get(k)
            out[k] = merge(current.get(k), v, child) if child is not None and k in current else copy.deepcopy(v)
        return out
    if shape.kind == "map" and isinstance(applied, dict) and isinstance(current, dict):
        out = copy.deepcopy(current)
        for k, v in applied.items():
            out[k] = merge(current.get(k), v, shape.values) if k in current else copy.deepcopy(v)
        return out
    if shape.kind == "list-map" and isinstance(applied, list) and isinstance(current, list):
        out = copy.deepcopy(current)
        index = {item_key(i, shape.keys): n for n, i in enumerate(out)}
        for item in applied:
            key = item_key(item, shape.keys)
            if key in index:
                out[index[key]] = merge(out[index[key]], item, shape.items)
            else:
                index[key] = len(out)
                out.append(copy.deepcopy(item))
        return out
    if shape.kind == "list-set" and isinstance(applied, list) and isinstance(current, list):
        out = copy.deepcopy(current)
        for item in applied:
            if item not in out:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(applied)


def nested(paths):
    """A FieldsV1 tree from a set of paths."""
    root = {}
    for p in sorted(paths):
        cur = root
        for e in p:
            cur = cur.setdefault(e, {})
    return root


def changed_paths(old, new, shape):
    """Paths of `new` whose values differ from `old`'s (what an Update takes)."""
    return {p for p in field_set(new, shape) if get_path(old, p) != get_path(new, p)}


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class Store:
    def __init__(self):
        self.objects = {}  # (res key, ns, name) -> dict
        self.managed = {}  # same key -> {(manager, operation, subresource): {"paths": set, "apiVersion", "time"}}
        self.version = itertools.count(1)


class Emulator:
    def __init__(self, args):
        self.args = args
        self.openapi = OpenApi(args.kube_version)
        self.meta_shape = self.openapi.kind("", "v1", "ConfigMap").fields.get("metadata")
        self.resources = {}
        for group, version, plural, kind, namespaced, status in BUILTIN:
            self.add(Resource(group, version, plural, kind, namespaced, status, self.openapi.kind(group, version, kind)))
        crds = json.load(open(os.path.join(HERE, "schemas", "calico-3.30.json")))["kinds"]
        calico_group = "projectcalico.org" if args.calico_v3 else "crd.projectcalico.org"
        for key, spec in crds.items():
            group, version, plural = key.split("/")
            if group in ("crd.projectcalico.org", "projectcalico.org") and group != calico_group:
                continue
            shape = with_metadata(compact_shape(spec["schema"]), self.meta_shape)
            self.add(Resource(group, version, plural, spec["kind"], spec["namespaced"], spec.get("statusSubresource", False), shape))
        self.store = Store()
        self.log = []
        self.faults = []
        self.pending = set()

    def add(self, res):
        self.resources[(res.group, res.version, res.plural)] = res

    # ---- routing -------------------------------------------------------

    async def handle(self, request):
        path = request.path
        if path.startswith("/_test/"):
            return await self.test_hook(request)
        dry = request.query.get("dryRun") == "All"
        self.log.append((request.method, path, dry))
        fault = self.take_fault(request)
        if fault and fault["kind"] == "slow":
            await asyncio.sleep(fault.get("seconds", 2))
        if fault and fault["kind"] in ("429", "5xx"):
            code = 429 if fault["kind"] == "429" else fault.get("code", 503)
            resp = status_error(code, "TooManyRequests" if code == 429 else "ServiceUnavailable", "injected fault")
            if code == 429:
                resp.headers["Retry-After"] = str(fault.get("retry_after", 1))
            return resp
        denied = self.authorize(request)
        if denied:
            return denied
        try:
            resp = await self.route(request)
        except ApiError as e:
            resp = status_error(e.code, e.reason, e.message, e.details)
        if fault and fault["kind"] == "drop":
            # The request took effect; the answer never arrives.
            request.transport.close()
            raise ConnectionResetError("injected: response dropped")
        return resp

    def take_fault(self, request):
        for f in self.faults:
            if f["count"] > 0 and request.method in f.get("methods", [request.method]) and f.get("path", "") in request.path:
                f["count"] -= 1
                return f
        return None

    def authorize(self, request):
        if not self.args.tls:
            return None
        cert = request.transport.get_extra_info("peercert")
        groups = [v for rdn in (cert or {}).get("subject", ()) for k, v in rdn if k == "organizationName"]
        if not any(g in ("kubeadm:cluster-admins", "system:masters") for g in groups):
            user = [v for rdn in (cert or {}).get("subject", ()) for k, v in rdn if k == "commonName"]
            return status_error(403, "Forbidden", f'User "{user[0] if user else "system:anonymous"}" cannot {request.method.lower()} resource at {request.path}')
        return None

    async def test_hook(self, request):
        if request.path == "/_test/log":
            return aiohttp.web.json_response([list(e) for e in self.log])
        if request.path == "/_test/writes":
            return aiohttp.web.json_response({"writes": sum(1 for m, _, dry in self.log if m != "GET" and not dry)})
        if request.path == "/_test/faults":
            if request.method == "POST":
                self.faults.append(await request.json())
            return aiohttp.web.json_response({"faults": self.faults})
        return status_error(404, "NotFound", "no such test hook")

    async def route(self, request):
        path, method = request.path, request.method
        if path == "/version":
            return aiohttp.web.json_response({"major": "1", "minor": self.args.kube_version.split(".")[1], "gitVersion": f"v{self.args.kube_version}.0"})
        if path == "/apis":
            groups = sorted({r.group for r in self.resources.values() if r.group})
            return aiohttp.web.json_response({
                "kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted({r.version for r in self.resources.values() if r.group == g})]} for g in groups],
            })
        if path == "/api":
            return aiohttp.web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        m = PATH.match(path)
        if not m:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        group, version = ("", "v1") if m["cv"] else (m["g"], m["v"])
        res = self.resources.get((group, version, m["plural"]))
        if res is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({m['plural']})")
        ns, name, sub = m["ns"], m["name"], m["sub"]
        if res.namespaced != bool(ns) and not (res.namespaced and name is None and method == "GET"):
            raise ApiError(404, "NotFound", f"{res.plural} is {'namespaced' if res.namespaced else 'cluster-scoped'}")
        body = await request.read()
        if name is None:
            if method == "GET":
                return self.list(res, ns, request.query)
            if method == "POST":
                return self.create(res, ns, self.decode(body), request.query)
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection is not emulated")
        if sub == "eviction" and res.plural == "pods" and method == "POST":
            self.check_eviction(ns, name, self.decode(body))
            return self.evict(ns, name)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"no subresource {sub}")
        if method == "GET":
            return aiohttp.web.json_response(self.render(res, ns, name, self.get(res, ns, name)))
        if method == "DELETE":
            return self.delete(res, ns, name)
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            return self.patch(res, ns, name, sub, ctype, self.decode(body, yaml_ok=ctype == "application/apply-patch+yaml"), request.query)
        if method == "PUT":
            return self.put(res, ns, name, sub, self.decode(body), request.query)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not emulated")

    def decode(self, body, yaml_ok=False):
        if not body:
            raise ApiError(400, "BadRequest", "empty request body")
        try:
            return yaml.safe_load(body) if yaml_ok else json.loads(body)
        except Exception as e:
            raise ApiError(400, "BadRequest", f"could not decode the request body: {e}")

    # ---- objects ---------------------------------------------------------

    def key(self, res, ns, name):
        return ((res.group, res.version, res.plural), ns, name)

    def get(self, res, ns, name):
        obj = self.store.objects.get(self.key(res, ns, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found', {"name": name, "kind": res.plural})
        return obj

    def render(self, res, ns, name, obj):
        out = copy.deepcopy(obj)
        entries = self.store.managed.get(self.key(res, ns, name), {})
        if entries:
            out.setdefault("metadata", {})["managedFields"] = [
                dict({"manager": mgr, "operation": op, "apiVersion": e["apiVersion"], "time": e["time"], "fieldsType": "FieldsV1", "fieldsV1": nested(e["paths"])}, **({"subresource": sub} if sub else {}))
                for (mgr, op, sub), e in sorted(entries.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))
                if e["paths"]
            ]
        return out

    def list(self, res, ns, query):
        items = [self.render(res, k[1], k[2], o) for k, o in sorted(self.store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])) if k[0] == (res.group, res.version, res.plural) and (ns is None or k[1] == ns)]
        if query.get("labelSelector"):
            items = [o for o in items if label_match((o.get("metadata") or {}).get("labels") or {}, query["labelSelector"])]
        if query.get("fieldSelector"):
            items = [o for o in items if field_match(o, query["fieldSelector"])]
        return aiohttp.web.json_response({"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": {"resourceVersion": str(next(self.store.version))}, "items": items})

    def check_body(self, res, ns, name, obj, apply=False):
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body is not an object")
        if obj.get("apiVersion") not in (None, res.api_version) or obj.get("kind") not in (None, res.kind):
            raise ApiError(400, "BadRequest", f"the body is a {obj.get('apiVersion')} {obj.get('kind')}, not a {res.api_version} {res.kind}")
        meta = obj.get("metadata") or {}
        if apply and meta.get("managedFields") is not None:
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil")
        if name is not None and meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if res.namespaced and meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
        unknown = unknown_fields(obj, res.shape)
        if unknown:
            if apply:
                raise ApiError(422, "Invalid", "; ".join(f".{u}: field not declared in schema" for u in unknown))
            raise ApiError(400, "BadRequest", f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))

    def finish(self, res, ns, name, obj, old):
        """Defaults, validation, server-set metadata; returns the stored form."""
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = ns
        if res.status:
            # Status is written through /status only.
            if old is not None and "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            elif old is None and res.kind not in ("Node",):
                obj.pop("status", None)
        apply_defaults(res, obj)
        errors = invalid_values({k: v for k, v in obj.items() if k != "status"}, res.shape)
        if errors:
            raise ApiError(422, "Invalid", f'{res.kind} "{name}" is invalid: ' + "; ".join(errors))
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if res.kind not in ("ConfigMap", "Secret", "Namespace", "ServiceAccount", "ClusterRoleBinding", "ClusterRole", "RuntimeClass"):
                meta["generation"] = 1
            if res.kind == "DaemonSet":
                meta.setdefault("annotations", {})["deprecated.daemonset.template.generation"] = "1"
            if res.kind == "Namespace":
                obj["status"] = {"phase": "Active"}
            if res.kind == "Pod":
                obj.setdefault("status", {}).setdefault("phase", "Pending")
        else:
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in old.get("metadata", {}):
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            if res.kind == "Namespace":
                obj["spec"]["finalizers"] = old.get("spec", {}).get("finalizers", ["kubernetes"])
            if "generation" in meta and strip(obj).get("spec") != strip(old).get("spec"):
                meta["generation"] += 1
                if res.kind == "DaemonSet" and obj["spec"].get("template") != old["spec"].get("template"):
                    ann = meta.setdefault("annotations", {})
                    ann["deprecated.daemonset.template.generation"] = str(int(ann.get("deprecated.daemonset.template.generation", "1")) + 1)
        return obj

    def commit(self, res, ns, name, obj, old, managed, dry):
        """Stores `obj` (unless dry); a no-op keeps its resourceVersion."""
        key = self.key(res, ns, name)
        if old is not None and strip(obj) == strip(old) and managed == self.store.managed.get(key):
            obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return obj, False
        obj["metadata"]["resourceVersion"] = str(next(self.store.version)) if not dry else (old or {}).get("metadata", {}).get("resourceVersion", "0")
        if not dry:
            self.store.objects[key] = obj
            self.store.managed[key] = managed
            self.after_write(res, ns, name)
        return obj, True

    def refuse_in_terminating_namespace(self, res, ns):
        if ns is None:
            return
        nsobj = self.store.objects.get(self.key(self.resources[("", "v1", "namespaces")], None, ns))
        if nsobj is None and res.kind != "Namespace":
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        if nsobj is not None and nsobj.get("status", {}).get("phase") == "Terminating":
            raise ApiError(403, "Forbidden", f'{res.plural} "{""}" is forbidden: unable to create new content in namespace {ns} because it is being terminated')

    def manager_of(self, query, request_default="unknown"):
        return query.get("fieldManager") or request_default

    def create(self, res, ns, body, query):
        name = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        self.check_body(res, ns, None, body)
        self.refuse_in_terminating_namespace(res, ns)
        if self.key(res, ns, name) in self.store.objects:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists', {"name": name, "kind": res.plural})
        obj = self.finish(res, ns, name, copy.deepcopy(body), None)
        paths = field_set(body, res.shape)
        managed = {(self.manager_of(query, "hybrid-client"), "Update", None): {"paths": paths, "apiVersion": res.api_version, "time": now()}}
        obj, _ = self.commit(res, ns, name, obj, None, managed, query.get("dryRun") == "All")
        return aiohttp.web.json_response(self.render(res, ns, name, obj) if query.get("dryRun") != "All" else obj, status=201)

    def update_ownership(self, res, ns, name, old, new, manager, sub):
        managed = copy.deepcopy(self.store.managed.get(self.key(res, ns, name), {}))
        changed = changed_paths(old, new, res.shape) if sub is None else {p for p in field_set(new.get("status", {}), ANY, ("f:status",))}
        for entry in managed.values():
            entry["paths"] -= changed
        mine = managed.setdefault((manager, "Update", sub), {"paths": set(), "apiVersion": res.api_version, "time": now()})
        if changed - mine["paths"]:
            mine["time"] = now()
        mine["paths"] |= changed
        return {k: v for k, v in managed.items() if v["paths"]}

    def patch(self, res, ns, name, sub, ctype, body, query):
        dry = query.get("dryRun") == "All"
        if ctype == "application/apply-patch+yaml":
            if sub is not None:
                raise ApiError(415, "UnsupportedMediaType", "apply to subresources is not emulated")
            return self.apply(res, ns, name, body, query, dry)
        if "force" in query:
            raise ApiError(422, "Invalid", "force: Forbidden: may not be specified for non-apply patch")
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format ({ctype})")
        old = self.get(res, ns, name)
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = merge_patch(old.get("status") or {}, (body or {}).get("status") or {})
        else:
            self.check_body(res, ns, name, body)
            new = merge_patch(copy.deepcopy(old), {k: v for k, v in body.items() if k != "status"})
            new = self.finish(res, ns, name, new, old)
        managed = self.update_ownership(res, ns, name, old, new, self.manager_of(query, "hybrid-client"), sub)
        new, _ = self.commit(res, ns, name, new, old, managed, dry)
        return aiohttp.web.json_response(self.render(res, ns, name, new))

    def put(self, res, ns, name, sub, body, query):
        old = self.get(res, ns, name)
        if sub == "status":
            new = copy.deepcopy(old)
            new["status"] = body.get("status")
        else:
            self.check_body(res, ns, name, body)
            new = self.finish(res, ns, name, copy.deepcopy(body), old)
        managed = self.update_ownership(res, ns, name, old, new, self.manager_of(query, "hybrid-client"), sub)
        new, _ = self.commit(res, ns, name, new, old, managed, query.get("dryRun") == "All")
        return aiohttp.web.json_response(self.render(res, ns, name, new))

    def apply(self, res, ns, name, body, query, dry):
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
        force = query.get("force") == "true"
        self.check_body(res, ns, name, body, apply=True)
        key = self.key(res, ns, name)
        old = self.store.objects.get(key)
        if old is None:
            self.refuse_in_terminating_namespace(res, ns)
        applied_paths = field_set(body, res.shape)
        managed = copy.deepcopy(self.store.managed.get(key, {}))
        mine_key = (manager, "Apply", None)
        previous = managed.get(mine_key, {}).get("paths", set())
        base = old or {}
        conflicts = []
        for (mgr, op, sub), entry in managed.items():
            if (mgr, op, sub) == mine_key or sub is not None:
                continue
            for p in applied_paths & entry["paths"]:
                if get_path(base, p) != get_path(body, p):
                    conflicts.append((mgr, p))
        if conflicts and not force:
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": render_path(p)} for m, p in sorted(conflicts)]
            raise ApiError(
                409, "Conflict",
                f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: " + ", ".join(f'conflict with "{m}": {render_path(p)}' for m, p in sorted(conflicts)),
                {"causes": causes},
            )
        for mgr, p in conflicts:
            for (m2, _op, _sub), entry in managed.items():
                if m2 == mgr:
                    entry["paths"].discard(p)
        new = merge(copy.deepcopy(base), body, res.shape) if old is not None else copy.deepcopy(body)
        # Fields this manager stops applying go, unless someone else owns them.
        others = set().union(*(e["paths"] for k, e in managed.items() if k != mine_key)) if managed else set()
        for p in sorted(previous - applied_paths, key=len, reverse=True):
            if p not in others and not any(o[: len(p)] == p for o in others):
                delete_path(new, p)
        new = self.finish(res, ns, name, new, old)
        entry = managed.get(mine_key)
        if entry is None or entry["paths"] != applied_paths:
            entry = {"paths": applied_paths, "apiVersion": res.api_version, "time": now()}
        managed[mine_key] = entry
        managed = {k: v for k, v in managed.items() if v["paths"]}
        new, changed = self.commit(res, ns, name, new, old, managed, dry)
        if dry:
            rendered = copy.deepcopy(new)
            entries = managed
            if entries:
                rendered.setdefault("metadata", {})["managedFields"] = [
                    dict({"manager": m, "operation": op, "apiVersion": e["apiVersion"], "time": e["time"], "fieldsType": "FieldsV1", "fieldsV1": nested(e["paths"])}, **({"subresource": s} if s else {}))
                    for (m, op, s), e in sorted(entries.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or ""))
                ]
            return aiohttp.web.json_response(rendered, status=201 if old is None else 200)
        return aiohttp.web.json_response(self.render(res, ns, name, new), status=201 if old is None else 200)

    # ---- deletion, evictions ---------------------------------------------

    def delete(self, res, ns, name):
        key = self.key(res, ns, name)
        obj = self.get(res, ns, name)
        if res.kind == "Pod":
            grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            self.terminate(key, grace)
            return aiohttp.web.json_response(self.render(res, ns, name, obj))
        if res.kind == "Namespace":
            if obj["status"].get("phase") != "Terminating":
                obj["status"]["phase"] = "Terminating"
                obj["metadata"]["deletionTimestamp"] = now()
                obj["metadata"]["resourceVersion"] = str(next(self.store.version))
                asyncio.get_event_loop().create_task(self.finalize_namespace(name))
            return aiohttp.web.json_response(self.render(res, ns, name, obj))
        self.store.objects.pop(key, None)
        self.store.managed.pop(key, None)
        return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": res.plural}})

    def terminate(self, key, grace):
        obj = self.store.objects[key]
        if "deletionTimestamp" in obj["metadata"]:
            return
        obj["metadata"]["deletionTimestamp"] = now()
        obj["metadata"]["deletionGracePeriodSeconds"] = grace
        obj["metadata"]["resourceVersion"] = str(next(self.store.version))
        delay = grace * self.args.grace_scale

        async def gone():
            await asyncio.sleep(delay)
            self.store.objects.pop(key, None)
            self.store.managed.pop(key, None)

        asyncio.get_event_loop().create_task(gone())

    async def finalize_namespace(self, name):
        await asyncio.sleep(max(0.2, 2 * self.args.grace_scale))
        for key in [k for k in self.store.objects if k[1] == name]:
            if key[0] == ("", "v1", "pods"):
                self.terminate(key, (self.store.objects[key].get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            else:
                self.store.objects.pop(key, None)
                self.store.managed.pop(key, None)
        while any(k[1] == name for k in self.store.objects):
            await asyncio.sleep(0.05)
        ns_key = self.key(self.resources[("", "v1", "namespaces")], None, name)
        self.store.objects.pop(ns_key, None)
        self.store.managed.pop(ns_key, None)

    def check_eviction(self, ns, name, body):
        """An Eviction as the API server decodes it: policy/v1 Eviction (the
        policy/v1beta1 one is gone since 1.25) naming the pod of the URL,
        strictly decoded against the OpenAPI schema."""
        if not isinstance(body, dict) or (body.get("apiVersion"), body.get("kind")) != ("policy/v1", "Eviction"):
            raise ApiError(400, "BadRequest", "the body of an eviction must be a policy/v1 Eviction")
        meta = body.get("metadata") or {}
        if meta.get("name") != name or meta.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", f"name in URL does not match name in Eviction object ({meta.get('name')} vs {name})")
        shape = self.openapi.kind("policy", "v1", "Eviction")
        problems = [f'unknown field "{u}"' for u in unknown_fields(body, shape)] + invalid_values(body, shape)
        if problems:
            raise ApiError(400, "BadRequest", "Eviction: " + ", ".join(problems))

    def evict(self, ns, name):
        pods_res = self.resources[("", "v1", "pods")]
        key = self.key(pods_res, ns, name)
        pod = self.store.objects.get(key)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if "deletionTimestamp" in pod["metadata"]:
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}, status=201)
        labels = pod["metadata"].get("labels") or {}
        pods = [o for k, o in self.store.objects.items() if k[0] == ("", "v1", "pods") and k[1] == ns]
        for k, pdb in self.store.objects.items():
            if k[0] != ("policy", "v1", "poddisruptionbudgets") or k[1] != ns:
                continue
            selector = ",".join(f"{a}={b}" for a, b in ((pdb.get("spec") or {}).get("selector", {}).get("matchLabels") or {}).items())
            if not label_match(labels, selector):
                continue
            matching = [p for p in pods if label_match(p["metadata"].get("labels") or {}, selector)]
            healthy = [p for p in matching if ready(p) and "deletionTimestamp" not in p["metadata"]]
            spec = pdb.get("spec") or {}
            if "maxUnavailable" in spec:
                desired = len(matching) - scaled(spec["maxUnavailable"], len(matching))
            else:
                desired = scaled(spec.get("minAvailable", 0), len(matching))
            allowed = len(healthy) - (1 if ready(pod) else 0) >= desired
            if not allowed:
                raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.", {"causes": [{"reason": "DisruptionBudget", "message": f"The disruption budget {k[2]} needs {desired} healthy pods and has {len(healthy)} currently"}]})
        self.terminate(key, (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}, status=201)

    # ---- the Tigera operator's write-backs --------------------------------

    def after_write(self, res, ns, name):
        if self.args.operator and res.kind in ("Installation", "FelixConfiguration") and name == "default" and ("operator", res.kind) not in self.pending:
            self.pending.add(("operator", res.kind))
            asyncio.get_event_loop().create_task(self.operator_reconcile(res))

    async def operator_reconcile(self, res):
        await asyncio.sleep(0.05)
        self.pending.discard(("operator", res.kind))
        key = self.key(res, None, "default")
        old = self.store.objects.get(key)
        if old is None:
            return
        new = copy.deepcopy(old)
        spec = new.setdefault("spec", {})
        if res.kind == "Installation":
            operator_installation_defaults(spec)
        else:
            for k, v in (("healthPort", 9099), ("vxlanVNI", 4096), ("vxlanPort", 4789)):
                spec.setdefault(k, v)
        if new == old:
            return
        new = self.finish(res, None, "default", new, old)
        managed = self.update_ownership(res, None, "default", old, new, "operator", None)
        self.commit(res, None, "default", new, old, managed, False)


def operator_installation_defaults(spec):
    """What tigera/operator (v1.38-v1.42) fills into an Installation spec on
    plain kubeadm (pkg/controller/installation/core_controller.go
    fillDefaults; pkg/controller/ippool/defaults.go)."""
    spec.setdefault("variant", "Calico")
    cni = spec.setdefault("cni", {})
    cni.setdefault("type", "Calico")
    cni.setdefault("ipam", {}).setdefault("type", "Calico")
    net = spec.setdefault("calicoNetwork", {})
    net.setdefault("linuxDataplane", "Iptables")
    net.setdefault("windowsDataplane", "Disabled")
    net.setdefault("bgp", "Enabled")
    net.setdefault("hostPorts", "Enabled")
    net.setdefault("multiInterfaceMode", "None")
    net.setdefault("linuxPolicySetupTimeoutSeconds", 0)
    for pool in net.get("ipPools") or []:
        pool.setdefault("allowedUses", ["Workload", "Tunnel"])
        pool.setdefault("disableNewAllocations", False)
        pool.setdefault("encapsulation", "IPIP")
        pool.setdefault("natOutgoing", "Enabled")
        pool.setdefault("nodeSelector", "all()")
        pool.setdefault("blockSize", 26)
        pool.setdefault("assignmentMode", "Automatic")
        pool.setdefault("name", "default-ipv4-ippool")
    spec.setdefault("controlPlaneReplicas", 2)
    spec.setdefault("flexVolumePath", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/")
    spec.setdefault("kubeletVolumePluginPath", "/var/lib/kubelet")
    spec.setdefault("nodeUpdateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    spec.setdefault("logging", {"cni": {"logSeverity": "Info", "logFileMaxCount": 10, "logFileMaxAgeDays": 30, "logFileMaxSize": "100Mi"}})
    if net["windowsDataplane"] != "Disabled":
        wn = spec.setdefault("windowsNodes", {})
        wn.setdefault("cniBinDir", "/opt/cni/bin")
        wn.setdefault("cniConfigDir", "/etc/cni/net.d")
        wn.setdefault("cniLogDir", "/var/log/calico/cni")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def strip(obj):
    """An object without what every write changes anyway."""
    o = copy.deepcopy(obj)
    meta = o.get("metadata") or {}
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    return o


def render_path(p):
    out = ""
    for e in p:
        if e.startswith("f:"):
            out += "." + e[2:]
        elif e.startswith("k:"):
            out += "[" + e[2:] + "]"
        elif e.startswith("v:"):
            out += "[=" + e[2:] + "]"
    return out


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def scaled(value, total):
    if isinstance(value, str) and value.endswith("%"):
        return -(-int(value[:-1]) * total // 100)
    return int(value)


def lookup(obj, dotted):
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def label_match(labels, selector):
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_match(obj, selector):
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        actual = lookup(obj, k.lstrip("="))
        if (str(actual) == v) == neg:
            return False
    return True


def server_tls(ca_cert_path, ca_key_path, server_ip):
    """A server certificate for SERVER_IP (never 127.0.0.1, the address the
    tests connect to: only `tls-server-name` makes the name check pass, as
    with a real control plane reached through its public address) signed by
    the cluster CA, and a context that requires CA-signed client
    certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    ca_cert = x509.load_pem_x509_certificate(open(ca_cert_path, "rb").read())
    ca_key = serialization.load_pem_private_key(open(ca_key_path, "rb").read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    t = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - datetime.timedelta(minutes=5))
        .not_valid_after(t + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip)), x509.DNSName("kubernetes")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tmp = tempfile.mkdtemp()
    cert_path, key_path = os.path.join(tmp, "server.crt"), os.path.join(tmp, "server.key")
    open(cert_path, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(key_path, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    ctx.load_verify_locations(ca_cert_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def main():
    import logging
    # An injected dropped answer is not an error worth a traceback.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--calico-v3", action="store_true")
    p.add_argument("--operator", action="store_true")
    p.add_argument("--kube-version", default="1.36")
    p.add_argument("--grace-scale", type=float, default=0.05)
    p.add_argument("--tls", nargs=3, metavar=("CA_CERT", "CA_KEY", "SERVER_IP"))
    # The namespaces a control plane has once its bootstrap ran (kubeadm's,
    # and the CNI manifests' own).
    p.add_argument("--namespaces", default="default,kube-system,kube-public,kube-node-lease,tigera-operator,calico-system,kube-flannel")
    args = p.parse_args()
    emu = Emulator(args)
    ns_res = emu.resources[("", "v1", "namespaces")]
    for ns in filter(None, args.namespaces.split(",")):
        obj = emu.finish(ns_res, None, ns, {"metadata": {"name": ns}}, None)
        emu.commit(ns_res, None, ns, obj, None, {}, False)

    async def handler(request):
        try:
            return await emu.handle(request)
        except ConnectionResetError:
            raise
        except Exception as e:  # an emulator bug must show as one, not hang a test
            import traceback
            traceback.print_exc()
            return status_error(500, "InternalError", f"emulator: {e}")

    app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = server_tls(*args.tls) if args.tls else None
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=ctx)
    await site.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
