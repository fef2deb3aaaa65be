"""Drive botocore's SigV4 signer (through boto3's Lambda client) at a local
Kiln test server. Prints one JSON line per call: {"name", "error"}.

Usage: botocore_client.py ENDPOINT_URL
"""
import json
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False)


def client(akid="AKIDEXAMPLE", secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token=None, region="us-east-1"):
    return boto3.client(
        "lambda", endpoint_url=endpoint, region_name=region, config=cfg,
        aws_access_key_id=akid, aws_secret_access_key=secret, aws_session_token=token)


c = client()
sess = client("AKIDSESS", "session-secret", token="IQoJb3JpZ2luX2VjEMb//////////wEaCXVz+/=")
wrong = client(secret="wrong")


def presigned_get():
    url = c.generate_presigned_url("get_function", Params={"FunctionName": "name:alias", "Qualifier": "x"}, ExpiresIn=300)
    with urllib.request.urlopen(url) as resp:
        resp.read()


calls = [
    ("invoke name:alias", lambda: c.invoke(FunctionName="name:alias", Qualifier="x", Payload=b'{"k":"' + b"v" * 1000 + b'"}')),
    ("invoke arn", lambda: c.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:my-fn:prod",
                                    InvocationType="Event", Payload=b"{}")),
    ("invoke tail log", lambda: c.invoke(FunctionName="f", LogType="Tail", Payload=b"[1,2]")),
    ("invoke empty", lambda: c.invoke(FunctionName="f")),
    ("invoke session token", lambda: sess.invoke(FunctionName="f", Payload=b"1")),
    ("list functions", lambda: c.list_functions(Marker="a b/c+d==", MaxItems=50, FunctionVersion="ALL")),
    ("list versions", lambda: c.list_versions_by_function(FunctionName="123456789012:function:f", Marker="\u00e9~!*'()")),
    ("get function", lambda: c.get_function(FunctionName="f", Qualifier="$LATEST")),
    ("put concurrency", lambda: c.put_function_concurrency(FunctionName="f", ReservedConcurrentExecutions=2)),
    ("presigned get", presigned_get),
    ("wrong secret", lambda: wrong.list_functions()),
]

for name, fn in calls:
    err = ""
    try:
        fn()
    except ClientError as e:
        err = e.response.get("Error", {}).get("Code", "") or str(e)
    except Exception as e:  # noqa: BLE001 - report anything to the Go test
        err = type(e).__name__ + ": " + str(e)
    print(json.dumps({"name": name, "error": err}), flush=True)
