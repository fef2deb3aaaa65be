import time


def handler(event, context):
    # The interval is measured on the host's clock, shared by every node's
    # sandboxes, so the test can overlay intervals from all three nodes.
    start = time.time_ns()
    time.sleep(event.get("ms", 0) / 1000.0)
    return {"start": start, "end": time.time_ns(), "tag": event.get("tag", "")}
