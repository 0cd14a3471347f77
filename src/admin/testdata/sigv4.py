"""Regenerates sigv4.json: requests signed by botocore's own apigateway client.

Run from this folder: python sigv4.py > sigv4.json  (botocore 1.43.11 produced the committed file)

The client is pointed at http://127.0.0.1:8080/admin, so every path starts with /admin, as when
the admin router is mounted under a prefix. Nothing is sent: a before-send hook records the
request botocore would put on the wire and answers it. The clock is fixed (the
amz-sdk-invocation-id header, which is not signed, changes from run to run).
"""
import datetime
import json

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSResponse

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOW = datetime.datetime(2026, 11, 26, 12, 34, 56)
botocore.auth.get_current_datetime = lambda remove_tzinfo=True: NOW

captured = []


def record(request, **_):
    captured.append(request)
    return AWSResponse(request.url, 200, {}, None)


session = botocore.session.get_session()
client = session.create_client(
    "apigateway", region_name="us-east-1", endpoint_url="http://127.0.0.1:8080/admin",
    aws_access_key_id=AK, aws_secret_access_key=SK,
)
client.meta.events.register("before-send.api-gateway", record)
# The same account through temporary credentials: botocore signs X-Amz-Security-Token too.
temporary = session.create_client(
    "apigateway", region_name="eu-west-3", endpoint_url="http://127.0.0.1:8080/admin",
    aws_access_key_id=AK, aws_secret_access_key=SK, aws_session_token="EXAMPLE-SESSION-TOKEN",
)
temporary.meta.events.register("before-send.api-gateway", record)

calls = {
    "get_usage_plans": lambda: client.get_usage_plans(limit=5, position="abc"),
    "create_usage_plan": lambda: client.create_usage_plan(
        name="Silver", throttle={"rateLimit": 50.0, "burstLimit": 100},
        quota={"limit": 5000, "period": "MONTH"},
        apiStages=[{"apiId": "petstore", "stage": "prod"}]),
    "update_usage": lambda: client.update_usage(
        usagePlanId="p1", keyId="k 1",
        patchOperations=[{"op": "replace", "path": "/remaining", "value": "100"}]),
    "import_api_keys": lambda: client.import_api_keys(
        body=b"Name,key,Enabled,usageplanIds\nAcme,acme-0123456789abcdefghij,true,p1\n",
        format="csv", failOnWarnings=False),
    "get_api_keys": lambda: client.get_api_keys(nameQuery="Acme Inc/+=~*", includeValues=True),
    "get_usage_plan_temporary": lambda: temporary.get_usage_plan(usagePlanId="p1"),
    "get_usage": lambda: client.get_usage(
        usagePlanId="p1", keyId="k1", startDate="2026-11-01", endDate="2026-11-26", limit=10),
}
out = []
for name, call in calls.items():
    try:
        call()
    except Exception:  # the empty answer may not parse; the request was recorded
        pass
    req = captured[-1]
    body = req.body or b""
    if not isinstance(body, bytes):
        body = body.encode() if isinstance(body, str) else body.read()
    url = req.url.split("127.0.0.1:8080", 1)[1]
    headers = [[k, v.decode() if isinstance(v, bytes) else v] for k, v in req.headers.items()]
    # The HTTP client adds Host after signing; botocore signed the one it derives from the URL.
    headers.insert(0, ["Host", botocore.auth._host_from_url(req.url)])
    out.append({"name": name, "method": req.method, "uri": url, "headers": headers, "body": body.decode()})
print(json.dumps({"access_key_id": AK, "secret_access_key": SK, "requests": out}, indent=1))
