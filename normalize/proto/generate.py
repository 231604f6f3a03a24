"""Build the Python code for ``marketdata.proto`` with grpcio-tools' bundled protoc.

``python -m normalize.proto.generate`` rewrites ``marketdata_pb2.py`` and
``marketdata_pb2.pyi`` beside the schema; ``--check`` exits 1 when they are stale. The
protoc version is pinned through ``grpcio-tools`` in ``pyproject.toml``, so the output is
byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
SCHEMAS = ("marketdata.proto",)


def generated_names(schema: str) -> tuple[str, str]:
    stem = schema.removesuffix(".proto")
    return f"{stem}_pb2.py", f"{stem}_pb2.pyi"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every schema into ``out_dir``; returns the files written."""
    from grpc_tools import protoc  # a build-time tool, not a runtime dependency

    written: list[Path] = []
    for schema in SCHEMAS:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / schema),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {schema}")
        written.extend(out_dir / name for name in generated_names(schema))
    return written


def stale_files() -> list[str]:
    """Generated files that differ from what protoc produces now (empty when fresh)."""
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for fresh in generate(Path(tmp)):
            committed = PROTO_DIR / fresh.name
            if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                stale.append(fresh.name)
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale: {', '.join(stale)}; run `python -m normalize.proto.generate`")
            return 1
        return 0
    for path in generate(PROTO_DIR):
        print(f"wrote {path.relative_to(PROTO_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
