"""A client built the way SDK users build one: Python stubs generated from proto/ with
grpcio-tools, then plain grpcio calls through the meshwork gateway.

usage: sdk_client.py GENERATED_DIR GATEWAY_ADDR TOKEN
Prints one JSON object with what it saw; exits non-zero on any unexpected outcome.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from meshwork.urlshortener.v1 import urlshortener_pb2 as pb  # noqa: E402
from meshwork.urlshortener.v1 import urlshortener_pb2_grpc as rpc  # noqa: E402


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[2])
    stub = rpc.UrlShortenerStub(channel)
    auth = (("authorization", "Bearer " + sys.argv[3]),)
    created = stub.Shorten(pb.ShortenRequest(long_url="https://python.example.com/sdk"), timeout=20, metadata=auth)
    resolved = stub.Resolve(pb.ResolveRequest(code=created.code, referrer="https://py.example.net/"), timeout=20)
    stats = stub.GetStats(pb.GetStatsRequest(code=created.code), timeout=20, metadata=auth)
    try:
        stub.GetStats(pb.GetStatsRequest(code=created.code), timeout=20)
        anonymous = "no error"
    except grpc.RpcError as e:
        anonymous = e.code().name
    try:
        stub.Shorten(pb.ShortenRequest(long_url="ftp://nope.example.com/"), timeout=20)
        bad = "no error"
    except grpc.RpcError as e:
        bad = {"code": e.code().name, "details": e.details()}
    try:
        stub.Resolve(pb.ResolveRequest(code="nosuch7"), timeout=20)
        missing = "no error"
    except grpc.RpcError as e:
        trailers = dict(e.trailing_metadata() or ())
        missing = {"code": e.code().name, "state": trailers.get("meshwork-link-state")}
    print(json.dumps({
        "code": created.code,
        "short_url": created.short_url,
        "long_url": resolved.long_url,
        "owner": created.link.owner,
        "total_clicks": stats.total_clicks,
        "anonymous_stats": anonymous,
        "referrers": [r.referrer for r in stats.top_referrers],
        "bad": bad,
        "missing": missing,
    }))


if __name__ == "__main__":
    main()
