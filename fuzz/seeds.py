#!/usr/bin/env python3
"""Seed corpus for the cargo-fuzz target `review`: the bench reviews (benches/data/*-review.json)
and every workload of tests/corpus wrapped in an AdmissionReview, as benches/fuzz_review.rs
seeds its loop (benches/support/fixtures.rs `review_of`).

    python3 fuzz/seeds.py fuzz/corpus/review
"""
import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                  "ReplicationController", "Job", "CronJob"}


def review_of(obj):
    kind = obj.get("kind") or "Pod"
    group = "" if kind == "Pod" else "apps"
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": "x"},
            "name": meta.get("name"), "namespace": meta.get("namespace"),
            "operation": "CREATE", "userInfo": {"username": "bench"}, "object": obj,
            "dryRun": False,
        },
    }


def documents(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (d for d in doc.get("items") or [] if isinstance(d, dict))
        elif isinstance(doc, dict):
            yield doc


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted((ROOT / "benches/data").glob("*-review.json")):
        (out / f"bench-{path.stem}").write_bytes(path.read_bytes())
        count += 1
    for path in sorted((ROOT / "tests/corpus").glob("*.yaml")):
        for i, doc in enumerate(documents(path)):
            if doc.get("kind") in WORKLOAD_KINDS:
                body = json.dumps(review_of(doc), separators=(",", ":"))
                (out / f"corpus-{path.stem}-{i}").write_text(body)
                count += 1
    print(f"{count} seeds in {out}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz/corpus/review"))
