"""meshwork-sdk: typed gRPC clients for every meshwork service.

`meshwork.connect(address)` returns them all on one channel; the generated modules are
`meshwork.<service>.v1.<service>_pb2` (messages) and `..._pb2_grpc` (stubs).
"""

from meshwork._clients import SERVICES, Clients
from meshwork.connect import DEFAULT_TIMEOUT, connect

__all__ = ["DEFAULT_TIMEOUT", "SERVICES", "Clients", "connect"]
