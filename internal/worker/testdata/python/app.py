import os


def handler(event, context):
    print("py saw", event.get("msg"))
    return {"runtime": "python", "msg": event.get("msg"), "request_id": context.aws_request_id, "pid": os.getpid()}
