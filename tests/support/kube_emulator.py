"""A Kubernetes API emulator for hybrid's tests: kmock's KubernetesEmulator
(an in-memory, stateful API server over HTTP) plus what hybrid relies on and
kmock 0.8 lacks:

- the resources hybrid reads and writes are declared (kmock 404s unknown
  ones), including Calico's CRD group (crd.projectcalico.org/v1, or with
  --calico-v3 the projectcalico.org/v3 API server group) so discovery via
  /apis works as on a real cluster;
- label and field selectors on lists (kmock ignores them);
- a resourceVersion on every write (kmock sets none);
- the pods/eviction subresource, honouring PodDisruptionBudgets with
  minAvailable (a 429 while an eviction would break the budget);
- Namespace objects themselves (kmock 0.8 fails on POST /api/v1/namespaces:
  it reads the collection path as a namespace), kept here;
- GET /_test/writes: how many writing requests it has served, and
  GET /_test/log: method and path of each, so tests can check "no writes"
  and the order of operations.

What it cannot prove: real admission and validation (CRD schemas, field
ownership, apply conflicts), controllers (no DaemonSet pods appear, nodes
register only when a test creates them), authentication.

usage: kube_emulator.py PORT [--calico-v3]
"""
import asyncio
import itertools
import json
import re
import sys

import aiohttp.web
import kmock
from kmock._internal import enums

RESOURCES = [
    "v1/nodes", "v1/pods", "v1/configmaps", "v1/secrets", "v1/namespaces", "v1/services",
    "apps/v1/daemonsets", "apps/v1/deployments", "batch/v1/jobs",
    "node.k8s.io/v1/runtimeclasses", "policy/v1/poddisruptionbudgets",
    "operator.tigera.io/v1/installations",
    "networking.k8s.io/v1/networkpolicies",
]
CALICO_V1 = ["crd.projectcalico.org/v1/ipamconfigs", "crd.projectcalico.org/v1/felixconfigurations", "crd.projectcalico.org/v1/ippools"]
CALICO_V3 = ["projectcalico.org/v3/ipamconfigurations", "projectcalico.org/v3/felixconfigurations", "projectcalico.org/v3/ippools"]
EVICTION = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction$")
NAMESPACE = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?/?$")


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


class Emulator(kmock.KubernetesEmulator):
    versions = itertools.count(1)
    log = []
    namespaces = {}

    def namespace_request(self, method, name, data):
        def status(code, reason, message):
            return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason, "message": message}, status=code)
        if method == "POST" and name is None:
            ns = data["metadata"]["name"]
            if ns in self.namespaces:
                return status(409, "AlreadyExists", f'namespaces "{ns}" already exists')
            data["metadata"]["resourceVersion"] = str(next(self.versions))
            self.namespaces[ns] = data
            return aiohttp.web.json_response(data, status=201)
        if method == "GET" and name is None:
            return aiohttp.web.json_response({"kind": "NamespaceList", "apiVersion": "v1", "items": list(self.namespaces.values())})
        if name not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{name}" not found')
        if method == "GET":
            return aiohttp.web.json_response(self.namespaces[name])
        if method == "DELETE":
            return aiohttp.web.json_response(self.namespaces.pop(name))
        return status(405, "MethodNotAllowed", "not emulated")

    async def __call__(self, raw_request):
        # Namespace objects are kept here: kmock cannot even parse their
        # collection path, so this runs before its request parser.
        ns = NAMESPACE.match(raw_request.path)
        if ns:
            body = await raw_request.read()
            self.log.append((raw_request.method.upper(), raw_request.path))
            return self.namespace_request(raw_request.method.upper(), ns.group(1), json.loads(body) if body else None)
        return await super().__call__(raw_request)

    async def _handle(self, request):
        if request.url.path == "/_test/writes":
            return aiohttp.web.json_response({"writes": sum(1 for m, _ in self.log if m != "GET")})
        if request.url.path == "/_test/log":
            return aiohttp.web.json_response(self.log)
        self.log.append((str(request.method.value if hasattr(request.method, "value") else request.method).upper(), request.url.path))
        m = EVICTION.match(request.url.path)
        if m and request.method == enums.method.POST:
            return await self.evict(*m.groups())
        if request.action in (enums.action.CREATE, enums.action.UPDATE) and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self.versions))
        return await super()._handle(request)

    async def _serve_list(self, request):
        result = await super()._serve_list(request)
        labels = request.params.get("labelSelector")
        fields = request.params.get("fieldSelector")
        items = result["items"]
        if labels:
            items = [o for o in items if label_match(o.get("metadata", {}).get("labels") or {}, labels)]
        if fields:
            items = [o for o in items if field_match(o, fields)]
        result["items"] = items
        result["metadata"] = {"resourceVersion": str(next(self.versions))}
        return result

    def live(self, plural, namespace=None):
        for (res, ns, name), obj in list(self.objects.items()):
            if res.plural == plural and not obj.deleted and (namespace is None or ns == namespace):
                yield ns, name, obj.raw

    async def evict(self, namespace, name):
        pods = {n: o for ns, n, o in self.live("pods", namespace)}
        pod = pods.get(name)
        if pod is None:
            return aiohttp.web.json_response({"kind": "Status", "code": 404, "reason": "NotFound", "message": f"pods {name} not found"}, status=404)
        labels = pod.get("metadata", {}).get("labels") or {}
        for _, _, pdb in self.live("poddisruptionbudgets", namespace):
            selector = ",".join(f"{k}={v}" for k, v in (pdb.get("spec", {}).get("selector", {}).get("matchLabels") or {}).items())
            if not label_match(labels, selector):
                continue
            healthy = sum(1 for p in pods.values() if label_match(p.get("metadata", {}).get("labels") or {}, selector))
            if healthy - 1 < int(pdb.get("spec", {}).get("minAvailable", 0)):
                return aiohttp.web.json_response(
                    {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "Cannot evict pod as it would violate the pod's disruption budget."},
                    status=429,
                )
        for key, obj in list(self.objects.items()):
            res, ns, n = key
            if res.plural == "pods" and ns == namespace and n == name:
                obj.delete()
        return aiohttp.web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}, status=201)


async def main():
    port = int(sys.argv[1])
    calico = CALICO_V3 if "--calico-v3" in sys.argv else CALICO_V1
    async with Emulator() as k, kmock.Server(k, port=port):
        for r in RESOURCES + calico:
            k.resources[r] = {}
        print("ready", flush=True)
        await asyncio.Event().wait()


asyncio.run(main())
