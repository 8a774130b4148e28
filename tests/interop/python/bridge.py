"""Drives the official Pusher Python server SDK for the interop tests.

Started by tests/interop/lib/python.mjs with the venv's python and one JSON
argument, {"app_id", "key", "secret", "host", "port"}. It builds one
pusher.Pusher client (plain HTTP) and prints {"ready": true, "version": ...}.
Then each stdin line is a call, {"id", "method", "args", "kwargs"}, answered
by one stdout line: {"id", "result"} or {"id", "error": {"type", "message"}}
(an SDK exception, e.g. PusherBadAuth for a 401, is an answer, not a crash).
Only the SDK methods below can be called.
"""

import json
import sys

import pusher
from pusher.version import VERSION

METHODS = frozenset(
    [
        "trigger",
        "trigger_batch",
        "channels_info",
        "channel_info",
        "users_info",
        "send_to_user",
        "terminate_user_connections",
        "authenticate",
        "authenticate_user",
        "validate_webhook",
    ]
)


def emit(message):
    """One JSON line on stdout, flushed so the test sees it at once."""
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def answer(client, request):
    """The answer line for one call line."""
    call_id = request.get("id")
    method = request.get("method")
    try:
        if method not in METHODS:
            raise ValueError("not an SDK method the bridge calls: %r" % (method,))
        args = request.get("args", [])
        kwargs = request.get("kwargs", {})
        return {"id": call_id, "result": getattr(client, method)(*args, **kwargs)}
    except Exception as error:  # every SDK failure goes back to the test
        return {
            "id": call_id,
            "error": {"type": type(error).__name__, "message": str(error)},
        }


def main():
    config = json.loads(sys.argv[1])
    client = pusher.Pusher(
        app_id=config["app_id"],
        key=config["key"],
        secret=config["secret"],
        host=config["host"],
        port=int(config["port"]),
        ssl=False,
        timeout=5,
    )
    emit({"ready": True, "version": VERSION})
    for line in sys.stdin:
        if line.strip():
            emit(answer(client, json.loads(line)))


if __name__ == "__main__":
    main()
