import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)

ENV_KEYS = [
    "AWS_EXECUTION_ENV", "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ", "LANG",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API", "AWS_REGION", "GREETING",
    "_X_AMZN_TRACE_ID", "AWS_LAMBDA_INITIALIZATION_TYPE", "_LAMBDA_SERVER_PORT",
]


def handler(event, context):
    action = event.get("action")
    if action == "error":
        raise ValueError("boom")
    if action == "none":
        return None
    if action == "log":
        print("raw print")
        logger.info("hello %s", "world")
        return "logged"
    if action == "big":
        return "x" * event["size"]
    if action == "unserializable":
        return {1, 2}
    if action == "ctx":
        cc = context.client_context
        return {
            "requestId": context.aws_request_id,
            "functionName": context.function_name,
            "functionVersion": context.function_version,
            "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb,
            "logGroup": context.log_group_name,
            "logStream": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "custom": cc.custom if cc else None,
            "identityId": context.identity.cognito_identity_id,
            "env": {k: os.environ.get(k) for k in ENV_KEYS},
        }
    return event
