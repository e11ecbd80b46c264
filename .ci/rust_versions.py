"""Fails if a package in Cargo.lock declares a rust-version above edgekv's: this machine has one
toolchain and cannot fetch another, so such a dependency would break the build here."""
import json
import subprocess
import sys

metadata = subprocess.run(
    ["cargo", "metadata", "--locked", "--format-version", "1"],
    check=True, capture_output=True, text=True,
).stdout
packages = json.loads(metadata)["packages"]
ours = next(p for p in packages if p["name"] == "edgekv")["rust_version"]


def version(text):
    parts = [int("".join(c for c in x if c.isdigit()) or 0) for x in text.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


above = [
    f'{p["name"]} {p["version"]} needs {p["rust_version"]}'
    for p in packages
    if p.get("rust_version") and version(p["rust_version"]) > version(ours)
]
print(f"{len(packages)} packages checked against rust-version {ours}")
if above:
    sys.exit("above ours: " + "; ".join(above))
