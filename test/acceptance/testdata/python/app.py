import json
import logging
import os
import time
import uuid

INSTANCE = uuid.uuid4().hex
logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "error":
        raise ValueError("boom: " + str(event.get("msg", "")))
    if action == "sleep":
        time.sleep(event.get("ms", 0) / 1000.0)
    if action == "exit":
        os._exit(3)
    if action == "alloc":
        blob = bytearray(event.get("mb", 1) * 1024 * 1024)
        for i in range(0, len(blob), 4096):
            blob[i] = 1
    print("python saw " + action)
    logger.info("logged via logging")
    return {
        "runtime": "python",
        "instance": INSTANCE,
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": int(context.memory_limit_in_mb),
        "remaining": context.get_remaining_time_in_millis(),
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "env": os.environ.get("GREETING"),
        "region": os.environ.get("AWS_REGION"),
        "handler_env": os.environ.get("_HANDLER"),
    }
