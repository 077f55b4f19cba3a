"""The versioned JSON schema of `kd-edge bench` output (benchmarks/bench_schema.json): load, validate, read.

Version history: 1 - first version (kd-edge 0.1).
"""
import json
from pathlib import Path

from kd_edge.errors import InputFileError

SCHEMA_NAME = "kd-edge-bench"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().with_name("bench_schema.json")


def load_schema():
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc):
    """Raise jsonschema.ValidationError if ``doc`` does not follow the schema."""
    import jsonschema

    jsonschema.validate(doc, load_schema())
    return doc


def read_results(path):
    """Read and validate a bench JSON; InputFileError naming the file on any problem."""
    import jsonschema

    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise InputFileError(path, f"not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise InputFileError(path, f"not a kd-edge bench result (schema is not {SCHEMA_NAME!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise InputFileError(path, f"bench schema_version {doc.get('schema_version')!r}, this kd-edge reads {SCHEMA_VERSION}")
    try:
        validate(doc)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise InputFileError(path, f"invalid bench result at {where}: {exc.message}") from exc
    return doc
