"""Realtime: the broker every websocket listens through, entity events, and the Pusher
Channels protocol (v7) for ``pusher-js`` and Pusher's server libraries."""
