"""Stands in for the kubelets of a cluster on the local emulators, for the
demo: moto boots nothing, so no node would ever register. For every
running instance of CLUSTER in the EC2 emulator it registers a Ready Node
in the Kubernetes API emulator, named like a real EC2 node (its private DNS
name) and labelled as its kubelet would label it (OS, and the Windows build
read off the image name), DELAY seconds after first seeing it.

usage: kubelets.py CLUSTER API_URL [DELAY]
The EC2 emulator comes from AWS_ENDPOINT_URL (scripts/moto.sh sets it).
Runs until killed. Loopback only: it talks to the two emulators, never to
an instance's address."""
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request

import boto3

cluster, api = sys.argv[1], sys.argv[2].rstrip("/")
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
# The label kubelet sets on Windows nodes, by Windows Server release.
BUILDS = {"2019": "10.0.17763", "2022": "10.0.20348", "2025": "10.0.26100"}


def labels_for(instance):
    if instance.get("Platform") != "windows":
        return {"kubernetes.io/os": "linux"}
    images = ec2.describe_images(ImageIds=[instance["ImageId"]])["Images"]
    name = images[0]["Name"] if images else ""
    build = next((b for year, b in BUILDS.items() if f"-{year}-" in name), BUILDS["2022"])
    return {"kubernetes.io/os": "windows", "node.kubernetes.io/windows-build": build}


def register(name, labels):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True", "message": "kubelet is posting ready status", "lastTransitionTime": now}]},
    }
    req = urllib.request.Request(f"{api}/api/v1/nodes", data=json.dumps(node).encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).read()
        print(f"kubelets: node {name} registered, Ready", flush=True)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # already there
            raise


first_seen, registered = {}, set()
while True:
    filters = [{"Name": "tag:hybrid:cluster", "Values": [cluster]}, {"Name": "instance-state-name", "Values": ["running"]}]
    for reservation in ec2.describe_instances(Filters=filters)["Reservations"]:
        for instance in reservation["Instances"]:
            name = instance.get("PrivateDnsName")
            if not name or name in registered:
                continue
            if time.monotonic() - first_seen.setdefault(name, time.monotonic()) < delay:
                continue
            register(name, labels_for(instance))
            registered.add(name)
    time.sleep(0.5)
