"""The HTTP layer's shared pieces: the error handlers, body validation helpers, response
headers and typed access to the app's services. Only route modules and this package touch
``request``, ``websocket`` or ``g``."""
