"""Print the size of each built layer and function (`make layer-check`): files, unzipped bytes
and the zip Lambda would store, against Lambda's 250 MB unzipped limit."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import yaml

LIMIT = 250 * 1024 * 1024  # function and all its layers, unzipped


def sizes(folder: Path) -> tuple[int, int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(folder))
    return len(files), sum(p.stat().st_size for p in files), buffer.tell()


def main() -> int:
    build = Path(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build")
    template = yaml.safe_load((build / "template.yaml").read_text())
    total = 0
    for name, spec in template["Resources"].items():
        key = {
            "AWS::Serverless::LayerVersion": "ContentUri",
            "AWS::Serverless::Function": "CodeUri",
        }
        prop = key.get(spec.get("Type", ""))
        if not prop:
            continue
        count, unzipped, zipped = sizes(build / spec["Properties"][prop])
        total += unzipped if prop == "ContentUri" else 0
        print(f"{name:<22} {count:6d} files  {unzipped / 1e6:7.2f} MB unzipped", end="")
        print(f"  {zipped / 1e6:6.2f} MB zipped")
    print(f"layers: {total / 1e6:.2f} MB of Lambda's {LIMIT / 2**20:.0f} MiB unzipped limit")
    return 0 if total < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
