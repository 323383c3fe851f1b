"""modelshelf's own gRPC server: HTTP/2 cleartext on one asyncio thread (``grpc_server``), its
frames (``frames``), HPACK decoder (``hpack``, ``hpack_tables``) and calls (``calls``). Written
from RFC 7540, RFC 7541 and gRPC's "gRPC over HTTP2"; see ``serve/grpc_worker.py`` for why."""
