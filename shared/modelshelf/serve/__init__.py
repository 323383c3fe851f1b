"""``modelshelf serve``: a drop-in for ``seldon-core-microservice`` on its own HTTP/1.1
server (httptools, uvloop) and orjson.

Same command line, environment, ports, endpoints, bodies and status codes as seldon-core 1.18.2's
wrapper; the difference is the front end. The hot REST paths (predict, transform, route,
aggregate with a JSON body) skip Flask and gunicorn and seldon-core's per-request
``multiprocessing.Manager`` round trips; everything else is answered by seldon-core's own Flask
app, called in-process, so the rare paths behave exactly like the reference.

Modules: ``options`` (arguments, environment, the user's class), ``metrics`` (custom metrics
without a Manager), ``rest`` (the app: ASGI, and the direct entry ``http1``'s server calls),
``http1`` (the REST port's HTTP/1.1 server), ``grpc_worker`` (seldon-core's gRPC services),
``supervisor`` (processes, ports, signals; its ``main`` is the command).

Nothing is imported here: the launcher reads ``options`` without loading seldon-core and the
web stack.
"""
