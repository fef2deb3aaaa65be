# A Kinesis-event handler for the stream tests. It checks the event is
# Lambda's Kinesis shape, logs what each batch held (the tests read the
# log), fails any batch holding a record whose data is "bad", and reports
# records whose data starts with "pfail" as partial batch failures.
import base64
import json


def check(r):
    k = r["kinesis"]
    if (r["eventSource"] != "aws:kinesis" or r["eventName"] != "aws:kinesis:record" or r["eventVersion"] != "1.0"
            or r["eventID"] != r["eventID"].split(":")[0] + ":" + k["sequenceNumber"]
            or not r["eventID"].startswith("shardId-") or k["kinesisSchemaVersion"] != "1.0"
            or r["invokeIdentityArn"] != "arn:aws:iam::123456789012:role/kiln-test" or r["awsRegion"] != "us-east-1"
            or not r["eventSourceARN"].startswith("arn:aws:kinesis:us-east-1:")
            or not isinstance(k["approximateArrivalTimestamp"], float)):
        print("BADSHAPE " + json.dumps(r))
        raise ValueError("not a Kinesis event record")


def handler(event, context):
    items = []
    for r in event["Records"]:
        check(r)
        k = r["kinesis"]
        items.append([k["partitionKey"], base64.b64decode(k["data"]).decode(), k["sequenceNumber"]])
    datas = [i[1] for i in items]
    if "bad" in datas:
        print("FAILED " + json.dumps(items))
        raise ValueError("bad record in batch")
    fails = [{"itemIdentifier": i[2]} for i in items if i[1].startswith("pfail")]
    print(("PARTIAL " if fails else "OK ") + json.dumps(items))
    return {"batchItemFailures": fails}
