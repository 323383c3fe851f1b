"""modelshelf's own HTTP/1.1 server for ``modelshelf serve``'s REST port (``server.py``), one
asyncio protocol per connection (``connection.py``)."""
