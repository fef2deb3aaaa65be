"""Kiln's bootstrap for the python3.x runtimes.

It speaks the Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API,
imports the handler named by $_HANDLER from $LAMBDA_TASK_ROOT and runs one
invocation at a time. Standard library only; it must run on Python 3.9+.
"""

import decimal
import http.client
import json
import logging
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# The request being served, for the log formatter. Empty outside invokes.
_current_request_id = ""


class _Conn(http.client.HTTPConnection):
    """A persistent connection to the Runtime API without Nagle's delay."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RuntimeClient:
    def __init__(self, address):
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        # timeout=None: /next blocks for as long as the sandbox is idle.
        self._conn = _Conn(host, int(port), timeout=None)

    def _do(self, method, path, body=None, headers=None):
        last = None
        for _ in range(2):
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                data = resp.read()
                return resp, data
            except (http.client.HTTPException, OSError) as e:
                # A stale keep-alive connection: reconnect once.
                self._conn.close()
                last = e
        raise last

    def next(self):
        resp, body = self._do("GET", API_PREFIX + "/invocation/next")
        if resp.status != 200:
            raise RuntimeError("GET /next answered %d: %r" % (resp.status, body[:200]))
        return resp, body

    def _post(self, path, body, content_type, error_type=None):
        headers = {"Content-Type": content_type}
        if error_type and error_type.isascii() and error_type.isprintable():
            headers[ERROR_TYPE_HEADER] = error_type
        resp, data = self._do("POST", path, body=body, headers=headers)
        if resp.status != 202:
            # The invocation is concluded on the platform's side either way
            # (e.g. 413 for an oversized response): report it and go on.
            sys.stderr.write("[WARNING] Runtime API answered %d to POST %s: %s\n"
                             % (resp.status, path, data[:200].decode("utf-8", "replace")))
            sys.stderr.flush()

    def post_response(self, request_id, body):
        self._post(API_PREFIX + "/invocation/" + request_id + "/response", body, "application/json")

    def post_error(self, request_id, error):
        body = json.dumps(error).encode()
        self._post(API_PREFIX + "/invocation/" + request_id + "/error", body,
                   "application/json", error.get("errorType"))

    def post_init_error(self, error):
        body = json.dumps(error).encode()
        self._post(API_PREFIX + "/init/error", body, "application/json", error.get("errorType"))


class FaultError(Exception):
    """A failure of the runtime's own making (bad handler, bad input...)."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


# ---- context ---------------------------------------------------------------


class _Obj:
    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % kv for kv in sorted(vars(self).items())))


class CognitoIdentity(_Obj):
    def __init__(self, data):
        data = data if isinstance(data, dict) else {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client(_Obj):
    def __init__(self, data):
        data = data if isinstance(data, dict) else {}
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext(_Obj):
    def __init__(self, data):
        data = data if isinstance(data, dict) else {}
        client = data.get("client")
        self.client = Client(client) if client is not None else None
        self.custom = data.get("custom")
        self.env = data.get("env")


class LambdaContext(_Obj):
    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()


# ---- logging ---------------------------------------------------------------


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


class _LambdaHandler(logging.StreamHandler):
    def __init__(self):
        super().__init__(sys.stdout)
        fmt = logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S")
        fmt.converter = time.gmtime
        self.setFormatter(fmt)
        self.addFilter(_RequestIdFilter())


def _setup_logging():
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_LambdaHandler())
    # Lambda leaves the root logger at WARNING unless AWS_LAMBDA_LOG_LEVEL says otherwise.
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        root.setLevel({"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))


def _flush():
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass


# ---- errors ----------------------------------------------------------------


def _user_frames(tb):
    """The traceback without this file's frames, as Lambda's stackTrace strings."""
    frames = [f for f in traceback.extract_tb(tb) if f.filename != __file__]
    return traceback.format_list(frames)


def _error_from_exception(exc, request_id=None):
    if isinstance(exc, FaultError):
        err = {"errorMessage": exc.message, "errorType": exc.error_type}
        trace = exc.trace
    else:
        err = {"errorMessage": str(exc), "errorType": type(exc).__name__}
        trace = _user_frames(exc.__traceback__)
    err["requestId"] = request_id or ""
    err["stackTrace"] = trace
    return err


def _log_error(err):
    lines = ["[ERROR] %s: %s" % (err["errorType"], err["errorMessage"]),
             "Traceback (most recent call last):"]
    out = "\n".join(lines) + "\n" + "".join(err.get("stackTrace") or [])
    if not out.endswith("\n"):
        out += "\n"
    sys.stderr.write(out)
    sys.stderr.flush()


# ---- handler loading ---------------------------------------------------------


def _load_handler(handler):
    import importlib

    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    if not modname or not fname:
        raise FaultError("Runtime.MalformedHandlerName", "Bad handler '%s'" % handler)
    dotted = modname.replace("/", ".")
    if dotted.split(".")[0] in sys.builtin_module_names:
        raise FaultError("Runtime.BuiltInModuleConflict",
                         "Cannot use built-in module %s as a handler module" % modname)
    try:
        module = importlib.import_module(dotted)
    except ImportError as e:
        raise FaultError("Runtime.ImportModuleError",
                         "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, (e.text or "").strip())]
        raise FaultError("Runtime.UserCodeSyntaxError",
                         "Syntax error in module '%s': %s" % (modname, e), trace)
    fn = getattr(module, fname, None)
    if fn is None:
        raise FaultError("Runtime.HandlerNotFound",
                         "Handler '%s' missing on module '%s'" % (fname, modname))
    if not callable(fn):
        raise FaultError("Runtime.HandlerNotFound",
                         "Handler '%s' on module '%s' is not callable" % (fname, modname))
    return fn


# ---- the loop ----------------------------------------------------------------


def _json_default(o):
    if isinstance(o, decimal.Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)


def _parse_json_header(value):
    if not value:
        return None
    return json.loads(value)


def _handle_one(client, fn):
    global _current_request_id
    resp, body = client.next()
    request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id") or ""
    _current_request_id = request_id
    trace_id = resp.getheader("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        try:
            deadline_ms = int(resp.getheader("Lambda-Runtime-Deadline-Ms") or "0")
            ctx = LambdaContext(
                request_id, deadline_ms,
                resp.getheader("Lambda-Runtime-Invoked-Function-Arn"),
                _parse_json_header(resp.getheader("Lambda-Runtime-Client-Context")),
                _parse_json_header(resp.getheader("Lambda-Runtime-Cognito-Identity")))
            event = json.loads(body) if body else {}
        except ValueError as e:
            raise FaultError("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
        result = fn(event, ctx)
        try:
            out = json.dumps(result, default=_json_default).encode()
        except (TypeError, ValueError) as e:
            raise FaultError("Runtime.MarshalError", "Unable to marshal response: %s" % e)
    except Exception as e:
        err = _error_from_exception(e, request_id)
        _log_error(err)
        _flush()
        client.post_error(request_id, err)
        return
    finally:
        _flush()
    client.post_response(request_id, out)


def main():
    # Our own directory must not shadow or expose modules to user code, and the
    # task root comes first so `import mod` finds the function's code.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    sys.path.insert(0, task_root)
    # The task root is shared between sandboxes: never write __pycache__ into it.
    sys.dont_write_bytecode = True
    _setup_logging()

    handler = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        fn = _load_handler(handler)
    except Exception as e:
        err = _error_from_exception(e)
        _log_error(err)
        _flush()
        try:
            client.post_init_error(err)
        finally:
            sys.exit(1)

    while True:
        _handle_one(client, fn)


if __name__ == "__main__":
    main()
