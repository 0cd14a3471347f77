"""The usage acceptance scenario with boto3: create a plan and a key, associate them, send
data-plane requests with the key, read GetUsage, change what the next requests get with
UpdateUsage, and disable the key.

Run by tests/admin/sdk.rs with ADMIN_ENDPOINT (the admin API, e.g. http://127.0.0.1:PORT/admin),
DATA_ENDPOINT (the API behind the usage-plan layer), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY;
prints one JSON object with the results. Exits with 97 if boto3 is not installed.
"""

import datetime
import json
import os
import urllib.error
import urllib.request

from admin_client import make_client

client = make_client("eu-west-1")
VALUE = "sdk-usage-0123456789abcdefghij"


def call(n):
    """n data-plane requests with the key; their statuses."""
    statuses = []
    for _ in range(n):
        request = urllib.request.Request(os.environ["DATA_ENDPOINT"] + "/pets", headers={"x-api-key": VALUE})
        try:
            with urllib.request.urlopen(request) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
    return statuses


def usage(plan_id, key_id, today):
    response = client.get_usage(usagePlanId=plan_id, keyId=key_id, startDate=today, endDate=today)
    response.pop("ResponseMetadata", None)
    return response


out = {}
plan = client.create_usage_plan(
    name="Metered",
    apiStages=[{"apiId": "petstore", "stage": "prod"}],
    throttle={"rateLimit": 1000.0, "burstLimit": 1000},
    quota={"limit": 10, "period": "DAY"},
)
key = client.create_api_key(name="metered", enabled=True, value=VALUE)
client.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
out["ids"] = {"plan": plan["id"], "key": key["id"]}
today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
out["today"] = today
out["first"] = call(4)
out["usage_after_4"] = usage(plan["id"], key["id"], today)
out["plan_usage"] = client.get_usage(usagePlanId=plan["id"], startDate=today, endDate=today)["items"]
client.update_usage(
    usagePlanId=plan["id"], keyId=key["id"], patchOperations=[{"op": "replace", "path": "/remaining", "value": "1"}]
)
out["after_update"] = call(2)
out["usage_after_update"] = usage(plan["id"], key["id"], today)
client.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
out["after_disable"] = call(1)
print(json.dumps(out))
