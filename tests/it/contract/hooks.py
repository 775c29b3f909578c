"""Schemathesis hooks for tests/it/contract.rs."""

import json

import schemathesis


# The import endpoint also takes NDJSON, which schemathesis cannot serialise by itself.
# The document's schema for it is a string (the lines as sent), but a generated list or
# object is sent as JSON lines too, so the server sees well-formed and broken items alike.
@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode("utf-8", "surrogatepass")
