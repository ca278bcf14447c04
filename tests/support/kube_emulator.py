"""A strict Kubernetes API emulator for hybrid's tests: an in-memory API
server over HTTP or HTTPS that stores objects the way a real one does.

What it enforces, like a real API server:
- schemas: every write of a built-in kind is checked against the Kubernetes
  OpenAPI schema of the pinned version (PyPI kubernetes-validate, its
  strict variant); Calico's and the Tigera operator's kinds against
  tests/support/schemas/calico-<--calico>.json (3.30: the project's
  transcription of their CRDs, with its source; 3.32: made from the v3.32.1
  CRDs by build_calico_schema(), see schemas/README.md). Unknown fields are
  errors, as with
  fieldValidation=Strict (400 "strict decoding error" on create/update,
  422 "field not declared in schema" on apply); wrong types, enums and
  missing required fields are 422 Invalid;
- defaulting: the API server's defaults for the kinds hybrid writes
  (pkg/apis/{core,apps,batch,rbac}/v1/defaults.go: containers, volumes,
  env fieldRefs, DaemonSet/Deployment/Job specs, Secret stringData, ...) and
  the CRDs' structural defaults (Installation ipPools[].disableBGPExport;
  with 3.32 also IPAMConfiguration autoAllocateBlocks/strictAffinity/
  maxBlocksPerHost, FelixConfiguration nftablesMode, ...); status is not
  writable through the main resource (the /status subresource is);
- server-side apply (PATCH application/apply-patch+yaml): fieldManager
  required, merge by the schemas' list types (map lists by their keys, sets,
  atomic lists and maps), managedFields per manager in FieldsV1, conflicts
  (409) with other managers' differing fields unless force, removal of
  fields a manager stops applying when nobody else owns them, create by
  apply (201), dryRun=All without storing; a write that changes nothing
  keeps its resourceVersion;
- optimistic concurrency: a metadata.resourceVersion in a PUT or merge-patch
  body (main resource or /status) is a precondition; another one than the
  stored object's answers 409 Conflict "Operation cannot be fulfilled on
  nodes "x": the object has been modified; please apply your changes to the
  latest version and try again" (k8s.io/apiserver registry Store.Update,
  apierrors.NewConflict). Always on: no client of the emulator sent one
  before, and every real server does this;
- paging (the Kubernetes API concepts page, "Retrieving large results
  sets in chunks"): a list with limit=N returns at most N items, and while
  more remain a metadata.continue token (opaque to clients: here the last
  key served) and remainingItemCount; continue=TOKEN resumes after that
  key; a token that does not decode answers 400 as the apiserver's
  storage DecodeContinue refuses it. With --page-cap N a page holds at
  most N items even when more are asked for: a server may always return
  fewer than the limit, and a client must follow the token;
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
  SERVER_IP signed by the cluster CA, client certificates checked against
  the CA (required, unless a token authenticator is on too), and without
  --rbac only the groups kubeadm:cluster-admins or system:masters
  authorized (403 otherwise);
- faults on request (POST /_test/faults): 429 with Retry-After, 5xx,
  dropped responses (the write happens, the answer is lost), slow
  answers and expired continue tokens (410 Gone, reason Expired), for the
  next N requests matching by method, path and query text.

Opt-in, each by its flag:

--rbac: authentication then authorization of every API request, as
  kube-apiserver with kubeadm's --authorization-mode=Node,RBAC.
  Identities (pkg/kubeapiserver/authenticator/config.go order): a verified
  client certificate (--tls; user = CN, groups = O values), then bearer
  tokens (--token-auth-file, then --iam-sts); every authenticated user also
  has group system:authenticated. No valid identity: 401 Status
  "Unauthorized" (there is no anonymous user, as with --anonymous-auth=false;
  a real kubeadm server would treat a credential-less request as
  system:anonymous and mostly answer 403). Then, in order:
  - group system:masters is allowed everything (the privileged-group
    authorizer in front of Node,RBAC);
  - the Node authorizer (plugin/pkg/auth/authorizer/node), simplified, for
    user system:node:<name> in group system:nodes: the system:node rules
    (NodeRules() in bootstrappolicy/policy.go); Node objects readable only
    by their own node (AuthorizeNodeWithSelectors, default since 1.32; a
    list needs fieldSelector metadata.name=<own>); leases only its own in
    kube-node-lease, CSINodes only its own. Simplified: the authorizer's
    graph is not kept, so secrets, configmaps, PVs/PVCs, service account
    tokens, resource claims and volume attachments are refused to nodes
    ("no relationship found between node ..."), and its reason strings
    are close to, not copies of, the real ones. Then the NodeRestriction
    admission plugin: a node may create/update/patch/delete only its own
    Node (403 'node "a" is not allowed to modify node "b"'), and
    delete/evict/update the status of only pods bound to it, and create only
    mirror pods bound to it; label restrictions are not emulated;
  - RBAC (plugin/pkg/auth/authorizer/rbac): the stored ClusterRoleBindings,
    then the RoleBindings of the request's namespace; subjects User, Group,
    ServiceAccount (system:serviceaccount:<ns>:<name>); roleRef a Role of
    the binding's namespace or a ClusterRole; rules by verbs, apiGroups,
    resources (resource/subresource, "*", "*/sub"), resourceNames and
    nonResourceURLs (exact or prefix*), as pkg/apis/rbac/v1/
    evaluation_helpers.go matches them; an aggregated ClusterRole has the
    rules of the ClusterRoles its matchLabels selectors pick. A binding to
    a missing role adds 'RBAC: role.rbac.authorization.k8s.io "x" not
    found' to the refusal, as the real authorizer does.
  Verbs from the request (requestinfo.go): GET object get, GET collection
  list (watch=true or /watch/: watch; fieldSelector metadata.name=X names
  the object), POST create (pods/eviction: create on that subresource),
  PUT update, PATCH patch (apply too), DELETE delete, DELETE on a
  collection deletecollection; /api, /apis, /version, /healthz, ... are
  non-resource URLs with verb get. Refusal: 403 with the body
  responsewriters.Forbidden writes: message '<resource>[.<group>]
  ["<name>" ]is forbidden: User "<user>" cannot <verb> resource
  "<resource>[/<sub>]" in API group "<group>" in the namespace "<ns>"' (or
  'at the cluster scope'; for URLs 'forbidden: User "u" cannot get path
  "/x"'), details {name, group, kind: <resource>} without empty ones.
  Seeded at start, with the bootstrap labels, as the API server's
  bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/
  policy.go, rendered in its testdata/cluster-roles.yaml) and kubeadm
  write them: ClusterRoles cluster-admin, admin/edit/view (aggregated from
  system:aggregate-to-admin/-edit/-view, rules stored too),
  system:discovery, system:public-info-viewer, system:basic-user,
  system:node-proxier, system:node; ClusterRoleBindings cluster-admin
  (system:masters), system:discovery and system:basic-user
  (system:authenticated), system:public-info-viewer, system:node-proxier
  (user system:kube-proxy), system:node (no subjects), and kubeadm's
  kubeadm:cluster-admins (group kubeadm:cluster-admins -> cluster-admin,
  cmd/kubeadm/app/phases/kubeconfig) and kubeadm:node-proxier (service
  account kube-system/kube-proxy, cmd/kubeadm/app/phases/addons/proxy).
  The rules are listed in BOOTSTRAP_CLUSTER_ROLES below. Not emulated: the
  RBAC API's escalation checks (creating a role or binding one needs no
  `escalate`/`bind` here), impersonation, and other bootstrap roles
  (controllers', scheduler's).
  Role and RoleBinding are served with or without --rbac.

--token-auth-file FILE: kube-apiserver's static token file
  (k8s.io/apiserver/pkg/authentication/token/tokenfile), CSV lines
  token,user,uid,"group1,group2": handy test identities (an admin in
  system:masters, a node system:node:<n> in system:nodes).

--iam-sts URL --iam-cluster-id ID: bearer tokens as aws-iam-authenticator's
  server checks them (kubernetes-sigs/aws-iam-authenticator v0.7.x,
  pkg/token/token.go tokenVerifier.Verify), with its ConfigMap backend.
  The token is "k8s-aws-v1." + unpadded base64url of a presigned STS
  GetCallerIdentity URL; 401 unless: at most 4096 bytes, the prefix, it
  decodes, https, host sts.<region>.amazonaws.com or sts.amazonaws.com,
  path "/", no parameter twice (any case), only Action, Version,
  X-Amz-Algorithm/-Credential/-Date/-Expires/-Security-Token/-Signature/
  -SignedHeaders, Action=GetCallerIdentity, x-k8s-aws-id among the signed
  headers, 0 <= X-Amz-Expires <= 900, and now <= X-Amz-Date + 15 min.
  Then what STS itself would check when the authenticator GETs the URL
  with header x-k8s-aws-id: ID: the access key exists and is active, a
  session key comes with its session token (and a permanent key with
  none), the credential scope is <key>/<date of X-Amz-Date>/<region of the
  host>/sts/aws4_request, and the SigV4 signature is right for headers
  host and x-k8s-aws-id = the cluster ID and the empty body's SHA-256 (so
  a token made for another cluster, with another key, or edited, is
  refused). moto cannot do this itself: moto_server serves a presigned GET
  as S3 and checks no signature (/work/research/auth.md, "moto and
  presigned URLs"); the emulator reads the key's secret and session token
  from moto's own state (GET <URL>/moto-api/data.json) and computes the
  signature as STS does. Not checked: the session's expiry (moto's state
  does not show it) and signed headers other than host, x-k8s-aws-id and
  accept (a real STS would compare any other with what the authenticator
  sends). Then the caller: POST Action=GetCallerIdentity&Version=2011-06-15
  to URL with "Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/
  <region>/sts/aws4_request, SignedHeaders=host, Signature=00" (and
  X-Amz-Security-Token): moto answers the key's IAM user, or
  arn:aws:sts::ACCT:assumed-role/<role>/<session> for AssumeRole
  credentials (XML Arn, Account, UserId). The ARN is canonicalized
  (pkg/arn/arn.go: assumed-role/R/S -> arn:P:iam::A:role/R; iam user and
  role ARNs kept, paths included) and mapped through the ConfigMap
  kube-system/aws-auth as stored now (pkg/mapper/configmap: data.mapRoles
  [{rolearn, username, groups}], data.mapUsers [{userarn, ...}], entry keys
  in any case, data.mapAccounts), comparing case-insensitively with the
  canonical ARN exactly as written: a mapRoles entry must be the path-less
  role ARN (arn:aws:iam::A:role/R), one that keeps the role's path never
  matches (the configmap mapper does not strip paths; the EKS docs say
  the ARN "can't include a path"), while a user's ARN keeps its path.
  Username and groups templates: {{AccountID}}, {{SessionName}} (@ -> -),
  {{SessionNameRaw}}, {{AccessKeyID}} ({{EC2PrivateDNSName}} is refused).
  Unmapped: 401. The STS part of a verified token is cached for two
  minutes (kube-apiserver's --authentication-token-webhook-cache-ttl); the
  real server caches the whole answer, so an aws-auth change reaches a
  token it already accepted up to two minutes later; here at once.

--immutable: updates (PUT, merge patch, apply, and the operator's and race
  writes) that change what the API server's update validation keeps
  fixed answer 422 Invalid, the message as apierrors.NewInvalid makes it
  ('Deployment.apps "x" is invalid: spec.selector: Invalid value: <new>:
  field is immutable', details.causes[].field): DaemonSet, Deployment,
  ReplicaSet, StatefulSet and Job spec.selector (pkg/apis/apps/validation,
  pkg/apis/batch/validation), Job spec.template (the exceptions for
  suspended Jobs are not emulated), ClusterRoleBinding/RoleBinding
  roleRef ("cannot change roleRef", pkg/apis/rbac/validation), Service
  clusterIP ("spec.clusterIPs[0]: ... may not change once set"; an update
  that leaves it out keeps it), ConfigMap/Secret with immutable: true
  (immutable, data, binaryData: "Forbidden: field is immutable when
  `immutable` is set") and Secret type (pkg/apis/core/validation). Values
  in messages are JSON, where the real server prints Go's %#v.

--dead-nodes: a pod bound to a Node whose Ready condition is not True
  (False, Unknown or missing) keeps its deletionTimestamp after delete or
  eviction: no kubelet confirms it is gone (kubectl drain docs: pods on an
  unreachable node stay Terminating). It goes when the Node turns Ready or
  is deleted; deleting a Node makes PodGC (pkg/controller/podgc,
  gcOrphaned) delete every pod still bound to it after its 40 s quarantine
  (scaled by --grace-scale).

--calico 3.30|3.32: which schemas/calico-<v>.json the Calico kinds are
  checked against (default 3.32, the minor hybrid pins).

Test hooks: GET /_test/log (method, path, dry-run flag of each request),
GET /_test/writes (writing requests, dry runs excluded: what "a second
apply writes nothing" is measured by), GET /_test/whoami (the identity the
server sees for this request: user, groups, uid, extra, authenticator; 401
without one), GET /_test/authlog (why requests were refused 401), POST
/_test/race {"path": "/api/v1/nodes/x", "merge": {...}, "times": N}: right
after each of the next N reads answered to a client that return the object
(its GET, or a LIST that includes it), another writer applies the merge
patch to it as manager "other-controller" and the resourceVersion moves
(even if the patch changes nothing), so the client's next write is based on
a stale read (GET /_test/race lists the pending ones). Hooks need no
credentials (whoami needs them to show them).

What it still cannot prove: controllers (no pods appear for a DaemonSet;
tests play kubelet and the Job controller), admission webhooks and
validation beyond the schema (CEL rules, immutable fields other than the
ones listed), Calico's aggregated API server's own defaulting of
projectcalico.org/v3 kinds (with 3.30), the exact order SSA gives merged
list items, and the CRD schemas' patterns, formats and bounds.

usage: kube_emulator.py PORT [--calico-v3] [--calico 3.30|3.32] [--operator]
       [--kube-version 1.36] [--grace-scale 0.05] [--tls CA_CERT CA_KEY SERVER_IP]
       [--namespaces a,b] [--rbac] [--token-auth-file FILE]
       [--iam-sts URL --iam-cluster-id ID] [--immutable] [--dead-nodes]
       kube_emulator.py build-calico-schema SRC_DIR OUT_JSON
Environment: KUBE_EMULATOR_EXTRA_ARGS, flags appended to the command line
(to run an existing suite under stricter flags without editing it).
Self-test of the opt-in parts: tests/support/kube_emulator_selftest.py.
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
    return Shape("struct", fields=fields, required=spec_shape.required)


# --------------------------------------------------------------------------
# Calico schemas: the compact format from the CRDs' own openAPIV3Schema
# --------------------------------------------------------------------------

# What `--calico VERSION` reads: tests/support/schemas/calico-<VERSION>.json.
# 3.30 is the project's hand transcription (see its "source"); 3.32 is made
# by build_calico_schema() below from the CRD schemas of Calico v3.32.1
# (/work/shared/upstream, see its README.md for where each came from):
#
#   .venv/bin/python tests/support/kube_emulator.py build-calico-schema \
#       /work/shared/upstream tests/support/schemas/calico-3.32.json
CALICO_VERSIONS = ("3.30", "3.32")

# The upstream files drop `status` and do not say which CRDs have a status
# subresource; operator.tigera.io Installation does (`subresources: status:
# {}` in manifests/operator-crds.yaml), the projectcalico.org kinds do not.
CALICO_STATUS_SUBRESOURCE = {"operator.tigera.io/v1/installations"}


def compact_from_openapi(s, path="", dropped=None):
    """One node of a structural CRD schema (apiextensions.k8s.io/v1
    openAPIV3Schema) in the compact format compact_shape() reads.

    Kept: properties, required, type, enum (an allOf of enums is their
    intersection), default, items, x-kubernetes-list-type/-list-map-keys,
    additionalProperties (a map), x-kubernetes-int-or-string (with its
    anyOf), x-kubernetes-preserve-unknown-fields (unchecked). Dropped, and
    counted in `dropped`: pattern, format, minimum/maximum, maxLength,
    maxItems, x-kubernetes-validations (CEL) and x-kubernetes-map-type (the
    compact format has no atomic structs; apply merges them field by field).
    An object with neither properties nor additionalProperties is an empty
    struct, as pruning makes it."""
    if dropped is None:
        dropped = {}
    for k in ("pattern", "format", "minimum", "maximum", "maxLength", "maxItems", "x-kubernetes-validations", "x-kubernetes-map-type", "minLength", "minItems", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems", "minProperties", "maxProperties"):
        if k in s:
            dropped[k] = dropped.get(k, 0) + 1
    if s.get("x-kubernetes-int-or-string"):
        return {"type": "int-or-string"}
    if s.get("x-kubernetes-preserve-unknown-fields"):
        return {"type": "object-any"}
    t = s.get("type")
    if t == "object":
        if "properties" in s:
            out = {"type": "object", "fields": {k: compact_from_openapi(v, f"{path}.{k}", dropped) for k, v in sorted(s["properties"].items())}}
            if s.get("required"):
                out["required"] = list(s["required"])
            return out
        ap = s.get("additionalProperties")
        if isinstance(ap, dict):
            return {"type": "map", "values": compact_from_openapi(ap, f"{path}{{}}", dropped)}
        if ap is True:
            return {"type": "object-any"}
        return {"type": "object", "fields": {}}
    if t == "array":
        out = {"type": "list", "items": compact_from_openapi(s.get("items") or {}, f"{path}[]", dropped), "listType": s.get("x-kubernetes-list-type", "atomic")}
        if out["listType"] == "map":
            out["mapKeys"] = list(s["x-kubernetes-list-map-keys"])
        return out
    if t in ("string", "integer", "number", "boolean"):
        out = {"type": t}
        enum = s.get("enum")
        for sub in s.get("allOf") or []:
            if "enum" in sub:
                enum = [e for e in (enum if enum is not None else sub["enum"]) if e in sub["enum"]]
        if enum is not None:
            out["enum"] = enum
        if "default" in s:
            out["default"] = s["default"]
        return out
    if not t and not s:
        return {"type": "any"}
    raise ValueError(f"{path or '.'}: schema node not understood: {json.dumps(s)[:200]}")


def build_calico_schema(src_dir):
    """calico-<version>.json from the CRD schema files in src_dir (each
    `{group, version, kind, plural, scope, openAPIV3Schema}`): the root's
    apiVersion/kind/metadata go (the emulator adds ObjectMeta itself), the
    rest is compact_from_openapi(); kinds with a status subresource get an
    unchecked `status` back. Prints what was dropped."""
    import glob

    readme = open(os.path.join(src_dir, "README.md")).read() if os.path.exists(os.path.join(src_dir, "README.md")) else ""
    tag = re.search(r"v(3\.\d+\.\d+), commit ([0-9a-f]{40})", readme)
    kinds, dropped = {}, {}
    for path in sorted(glob.glob(os.path.join(src_dir, "*.json"))):
        doc = json.load(open(path))
        if "openAPIV3Schema" not in doc:
            continue
        key = f"{doc['group']}/{doc['version']}/{doc['plural']}"
        root = copy.deepcopy(doc["openAPIV3Schema"])
        for k in ("apiVersion", "kind", "metadata"):
            root.get("properties", {}).pop(k, None)
        if "required" in root:
            root["required"] = [r for r in root["required"] if r != "metadata"]
        schema = compact_from_openapi(root, "", dropped)
        if key in CALICO_STATUS_SUBRESOURCE:
            schema["fields"]["status"] = {"type": "object-any"}
        entry = {"kind": doc["kind"], "namespaced": doc["scope"] == "Namespaced"}
        if key in CALICO_STATUS_SUBRESOURCE:
            entry["statusSubresource"] = True
        entry["schema"] = schema
        kinds[key] = entry
    out = {
        "about": "The Calico and Tigera operator kinds hybrid writes, for Calico " + (tag.group(1) if tag else "3.32") + ", made by kube_emulator.py build_calico_schema() from the CRDs' storage-version openAPIV3Schema (descriptions and status removed upstream). Complete: every field the CRDs declare is here. Not checked by the emulator (dropped by the transformation): " + ", ".join(f"{k} ({n}x)" for k, n in sorted(dropped.items())) + ".",
        "format": "type: object (fields, required) | object-any (not checked further) | map (values) | list (items, listType atomic|map|set, mapKeys) | string | integer | number | boolean (enum, default) | int-or-string | any",
        "source": {
            "repo": "projectcalico/calico",
            "tag": "v" + (tag.group(1) if tag else "3.32"),
            "commit": tag.group(2) if tag else None,
            "paths": {"operator.tigera.io, crd.projectcalico.org": "manifests/operator-crds.yaml", "projectcalico.org/v3": "manifests/v3_projectcalico_org.yaml (3.32 can serve projectcalico.org/v3 as CRDs)"},
            "statusSubresource": sorted(CALICO_STATUS_SUBRESOURCE),
        },
        "kinds": kinds,
    }
    return out


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
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, False),
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
# Authentication and authorization (--rbac, --iam-sts, --token-auth-file)
# --------------------------------------------------------------------------

# The request's attributes, as k8s.io/apiserver/pkg/endpoints/request/
# requestinfo.go (RequestInfoFactory.NewRequestInfo) derives them.
NAMESPACE_SUBRESOURCES = {"status", "finalize"}


def request_info(method, path, query):
    info = {"resource_request": False, "path": path, "verb": method.lower(), "group": "", "version": "", "resource": "", "subresource": "", "namespace": "", "name": ""}
    parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
    if not parts or parts[0] not in ("api", "apis"):
        return info
    if parts[0] == "api":
        if len(parts) < 2:
            return info
        info["version"], rest = parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return info
        info["group"], info["version"], rest = parts[1], parts[2], parts[3:]
    if not rest:
        return info  # discovery of a group version: a non-resource URL
    info["resource_request"] = True
    verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "")
    if rest[0] == "watch" and method in ("GET", "HEAD"):
        verb, rest = "watch", rest[1:]
        if not rest:
            info["resource_request"] = False
            return info
    if rest[0] == "namespaces" and len(rest) > 1:
        info["namespace"] = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if len(rest) >= 3:
        info["subresource"] = rest[2]
    if len(rest) >= 2:
        info["name"] = rest[1]
    info["resource"] = rest[0]
    if not info["name"] and verb == "get":
        verb = "watch" if query.get("watch") in ("true", "1") else "list"
        m = re.fullmatch(r"metadata\.name==?([^,]+)", query.get("fieldSelector", ""))
        if m:
            info["name"] = m.group(1)
    if not info["name"] and verb == "delete":
        verb = "deletecollection"
    info["verb"] = verb
    return info


# Rule matching: pkg/apis/rbac/v1/evaluation_helpers.go and
# plugin/pkg/auth/authorizer/rbac/rbac.go (RuleAllows).
def rule_allows(info, rule):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info["verb"] not in verbs:
        return False
    if not info["resource_request"]:
        for url in rule.get("nonResourceURLs") or []:
            if url == "*" or url == info["path"] or (url.endswith("*") and info["path"].startswith(url.rstrip("*"))):
                return True
        return False
    groups = rule.get("apiGroups")
    if groups is None or ("*" not in groups and info["group"] not in groups):
        return False
    combined = info["resource"] + ("/" + info["subresource"] if info["subresource"] else "")
    ok = False
    for r in rule.get("resources") or []:
        if r == "*" or r == combined or (info["subresource"] and r == "*/" + info["subresource"]):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or info["name"] in names


def applies_to(subject, ident, binding_ns):
    """plugin/pkg/auth/authorizer/rbac/subject_locator.go appliesToUser."""
    kind = subject.get("kind")
    if kind == "User":
        return ident["user"] == subject.get("name")
    if kind == "Group":
        return subject.get("name") in ident["groups"]
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return bool(ns) and ident["user"] == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


def R(verbs, groups, resources, names=None):
    """A PolicyRule: verbs on resources of API groups (names optional)."""
    rule = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if names:
        rule["resourceNames"] = list(names)
    return rule


def URLS(verbs, urls):
    return {"nonResourceURLs": list(urls), "verbs": list(verbs)}


READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
CORE = ("",)

# The bootstrap policy kube-apiserver writes at start
# (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go; its rendered
# form is testdata/cluster-roles.yaml and cluster-role-bindings.yaml there),
# restated here for the roles a hybrid cluster's clients meet. admin, edit
# and view are aggregated ClusterRoles: their rules are those of every
# ClusterRole their aggregationRule selects (the clusterrole-aggregation
# controller's work; the emulator evaluates it on each request and stores
# the result at start), and the system:aggregate-to-* roles hold the rules.
AGGREGATE_TO_VIEW = [
    # Read the ordinary namespaced objects: workloads, their pods and logs,
    # services and endpoints, config maps (not secrets), claims, quotas.
    R(READ, CORE, ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"]),
    R(READ, CORE, ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]),
    R(READ, CORE, ["namespaces"]),
    R(READ, ["discovery.k8s.io"], ["endpointslices"]),
    R(READ, ["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    R(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    R(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    R(READ, ["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets", "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"]),
    R(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    R(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
]
AGGREGATE_TO_EDIT = [
    # Read what view cannot (secrets, exec/attach/proxy), act as service
    # accounts, and write the same objects view reads, evictions included;
    # never roles or bindings, nor endpoints (dropped in 1.22, CVE-2021-25740).
    R(READ, CORE, ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
    R(["impersonate"], CORE, ["serviceaccounts"]),
    R(WRITE, CORE, ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    R(["create"], CORE, ["pods/eviction"]),
    R(WRITE, CORE, ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"]),
    R(["create"], CORE, ["serviceaccounts/token"]),
    R(WRITE, ["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"]),
    R(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    R(WRITE, ["batch"], ["cronjobs", "jobs"]),
    R(WRITE, ["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses", "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"]),
    R(WRITE, ["policy"], ["poddisruptionbudgets"]),
    R(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    R(READ + WRITE, ["coordination.k8s.io"], ["leases"]),
]
AGGREGATE_TO_ADMIN = [
    # edit plus granting: Roles and RoleBindings in the namespace.
    R(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    R(READ + WRITE, ["rbac.authorization.k8s.io"], ["rolebindings", "roles"]),
]
EVENTS_WRITE = R(["create", "patch", "update"], ["", "events.k8s.io"], ["events"])
NODE_RULES = [
    # The system:node ClusterRole (NodeRules()): what a kubelet may do
    # before the Node authorizer narrows it to its own objects.
    R(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
    R(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"]),
    R(READ, CORE, ["services"]),
    R(["create", "get", "list", "watch"], CORE, ["nodes"]),
    R(["patch", "update"], CORE, ["nodes/status"]),
    R(["patch", "update"], CORE, ["nodes"]),
    R(["create", "patch", "update"], CORE, ["events"]),
    R(READ, CORE, ["pods"]),
    R(["create", "delete"], CORE, ["pods"]),
    R(["patch", "update"], CORE, ["pods/status"]),
    R(["create"], CORE, ["pods/eviction"]),
    R(READ, CORE, ["configmaps", "secrets"]),
    R(["get"], CORE, ["persistentvolumeclaims", "persistentvolumes"]),
    R(["get"], CORE, ["endpoints"]),
    R(["create", "get", "list", "watch"], ["certificates.k8s.io"], ["certificatesigningrequests"]),
    R(["create", "delete", "get", "patch", "update"], ["coordination.k8s.io"], ["leases"]),
    R(["get"], ["storage.k8s.io"], ["volumeattachments"]),
    R(["create"], CORE, ["serviceaccounts/token"]),
    R(["get", "patch", "update"], CORE, ["persistentvolumeclaims/status"]),
    R(READ, ["storage.k8s.io"], ["csidrivers"]),
    R(["create", "delete", "get", "patch", "update"], ["storage.k8s.io"], ["csinodes"]),
    R(READ, ["node.k8s.io"], ["runtimeclasses"]),
]
BOOTSTRAP_CLUSTER_ROLES = {
    # Everything, resources and URLs alike.
    "cluster-admin": {"rules": [R(["*"], ["*"], ["*"]), URLS(["*"], ["*"])]},
    "admin": {"aggregate": "admin"},
    "edit": {"aggregate": "edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    "view": {"aggregate": "view", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
    "system:aggregate-to-admin": {"rules": AGGREGATE_TO_ADMIN, "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    "system:aggregate-to-edit": {"rules": AGGREGATE_TO_EDIT, "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
    "system:aggregate-to-view": {"rules": AGGREGATE_TO_VIEW, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
    # Readiness and discovery: every authenticated user.
    "system:discovery": {"rules": [URLS(["get"], ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"])]},
    "system:public-info-viewer": {"rules": [URLS(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])]},
    # Learning what oneself may do.
    "system:basic-user": {"rules": [R(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]), R(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"])]},
    # kube-proxy: read nodes, watch services and their endpoints (both
    # kinds), write events.
    "system:node-proxier": {"rules": [R(["list", "watch"], CORE, ["endpoints", "services"]), R(READ, CORE, ["nodes"]), EVENTS_WRITE, R(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"])]},
    "system:node": {"rules": NODE_RULES},
}
BOOTSTRAP_BINDINGS = [
    # (binding name, ClusterRole, subjects); the first six are the API
    # server's own (cluster-role-bindings.yaml; system:node is bound to no
    # one since 1.8, the Node authorizer serves nodes), the last two
    # kubeadm's: cmd/kubeadm/app/phases/kubeconfig (kubeadm:cluster-admins,
    # 1.29+: the admin.conf certificate's group) and
    # cmd/kubeadm/app/phases/addons/proxy (kube-proxy's service account).
    ("cluster-admin", "cluster-admin", [{"kind": "Group", "name": "system:masters"}]),
    ("system:discovery", "system:discovery", [{"kind": "Group", "name": "system:authenticated"}]),
    ("system:basic-user", "system:basic-user", [{"kind": "Group", "name": "system:authenticated"}]),
    ("system:public-info-viewer", "system:public-info-viewer", [{"kind": "Group", "name": "system:authenticated"}, {"kind": "Group", "name": "system:unauthenticated"}]),
    ("system:node-proxier", "system:node-proxier", [{"kind": "User", "name": "system:kube-proxy"}]),
    ("system:node", "system:node", []),
    ("kubeadm:cluster-admins", "cluster-admin", [{"kind": "Group", "name": "kubeadm:cluster-admins"}]),
    ("kubeadm:node-proxier", "system:node-proxier", [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}]),
]
AGGREGATION = {
    "admin": "rbac.authorization.k8s.io/aggregate-to-admin",
    "edit": "rbac.authorization.k8s.io/aggregate-to-edit",
    "view": "rbac.authorization.k8s.io/aggregate-to-view",
}

# The Node authorizer (plugin/pkg/auth/authorizer/node/node_authorizer.go)
# gates these by its graph of what is bound to the node; the emulator keeps
# no graph, so a node gets none of them (simplified).
NODE_GRAPH_RESOURCES = {"secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes", "resourceclaims", "resourceslices", "serviceaccounts", "volumeattachments"}


def node_name_of(ident):
    """pkg/auth/nodeidentifier: user system:node:<name> in group system:nodes."""
    if ident and ident["user"].startswith("system:node:") and "system:nodes" in ident["groups"]:
        return ident["user"][len("system:node:"):]
    return None


class Unauthorized(Exception):
    pass


# aws-iam-authenticator's token checks (pkg/token/token.go, v0.7.x).
IAM_PREFIX = "k8s-aws-v1."
IAM_PARAMS = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"}
IAM_REGION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# kube-apiserver's --authentication-token-webhook-cache-ttl default: how
# long a verified token's AWS identity is kept (the mapping is redone on
# every request here, see the docstring).
TOKEN_CACHE_SECONDS = 120


def aws_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="-_.~")


def parse_iam_token(token, now_dt):
    """The presigned URL inside a token, checked as tokenVerifier.Verify
    checks it before it calls STS; returns (url parts, lower-cased params).
    Raises Unauthorized with the authenticator's reason."""
    import binascii
    import urllib.parse

    if len(token) > 4096:
        raise Unauthorized("token is too large")
    if not token.startswith(IAM_PREFIX):
        raise Unauthorized(f'token is missing expected "{IAM_PREFIX}" prefix')
    body = token[len(IAM_PREFIX):]
    # base64.RawURLEncoding: URL alphabet, no padding.
    if not re.fullmatch(r"[A-Za-z0-9_-]*", body) or len(body) % 4 == 1:
        raise Unauthorized("illegal base64 data")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise Unauthorized(f"illegal base64 data: {e}")
    url = urllib.parse.urlsplit(raw)
    if url.scheme != "https":
        raise Unauthorized(f'unexpected scheme "{url.scheme}" in pre-signed URL')
    host = url.netloc
    m = re.fullmatch(r"sts\.([^.]+)\.amazonaws\.com", host)
    if host == "sts.amazonaws.com":
        region = "us-east-1"
    elif m and IAM_REGION.match(m.group(1)):
        region = m.group(1)
    else:
        raise Unauthorized(f'unexpected hostname "{host}" in pre-signed URL')
    if url.path != "/":
        raise Unauthorized("unexpected path in pre-signed URL")
    if ";" in url.query:
        raise Unauthorized("malformed query parameter")
    pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    seen, params = set(), {}
    for k, v in pairs:
        if k.lower() in seen:
            raise Unauthorized(f'duplicate query parameter found: "{k}"')
        seen.add(k.lower())
        if k.lower() not in IAM_PARAMS:
            raise Unauthorized(f'non-whitelisted query parameter "{k}"')
        params[k.lower()] = v
    if params.get("action") != "GetCallerIdentity":
        raise Unauthorized("unexpected action parameter in pre-signed URL")
    if not any(h.lower() == "x-k8s-aws-id" for h in params.get("x-amz-signedheaders", "").split(";")):
        raise Unauthorized("client did not sign the x-k8s-aws-id header in the pre-signed URL")
    expires = params.get("x-amz-expires", "")
    if not re.fullmatch(r"[+-]?\d+", expires) or not 0 <= int(expires) <= 900:
        raise Unauthorized(f"invalid X-Amz-Expires parameter in pre-signed URL: {expires}")
    date = params.get("x-amz-date", "")
    if not date:
        raise Unauthorized("X-Amz-Date parameter must be present in pre-signed URL")
    try:
        signed_at = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Unauthorized(f"error parsing X-Amz-Date parameter {date}")
    if now_dt > signed_at + datetime.timedelta(minutes=15):
        raise Unauthorized(f"X-Amz-Date parameter is expired (15 minute expiration) {signed_at}")
    return url, region, pairs, params


def sigv4_presigned_signature(secret, host, region, pairs, params, cluster_id):
    """The signature STS computes for the GET the authenticator sends:
    the token's URL with headers host and x-k8s-aws-id (the server's
    cluster ID) and an empty body (SigV4, "Create a signed AWS API request",
    IAM User Guide; presigned non-S3 requests hash the empty payload, see
    rusoto/rusoto#1439). Raises Unauthorized where STS would refuse."""
    import hashlib
    import hmac

    cred = params.get("x-amz-credential", "").split("/")
    if len(cred) != 5 or cred[3] != "sts" or cred[4] != "aws4_request":
        raise Unauthorized("IncompleteSignature: credential scope is not <key>/<date>/<region>/sts/aws4_request")
    if params.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise Unauthorized("IncompleteSignature: X-Amz-Algorithm must be AWS4-HMAC-SHA256")
    _akid, day, scope_region = cred[0], cred[1], cred[2]
    if day != params["x-amz-date"][:8]:
        raise Unauthorized("SignatureDoesNotMatch: credential scope date is not the date of X-Amz-Date")
    if scope_region != region:
        raise Unauthorized(f"SignatureDoesNotMatch: credential should be scoped to a valid region ({region}), not {scope_region}")
    sent = {"host": host, "x-k8s-aws-id": cluster_id, "accept": "application/json"}
    signed = params["x-amz-signedheaders"].split(";")
    for h in signed:
        if h not in sent:
            raise Unauthorized(f"SignatureDoesNotMatch: the verifier does not send signed header {h}")
    query = "&".join(f"{k}={v}" for k, v in sorted((aws_quote(k), aws_quote(v)) for k, v in pairs if k.lower() != "x-amz-signature"))
    canonical = "\n".join(["GET", "/", query, "".join(f"{h}:{sent[h]}\n" for h in signed), ";".join(signed), EMPTY_SHA256])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["x-amz-date"], f"{day}/{scope_region}/sts/aws4_request", hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, scope_region, "sts", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonicalize_arn(arn):
    """pkg/arn/arn.go Canonicalize: (principal type, canonical ARN)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise Unauthorized(f"arn '{arn}' is invalid")
    _, partition, service, _region, account, resource = parts
    if partition not in ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"):
        raise Unauthorized(f"arn '{arn}' does not have a recognized partition")
    res = resource.split("/")
    if service == "sts":
        if res[0] == "federated-user":
            return "federated-user", arn
        if res[0] == "assumed-role":
            if len(res) < 3:
                raise Unauthorized(f"assumed-role arn '{arn}' does not have a role")
            return "assumed-role", f"arn:{partition}:iam::{account}:role/{'/'.join(res[1:-1])}"
        raise Unauthorized(f"unrecognized resource {resource} for service sts")
    if service == "iam" and res[0] in ("role", "user", "root"):
        return res[0], arn
    if service == "iam":
        raise Unauthorized(f"unrecognized resource {resource} for service iam")
    raise Unauthorized(f"service {service} in arn {arn} is not a valid service for identities")


def aws_auth_mappings(cm):
    """pkg/mapper/configmap/configmap.go ParseMap: mapRoles, mapUsers
    (YAML lists; keys matched case-insensitively, as Go's JSON decoding
    does) and mapAccounts; invalid entries are skipped."""
    data = (cm or {}).get("data") or {}
    out = {}
    for key, arn_key in (("mapRoles", "rolearn"), ("mapUsers", "userarn")):
        try:
            items = yaml.safe_load(data.get(key) or "[]") or []
        except yaml.YAMLError:
            items = []
        entries = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            entry = {str(k).lower(): v for k, v in item.items()}
            if isinstance(entry.get(arn_key), str) and entry[arn_key]:
                entries.append(entry)
        out[key] = entries
    try:
        out["mapAccounts"] = [str(a) for a in (yaml.safe_load(data.get("mapAccounts") or "[]") or [])]
    except yaml.YAMLError:
        out["mapAccounts"] = []
    return out


def render_iam_template(template, ident):
    """pkg/server/server.go renderTemplate (no {{EC2PrivateDNSName}}: the
    emulator does not look instances up)."""
    if "{{EC2PrivateDNSName}}" in template:
        raise Unauthorized("renderTemplates error: {{EC2PrivateDNSName}} is not emulated")
    session = ident.get("session") or ""
    return (template.replace("{{AccountID}}", ident["account"])
            .replace("{{SessionName}}", session.replace("@", "-"))
            .replace("{{SessionNameRaw}}", session)
            .replace("{{AccessKeyID}}", ident["access_key"]))


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
        crds = json.load(open(os.path.join(HERE, "schemas", f"calico-{args.calico}.json")))["kinds"]
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
        self.races = []
        self.auth_log = []
        self.token_cache = {}
        self.http_session = None
        self.static_tokens = self.load_token_file(args.token_auth_file) if args.token_auth_file else {}

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
        if fault and fault["kind"] == "expired":
            # What the apiserver answers a continue token older than the
            # last etcd compaction (storage/etcd3: 410 Gone, reason Expired).
            return status_error(410, "Expired", "The provided continue parameter is too old to display a consistent list result. "
                                "You can start a new list without the continue parameter.")
        if fault and fault["kind"] in ("429", "5xx"):
            code = 429 if fault["kind"] == "429" else fault.get("code", 503)
            resp = status_error(code, "TooManyRequests" if code == 429 else "ServiceUnavailable", "injected fault")
            if code == 429:
                resp.headers["Retry-After"] = str(fault.get("retry_after", 1))
            return resp
        if self.auth_on:
            ident, why = await self.authenticate(request)
            if ident is None:
                self.auth_log.append({"method": request.method, "path": path, "reason": why})
                return status_error(401, "Unauthorized", "Unauthorized")
            if self.args.rbac:
                info = request_info(request.method, path, request.query)
                allowed, reason = self.authorize_rbac(ident, info)
                if not allowed:
                    return self.forbidden(ident, info, reason)
                node = node_name_of(ident)
                if node is not None:
                    try:
                        await self.node_restriction(node, info, request)
                    except ApiError as e:
                        return status_error(e.code, e.reason, e.message, e.details)
            elif self.args.tls:
                denied = self.legacy_denied(ident, request)
                if denied:
                    return denied
        else:
            denied = self.authorize(request)
            if denied:
                return denied
        try:
            resp = await self.route(request)
        except ApiError as e:
            resp = status_error(e.code, e.reason, e.message, e.details)
        if self.races and request.method == "GET" and resp.status == 200:
            self.after_read(path, resp)
        if fault and fault["kind"] == "drop":
            # The request took effect; the answer never arrives.
            request.transport.close()
            raise ConnectionResetError("injected: response dropped")
        return resp

    def take_fault(self, request):
        for f in self.faults:
            if (f["count"] > 0 and request.method in f.get("methods", [request.method]) and f.get("path", "") in request.path
                    and f.get("query", "") in request.query_string):
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

    # ---- authentication (--tls, --token-auth-file, --iam-sts) -------------

    @property
    def auth_on(self):
        return bool(self.args.rbac or self.args.iam_sts or self.args.token_auth_file)

    async def authenticate(self, request):
        """(identity, None), or (None, why) when the request carries no
        credential or only invalid ones. In kube-apiserver's order
        (pkg/kubeapiserver/authenticator/config.go): a verified client
        certificate first, then bearer tokens (the static token file, then
        the webhook, here aws-iam-authenticator's checks); every
        authenticated user also gets system:authenticated
        (AuthenticatedGroupAdder). There is no anonymous user (as with
        --anonymous-auth=false)."""
        cert = request.transport.get_extra_info("peercert") if self.args.tls else None
        if cert:
            subject = [(k, v) for rdn in cert.get("subject", ()) for k, v in rdn]
            cn = [v for k, v in subject if k == "commonName"]
            groups = [v for k, v in subject if k == "organizationName"]
            return self.with_authenticated({"user": cn[0] if cn else "", "groups": groups, "authenticator": "x509"}), None
        header = request.headers.get("Authorization", "")
        parts = header.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return None, "no client certificate and no bearer token" if not header else "the Authorization header is not a bearer token"
        token = parts[1]
        if token in self.static_tokens:
            return self.with_authenticated(copy.deepcopy(self.static_tokens[token])), None
        if self.args.iam_sts:
            try:
                return self.with_authenticated(await self.iam_identity(token)), None
            except Unauthorized as e:
                return None, f"aws-iam-authenticator: {e}"
        return None, "the bearer token is not known to any authenticator"

    @staticmethod
    def with_authenticated(ident):
        if "system:authenticated" not in ident["groups"]:
            ident["groups"] = list(ident["groups"]) + ["system:authenticated"]
        return ident

    def load_token_file(self, path):
        """kube-apiserver --token-auth-file (k8s.io/apiserver/pkg/
        authentication/token/tokenfile): CSV token,user,uid,"group1,group2"."""
        import csv

        tokens = {}
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if not row or not row[0].strip() or row[0].startswith("#"):
                    continue
                if len(row) < 3:
                    raise SystemExit(f"{path}: token file lines need token,user,uid[,groups]")
                groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
                tokens[row[0]] = {"user": row[1], "uid": row[2], "groups": groups, "authenticator": "token-file"}
        return tokens

    async def moto_state(self):
        """moto's own record of its credentials (GET /moto-api/data.json,
        the state its dashboard shows): IAM access keys with their secrets
        and status, and AssumeRole sessions with their session tokens."""
        async with self.http().get(self.args.iam_sts.rstrip("/") + "/moto-api/data.json") as r:
            if r.status != 200:
                raise Unauthorized(f"STS (moto) state not readable: HTTP {r.status}")
            return json.loads(await r.text())

    def http(self):
        if self.http_session is None:
            self.http_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self.http_session

    async def iam_identity(self, token):
        """aws-iam-authenticator's server: tokenVerifier.Verify, then the
        ConfigMap mapper, then renderTemplates (see the docstring)."""
        import hmac
        import time

        url, region, pairs, params = parse_iam_token(token, datetime.datetime.now(datetime.timezone.utc))
        akid = params.get("x-amz-credential", "").split("/")[0]
        cached = self.token_cache.get(token)
        if cached and cached[0] > time.monotonic():
            sts = cached[1]
        else:
            state = await self.moto_state()
            keys = {k["access_key_id"]: k for k in (state.get("iam") or {}).get("AccessKey", [])}
            sessions = {s["access_key_id"]: s for s in (state.get("sts") or {}).get("AssumedRole", [])}
            key = keys.get(akid) or sessions.get(akid)
            if key is None or key.get("status", "Active") != "Active":
                raise Unauthorized("STS: InvalidClientTokenId: The security token included in the request is invalid.")
            session = sessions.get(akid)
            if session is not None and params.get("x-amz-security-token") != session.get("session_token"):
                raise Unauthorized("STS: InvalidClientTokenId: temporary credentials need their session token (X-Amz-Security-Token)")
            if session is None and "x-amz-security-token" in params:
                raise Unauthorized("STS: InvalidClientTokenId: The security token included in the request is invalid.")
            expected = sigv4_presigned_signature(key["secret_access_key"], url.netloc, region, pairs, params, self.args.iam_cluster_id)
            if not hmac.compare_digest(expected, params.get("x-amz-signature", "")):
                raise Unauthorized("STS: SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided (wrong key, wrong cluster ID in x-k8s-aws-id, or a changed URL)")
            sts = await self.sts_caller_identity(akid, region, params.get("x-amz-security-token"))
            self.token_cache[token] = (time.monotonic() + TOKEN_CACHE_SECONDS, sts)
        kind, canonical = canonicalize_arn(sts["arn"])
        ident = {"arn": sts["arn"], "canonical": canonical, "account": sts["account"], "user_id": sts["user_id"], "access_key": akid, "session": None}
        if kind not in ("federated-user", "user", "root"):
            parts = sts["user_id"].split(":")
            if len(parts) != 2:
                raise Unauthorized(f'malformed UserID "{sts["user_id"]}"')
            ident["user_id"], ident["session"] = parts
        cm_key = self.key(self.resources[("", "v1", "configmaps")], "kube-system", "aws-auth")
        maps = aws_auth_mappings(self.store.objects.get(cm_key))
        lower = canonical.lower()
        mapping = next((m for m in maps["mapRoles"] if m["rolearn"].lower() == lower), None)
        if mapping is None:
            mapping = next((m for m in maps["mapUsers"] if m["userarn"].lower() == lower), None)
        if mapping is not None:
            user = render_iam_template(str(mapping.get("username") or ""), ident)
            groups = [render_iam_template(str(g), ident) for g in mapping.get("groups") or []]
        elif ident["account"] in maps["mapAccounts"]:
            user, groups = canonical, []
        else:
            raise Unauthorized(f"ARN is not mapped: {canonical} (kube-system/aws-auth mapRoles/mapUsers)")
        extra = {"arn": [sts["arn"]], "canonicalArn": [canonical], "accessKeyId": [akid], "principalId": [ident["user_id"]]}
        if ident["session"] is not None:
            extra["sessionName"] = [ident["session"]]
        return {"user": user, "groups": groups, "uid": f"aws-iam-authenticator:{ident['account']}:{ident['user_id']}", "extra": extra, "authenticator": "aws-iam-authenticator"}

    async def sts_caller_identity(self, akid, region, session_token):
        """GetCallerIdentity for the token's access key, asked of moto (see
        the docstring: moto serves a presigned GET as S3, so this is a POST
        with a SigV4-shaped Authorization header naming the key)."""
        import xml.etree.ElementTree as ET

        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={akid}/{datetime.datetime.now(datetime.timezone.utc):%Y%m%d}/{region}/sts/aws4_request, SignedHeaders=host, Signature=00",
        }
        if session_token:
            headers["X-Amz-Security-Token"] = session_token
        try:
            async with self.http().post(self.args.iam_sts, data="Action=GetCallerIdentity&Version=2011-06-15", headers=headers) as r:
                text = await r.text()
                if r.status != 200:
                    raise Unauthorized(f"error from AWS (expected 200, got {r.status}). Body: {text[:300]}")
        except aiohttp.ClientError as e:
            raise Unauthorized(f"error during GET: {e}")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            raise Unauthorized(f"STS answer not understood: {e}")
        found = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if not found.get("Arn"):
            raise Unauthorized("STS answer has no Arn")
        return {"arn": found["Arn"], "account": found.get("Account", ""), "user_id": found.get("UserId", "")}

    # ---- authorization (--rbac) --------------------------------------------

    def authorize_rbac(self, ident, info):
        """kube-apiserver --authorization-mode=Node,RBAC as kubeadm sets it,
        behind the privileged-group short cut: (allowed, reason)."""
        if "system:masters" in ident["groups"]:
            return True, ""
        reasons = []
        node = node_name_of(ident)
        if node is not None:
            ok, reason = self.node_authorize(node, info)
            if ok:
                return True, ""
            if reason:
                reasons.append(reason)
        ok, reason = self.rbac_allows(ident, info)
        if ok:
            return True, ""
        if reason:
            reasons.append(reason)
        return False, "\n".join(reasons)

    def rbac_allows(self, ident, info):
        """RBACAuthorizer.Authorize: ClusterRoleBindings, then the request
        namespace's RoleBindings; a binding whose role is missing adds an
        error to the reason."""
        errors = []
        crb_res = ("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        rb_res = ("rbac.authorization.k8s.io", "v1", "rolebindings")
        for key, binding in sorted(self.store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
            if key[0] == crb_res:
                binding_ns = ""
            elif key[0] == rb_res and info["namespace"] and key[1] == info["namespace"]:
                binding_ns = key[1]
            else:
                continue
            if not any(applies_to(s, ident, binding_ns) for s in binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef") or {}
            rules = self.role_rules(ref.get("kind"), ref.get("name"), binding_ns, errors)
            if rules and any(rule_allows(info, r) for r in rules):
                return True, ""
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")

    def role_rules(self, kind, name, ns, errors):
        if kind == "ClusterRole":
            role = self.store.objects.get((("rbac.authorization.k8s.io", "v1", "clusterroles"), None, name))
            if role is None:
                errors.append(f'clusterrole.rbac.authorization.k8s.io "{name}" not found')
                return None
            return self.effective_rules(role, set())
        if kind == "Role" and ns:
            role = self.store.objects.get((("rbac.authorization.k8s.io", "v1", "roles"), ns, name))
            if role is None:
                errors.append(f'role.rbac.authorization.k8s.io "{name}" not found')
                return None
            return role.get("rules") or []
        return None

    def effective_rules(self, role, seen):
        """A ClusterRole's rules; an aggregated one's are those of the
        ClusterRoles its aggregationRule selects (what the clusterrole-
        aggregation controller writes into it, pkg/controller/
        clusterroleaggregation), matchLabels selectors only."""
        agg = role.get("aggregationRule")
        name = role["metadata"]["name"]
        if not agg:
            return role.get("rules") or []
        seen = seen | {name}
        out = []
        for sel in agg.get("clusterRoleSelectors") or []:
            want = sel.get("matchLabels") or {}
            if not want:
                continue
            for key, other in sorted(self.store.objects.items(), key=lambda kv: kv[0][2]):
                if key[0] != ("rbac.authorization.k8s.io", "v1", "clusterroles") or key[2] in seen:
                    continue
                labels = other["metadata"].get("labels") or {}
                if all(labels.get(k) == v for k, v in want.items()):
                    for r in self.effective_rules(other, seen):
                        if r not in out:
                            out.append(r)
        return out

    def node_authorize(self, node, info):
        """The Node authorizer, simplified (see the docstring)."""
        if not info["resource_request"]:
            return False, ""
        group, res, sub, verb, name = info["group"], info["resource"], info["subresource"], info["verb"], info["name"]
        if group == "" and res in NODE_GRAPH_RESOURCES and (res != "serviceaccounts" or sub == "token"):
            return False, f"no relationship found between node '{node}' and this object"
        if group == "coordination.k8s.io" and res == "leases":
            if verb not in ("get", "create", "update", "patch", "delete"):
                return False, "can only get, create, update, patch, or delete a node lease"
            if info["namespace"] != "kube-node-lease":
                return False, "can only access leases in the kube-node-lease namespace"
            if verb != "create" and name != node:
                return False, "can only access node lease with the same name as the requesting node"
            return True, ""
        if group == "storage.k8s.io" and res == "csinodes":
            if verb not in ("get", "create", "update", "patch", "delete"):
                return False, "can only get, create, update, patch, or delete a CSINode"
            if verb != "create" and name != node:
                return False, "can only access CSINode with the same name as the requesting node"
            return True, ""
        if group == "" and res == "nodes" and verb in ("get", "list", "watch") and name != node:
            # AuthorizeNodeWithSelectors (on by default since 1.32): a node
            # reads its own Node object only.
            return False, f"node '{node}' cannot read '{name}', only its own Node object" if name else f"node '{node}' can only {verb} its own Node object (fieldSelector metadata.name={node})"
        return any(rule_allows(info, r) for r in NODE_RULES), ""

    async def node_restriction(self, node, info, request):
        """The NodeRestriction admission plugin's checks on what a node
        writes (plugin/pkg/admission/noderestriction), for Nodes and pods."""
        if not info["resource_request"] or info["group"] != "":
            return
        verb, res, sub, name = info["verb"], info["resource"], info["subresource"], info["name"]
        if verb not in ("create", "update", "patch", "delete"):
            return
        if res == "nodes":
            if verb == "create" and not name:
                try:
                    name = ((json.loads(await request.read()) or {}).get("metadata") or {}).get("name") or ""
                except ValueError:
                    return
            if name != node:
                raise ApiError(403, "Forbidden", f'nodes "{name}" is forbidden: node "{node}" is not allowed to modify node "{name}"', {"name": name, "kind": "nodes"})
            return
        if res != "pods":
            return
        if verb == "create" and not name:
            try:
                pod = json.loads(await request.read()) or {}
            except ValueError:
                return
            pname = (pod.get("metadata") or {}).get("name") or ""
            if "kubernetes.io/config.mirror" not in ((pod.get("metadata") or {}).get("annotations") or {}):
                raise ApiError(403, "Forbidden", f'pods "{pname}" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "{node}" can only create mirror pods', {"name": pname, "kind": "pods"})
            if (pod.get("spec") or {}).get("nodeName") != node:
                raise ApiError(403, "Forbidden", f'pods "{pname}" is forbidden: node "{node}" can only create pods with spec.nodeName set to itself', {"name": pname, "kind": "pods"})
            return
        stored = self.store.objects.get((("", "v1", "pods"), info["namespace"], name))
        if stored is None or (stored.get("spec") or {}).get("nodeName") == node:
            return
        what = {("delete", ""): "delete pods", ("create", "eviction"): "evict pods", ("update", "status"): "update pod status for pods", ("patch", "status"): "update pod status for pods"}.get((verb, sub))
        if what:
            raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: node "{node}" can only {what} with spec.nodeName set to itself', {"name": name, "kind": "pods"})

    @staticmethod
    def forbidden(ident, info, reason):
        """responsewriters.Forbidden + apierrors.NewForbidden, exactly."""
        user = ident["user"]
        if not info["resource_request"]:
            msg = f'User "{user}" cannot {info["verb"]} path "{info["path"]}"'
        else:
            resource = info["resource"] + ("/" + info["subresource"] if info["subresource"] else "")
            where = f'in the namespace "{info["namespace"]}"' if info["namespace"] else "at the cluster scope"
            msg = f'User "{user}" cannot {info["verb"]} resource "{resource}" in API group "{info["group"]}" {where}'
        if reason:
            msg += ": " + reason
        details = {}
        if not info["resource_request"]:
            message = f"forbidden: {msg}"
        else:
            qualified = info["resource"] + ("." + info["group"] if info["group"] else "")
            message = f'{qualified} "{info["name"]}" is forbidden: {msg}' if info["name"] else f"{qualified} is forbidden: {msg}"
            details = {k: v for k, v in (("name", info["name"]), ("group", info["group"]), ("kind", info["resource"])) if v}
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Forbidden", "details": details, "code": 403}
        return aiohttp.web.json_response(body, status=403, headers={"X-Content-Type-Options": "nosniff"})

    def legacy_denied(self, ident, request):
        """Without --rbac, --tls keeps its rule: admin groups only."""
        if not any(g in ("kubeadm:cluster-admins", "system:masters") for g in ident["groups"]):
            return status_error(403, "Forbidden", f'User "{ident["user"] or "system:anonymous"}" cannot {request.method.lower()} resource at {request.path}')
        return None

    def seed_rbac(self):
        """The bootstrap policy (see BOOTSTRAP_CLUSTER_ROLES) and kubeadm's
        bindings, stored as the API server and kubeadm store them."""
        cr = self.resources[("rbac.authorization.k8s.io", "v1", "clusterroles")]
        crb = self.resources[("rbac.authorization.k8s.io", "v1", "clusterrolebindings")]
        base_meta = lambda name, extra: {"name": name, "labels": dict({"kubernetes.io/bootstrapping": "rbac-defaults"}, **extra), "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}
        for name, spec in BOOTSTRAP_CLUSTER_ROLES.items():
            body = {"metadata": base_meta(name, spec.get("labels", {}))}
            if "aggregate" in spec:
                body["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATION[spec["aggregate"]]: "true"}}]}
            body["rules"] = copy.deepcopy(spec.get("rules", []))
            self.commit(cr, None, name, self.finish(cr, None, name, body, None), None, {}, False)
        for name in AGGREGATION:
            key = self.key(cr, None, name)
            self.store.objects[key]["rules"] = copy.deepcopy(self.effective_rules(self.store.objects[key], set()))
        for name, role, subjects in BOOTSTRAP_BINDINGS:
            meta = base_meta(name, {}) if not name.startswith("kubeadm:") else {"name": name}
            body = {"metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": copy.deepcopy(subjects)}
            self.commit(crb, None, name, self.finish(crb, None, name, body, None), None, {}, False)

    # ---- concurrent writers (POST /_test/race) ----------------------------

    def resolve(self, path):
        m = PATH.match(path)
        if not m:
            return None
        group, version = ("", "v1") if m["cv"] else (m["g"], m["v"])
        res = self.resources.get((group, version, m["plural"]))
        if res is None:
            return None
        return res, m["ns"], m["name"], m["sub"]

    def after_read(self, path, resp):
        """Runs the races a client's read has just triggered."""
        target = self.resolve(path)
        if target is None:
            return
        res, ns, name, sub = target
        for race in list(self.races):
            rres, rns, rname = race["target"]
            if rres is not res:
                continue
            if name is not None:
                hit = name == rname and ns == rns and sub in (None, "status")
            else:
                hit = False
                if ns in (None, rns):
                    try:
                        items = json.loads(resp.body).get("items") or []
                    except (ValueError, TypeError, AttributeError):
                        items = []
                    hit = any((i.get("metadata") or {}).get("name") == rname and (i.get("metadata") or {}).get("namespace") == rns for i in items)
            if not hit:
                continue
            race["times"] -= 1
            if race["times"] <= 0:
                self.races.remove(race)
            try:
                self.race_write(race)
            except ApiError as e:
                print(f"kube_emulator: race write to {race['path']} refused: {e.message}", file=sys.stderr, flush=True)

    def race_write(self, race):
        """Another controller's merge patch, as manager "other-controller";
        the resourceVersion moves even if the patch changes nothing."""
        res, ns, name = race["target"]
        key = self.key(res, ns, name)
        old = self.store.objects.get(key)
        if old is None:
            return
        patch = race["merge"]
        status_patch = patch.get("status") if res.status else None
        new = merge_patch(copy.deepcopy(old), {k: v for k, v in patch.items() if not (res.status and k == "status")})
        new = self.finish(res, ns, name, new, old)
        if status_patch is not None:
            new["status"] = merge_patch(old.get("status") or {}, status_patch)
        managed = self.update_ownership(res, ns, name, old, new, "other-controller", None)
        new, changed = self.commit(res, ns, name, new, old, managed, False)
        if not changed:
            new = copy.deepcopy(new)
            new["metadata"]["resourceVersion"] = str(next(self.store.version))
            self.store.objects[key] = new
        race["writes"] = race.get("writes", 0) + 1

    def check_precondition(self, res, name, body, old):
        """A metadata.resourceVersion in a PUT or merge-patch body is a
        precondition (k8s.io/apiserver/pkg/registry/generic/registry
        Store.Update; storage.ErrConflict as apierrors.NewConflict)."""
        rv = ((body.get("metadata") or {}).get("resourceVersion")) if isinstance(body, dict) and isinstance(body.get("metadata"), dict) else None
        if rv not in (None, "") and rv != old["metadata"].get("resourceVersion"):
            qualified = res.plural + ("." + res.group if res.group else "")
            details = {k: v for k, v in (("name", name), ("group", res.group), ("kind", res.plural)) if v}
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; please apply your changes to the latest version and try again', details)

    # ---- immutable fields (--immutable) -------------------------------------

    def check_immutable(self, res, name, obj, old):
        """What ValidateXUpdate refuses (pkg/apis/apps/validation,
        pkg/apis/batch/validation, pkg/apis/rbac/validation,
        pkg/apis/core/validation): 422 Invalid, the message as
        apierrors.NewInvalid builds it."""
        errs = []  # (reason, field, value or Ellipsis, detail)
        k = res.kind
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        if k in ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet", "Job") and spec.get("selector") != old_spec.get("selector"):
            errs.append(("FieldValueInvalid", "spec.selector", spec.get("selector"), "field is immutable"))
        if k == "Job" and spec.get("template") != old_spec.get("template"):
            errs.append(("FieldValueInvalid", "spec.template", spec.get("template"), "field is immutable"))
        if k in ("ClusterRoleBinding", "RoleBinding") and obj.get("roleRef") != old.get("roleRef"):
            errs.append(("FieldValueInvalid", "roleRef", obj.get("roleRef"), "cannot change roleRef"))
        if k == "Service":
            old_ip, new_ip = old_spec.get("clusterIP"), spec.get("clusterIP")
            if old_ip and new_ip and new_ip != old_ip:
                errs.append(("FieldValueInvalid", "spec.clusterIPs[0]", spec.get("clusterIPs") or [new_ip], "may not change once set"))
        if k in ("ConfigMap", "Secret") and old.get("immutable") is True:
            if obj.get("immutable") is not True:
                errs.append(("FieldValueForbidden", "immutable", Ellipsis, "field is immutable when `immutable` is set"))
            for f in ("data", "binaryData") if k == "ConfigMap" else ("data",):
                if (obj.get(f) or {}) != (old.get(f) or {}):
                    errs.append(("FieldValueForbidden", f, Ellipsis, "field is immutable when `immutable` is set"))
        if k == "Secret" and obj.get("type") != old.get("type"):
            errs.append(("FieldValueInvalid", "type", obj.get("type"), "field is immutable"))
        if not errs:
            return
        causes, texts = [], []
        for reason, field, value, detail in errs:
            body = f"Forbidden: {detail}" if value is Ellipsis else f"Invalid value: {json.dumps(value, separators=(',', ':'))}: {detail}"
            causes.append({"reason": reason, "message": body, "field": field})
            texts.append(f"{field}: {body}")
        qualified = k + ("." + res.group if res.group else "")
        agg = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        details = {k2: v for k2, v in (("name", name), ("group", res.group), ("kind", k)) if v}
        details["causes"] = causes
        raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {agg}', details)

    # ---- dead nodes (--dead-nodes) ------------------------------------------

    def node_state(self, pod):
        """None (not bound), "ready", "unready" (Ready not True) or "missing"."""
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return None
        node = self.store.objects.get((("", "v1", "nodes"), None, node_name))
        if node is None:
            return "missing"
        conds = (node.get("status") or {}).get("conditions") or []
        return "ready" if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds) else "unready"

    def podgc_delay(self):
        """PodGC's quarantine for pods of a deleted Node (40 s in
        pkg/controller/podgc), scaled like grace periods."""
        return 40 * self.args.grace_scale

    async def podgc_node(self, node_name):
        """PodGC gcOrphaned: once the quarantine is over, the pods still
        bound to a Node that is gone are deleted at once (grace 0)."""
        await asyncio.sleep(self.podgc_delay())
        if (("", "v1", "nodes"), None, node_name) in self.store.objects:
            return
        for key in [k for k, o in self.store.objects.items() if k[0] == ("", "v1", "pods") and (o.get("spec") or {}).get("nodeName") == node_name]:
            self.store.objects.pop(key, None)
            self.store.managed.pop(key, None)

    async def test_hook(self, request):
        if request.path == "/_test/log":
            return aiohttp.web.json_response([list(e) for e in self.log])
        if request.path == "/_test/writes":
            return aiohttp.web.json_response({"writes": sum(1 for m, _, dry in self.log if m != "GET" and not dry)})
        if request.path == "/_test/faults":
            if request.method == "POST":
                self.faults.append(await request.json())
            return aiohttp.web.json_response({"faults": self.faults})
        if request.path == "/_test/whoami":
            ident, why = await self.authenticate(request)
            if ident is None:
                self.auth_log.append({"method": request.method, "path": request.path, "reason": why})
                return status_error(401, "Unauthorized", "Unauthorized")
            return aiohttp.web.json_response({k: ident[k] for k in ("user", "groups", "uid", "extra", "authenticator") if k in ident})
        if request.path == "/_test/authlog":
            return aiohttp.web.json_response(self.auth_log)
        if request.path == "/_test/race":
            if request.method == "POST":
                plan = await request.json()
                target = self.resolve(plan.get("path", "")) if isinstance(plan, dict) else None
                if target is None or target[2] is None or target[3] is not None or not isinstance(plan.get("merge"), dict):
                    return status_error(400, "BadRequest", 'a race is {"path": "<object path>", "merge": {<merge patch>}, "times": N}')
                res, ns, name, _ = target
                self.races.append({"path": plan["path"], "merge": plan["merge"], "times": int(plan.get("times", 1)), "target": (res, ns, name), "writes": 0})
            return aiohttp.web.json_response({"races": [{k: v for k, v in r.items() if k != "target"} for r in self.races]})
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
        if path in ("/healthz", "/readyz", "/livez"):
            return aiohttp.web.Response(text="ok")
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
        meta = {"resourceVersion": str(next(self.store.version))}
        if query.get("limit"):
            items, more = self.page(items, query)
            meta.update(more)
        return aiohttp.web.json_response({"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": items})

    def page(self, items, query):
        """One page of a list under limit/continue, and the list metadata that goes with it."""
        try:
            limit = int(query["limit"])
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid limit {query['limit']!r}")
        if self.args.page_cap:
            limit = min(limit, self.args.page_cap)
        key = lambda o: [(o.get("metadata") or {}).get("namespace") or "", o["metadata"]["name"]]
        if query.get("continue"):
            try:
                after = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))["after"]
            except Exception:
                raise ApiError(400, "BadRequest", "continue key is not valid: the token does not decode")
            items = [o for o in items if key(o) > after]
        if limit <= 0 or len(items) <= limit:
            return items, {}
        token = base64.urlsafe_b64encode(json.dumps({"after": key(items[limit - 1])}).encode()).decode()
        return items[:limit], {"continue": token, "remainingItemCount": len(items) - limit}

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
        if old is not None and self.args.immutable and res.kind == "Service" and isinstance(obj.get("spec"), dict):
            # An update that leaves clusterIP(s) out keeps the allocated ones
            # (pkg/registry/core/service/storage patchAllocatedValues).
            for f in ("clusterIP", "clusterIPs"):
                if not obj["spec"].get(f) and (old.get("spec") or {}).get(f):
                    obj["spec"][f] = copy.deepcopy(old["spec"][f])
        apply_defaults(res, obj)
        errors = invalid_values({k: v for k, v in obj.items() if k != "status"}, res.shape)
        if errors:
            raise ApiError(422, "Invalid", f'{res.kind} "{name}" is invalid: ' + "; ".join(errors))
        if old is not None and self.args.immutable:
            self.check_immutable(res, name, obj, old)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if res.kind not in ("ConfigMap", "Secret", "Namespace", "ServiceAccount", "ClusterRoleBinding", "ClusterRole", "RoleBinding", "Role", "RuntimeClass"):
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
        self.check_precondition(res, name, body, old)
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
        self.check_precondition(res, name, body, old)
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
        if res.kind == "Node" and self.args.dead_nodes:
            asyncio.get_event_loop().create_task(self.podgc_node(name))
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
            # --dead-nodes: no kubelet confirms the deletion of a pod on a
            # Node that is not Ready; it stays Terminating until the Node
            # comes back or is deleted (then PodGC removes it).
            while self.args.dead_nodes and key in self.store.objects:
                state = self.node_state(self.store.objects[key])
                if state in (None, "ready"):
                    break
                if state == "missing":
                    await asyncio.sleep(self.podgc_delay())
                    break
                await asyncio.sleep(0.05)
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


def server_tls(ca_cert_path, ca_key_path, server_ip, client_cert_optional=False):
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
    # With bearer tokens (--iam-sts, --token-auth-file) a client may come
    # without a certificate, as to a real API server; one it sends is still
    # checked against the CA.
    ctx.verify_mode = ssl.CERT_OPTIONAL if client_cert_optional else ssl.CERT_REQUIRED
    return ctx


async def main():
    import logging
    # An injected dropped answer is not an error worth a traceback.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--calico-v3", action="store_true")
    # 3.32: the minor hybrid pins by default (src/versions/table.rs), so the
    # suite checks hybrid's Calico objects against the CRDs it will meet.
    p.add_argument("--calico", choices=CALICO_VERSIONS, default="3.32")
    p.add_argument("--rbac", action="store_true")
    p.add_argument("--iam-sts", metavar="URL")
    p.add_argument("--iam-cluster-id", metavar="ID")
    p.add_argument("--token-auth-file", metavar="FILE")
    p.add_argument("--immutable", action="store_true")
    p.add_argument("--dead-nodes", action="store_true")
    p.add_argument("--page-cap", type=int, default=0, metavar="N")
    p.add_argument("--operator", action="store_true")
    p.add_argument("--kube-version", default="1.36")
    p.add_argument("--grace-scale", type=float, default=0.05)
    p.add_argument("--tls", nargs=3, metavar=("CA_CERT", "CA_KEY", "SERVER_IP"))
    # The namespaces a control plane has once its bootstrap ran (kubeadm's,
    # and the CNI manifests' own).
    p.add_argument("--namespaces", default="default,kube-system,kube-public,kube-node-lease,tigera-operator,calico-system,kube-flannel")
    # KUBE_EMULATOR_EXTRA_ARGS: flags appended to every start, to run an
    # existing test suite under stricter ones without editing it (e.g.
    # KUBE_EMULATOR_EXTRA_ARGS="--immutable --calico 3.32" cargo test ...).
    import shlex
    args = p.parse_args(sys.argv[1:] + shlex.split(os.environ.get("KUBE_EMULATOR_EXTRA_ARGS", "")))
    if bool(args.iam_sts) != bool(args.iam_cluster_id):
        p.error("--iam-sts and --iam-cluster-id go together")
    emu = Emulator(args)
    ns_res = emu.resources[("", "v1", "namespaces")]
    for ns in filter(None, args.namespaces.split(",")):
        obj = emu.finish(ns_res, None, ns, {"metadata": {"name": ns}}, None)
        emu.commit(ns_res, None, ns, obj, None, {}, False)
    if args.rbac:
        emu.seed_rbac()

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
    ctx = server_tls(*args.tls, client_cert_optional=bool(args.iam_sts or args.token_auth_file)) if args.tls else None
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=ctx)
    await site.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["build-calico-schema"]:
        if len(sys.argv) != 4:
            sys.exit("usage: kube_emulator.py build-calico-schema SRC_DIR OUT_JSON")
        with open(sys.argv[3], "w") as f:
            json.dump(build_calico_schema(sys.argv[2]), f, indent=1)
            f.write("\n")
        sys.exit(0)
    asyncio.run(main())
