"""One Lambda function, served in its own process: ``python sandbox/function_process.py ...``.

Like a Lambda container: the working directory is the function's asset folder and the only
code on ``sys.path`` is that folder (plus the interpreter's site-packages, standing in for the
dependencies layer: the venv installs the same pins); the environment is the function's,
resolved from the template. The handler module is imported once, at start (the init phase),
then invocations arrive as ``POST /invoke`` (JSON event -> JSON result) on a threaded HTTP
server on 127.0.0.1, several at a time. The parent reads ``READY <port>`` (or
``ERROR <message>``) from the control pipe, which is this process's original stdout; the
handler's own stdout goes to stderr. When the parent goes away (stdin closes) the worker exits.

Standard library only: the handler must see the same imports it would see in AWS.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(self, name: str, arn: str, memory: int, timeout: float, request_id: str):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = str(memory)
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local/[$LATEST]sandbox"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise AttributeError(f"module {module_name!r} has no function {function_name!r}")
    return handler


def _serve(args: argparse.Namespace, handler: Any) -> ThreadingHTTPServer:
    class Invoke(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *log_args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request_id = self.headers.get("X-Request-Id") or str(uuid.uuid4())
            event = json.loads(self.rfile.read(length) or b"null")
            context = LambdaContext(args.name, args.arn, args.memory, args.timeout, request_id)
            try:
                result = handler(event, context)
                payload = json.dumps({"ok": True, "result": result})
            except Exception as exc:
                trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
                sys.stderr.write("".join(trace))
                payload = json.dumps(
                    {
                        "ok": False,
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": trace,
                    },
                    default=str,
                )
            body = payload.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Invoke)
    server.daemon_threads = True
    return server


def _exit_when_parent_goes() -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="sandbox.function_process")
    parser.add_argument("--handler", required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--arn", required=True)
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's prints and Powertools' logs go where stderr goes
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()

    # The asset folder is the task root: it, not the sandbox, is what the handler imports from.
    sys.path[0] = args.code_dir
    os.chdir(args.code_dir)
    try:
        handler = _load_handler(args.handler)
    except BaseException as exc:
        traceback.print_exc()
        control.write(f"ERROR {type(exc).__name__}: {exc}\n".replace("\n", " ").strip() + "\n")
        control.flush()
        os._exit(1)
    server = _serve(args, handler)
    control.write(f"READY {server.server_address[1]}\n")
    control.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
