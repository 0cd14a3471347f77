"""Drives the admin router with boto3, as a user migrating from API Gateway would.

Run by tests/admin/sdk.rs with ADMIN_ENDPOINT (e.g. http://127.0.0.1:PORT/admin),
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set; prints one JSON object with the results.
Exits with 97 if boto3 is not installed (the test then skips).
"""

import json

from admin_client import ClientError, make_client

client = make_client("us-east-1")


def clean(response):
    """The response without boto3's metadata; timestamps as epoch seconds."""
    response = dict(response)
    response.pop("ResponseMetadata", None)
    return json.loads(json.dumps(response, default=lambda t: int(t.timestamp())))


out = {}
plan = client.create_usage_plan(
    name="Gold",
    description="Gold tier",
    apiStages=[
        {
            "apiId": "petstore",
            "stage": "prod",
            "throttle": {"/pets/GET": {"rateLimit": 5.0, "burstLimit": 10}},
        }
    ],
    throttle={"rateLimit": 100.0, "burstLimit": 200},
    quota={"limit": 10000, "period": "MONTH", "offset": 0},
    tags={"tier": "gold"},
)
plan_id = plan["id"]
out["plan"] = clean(plan)

key = client.create_api_key(name="acme", description="Acme CI", enabled=True, customerId="acme", tags={"team": "a"})
key_id = key["id"]
out["key"] = clean(key)
out["plan_key"] = clean(client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY"))

out["get_plan"] = clean(client.get_usage_plan(usagePlanId=plan_id))
out["plans_of_key"] = clean(client.get_usage_plans(keyId=key_id))
out["get_key"] = clean(client.get_api_key(apiKey=key_id, includeValue=True))
out["get_plan_key"] = clean(client.get_usage_plan_key(usagePlanId=plan_id, keyId=key_id))
out["plan_keys"] = clean(client.get_usage_plan_keys(usagePlanId=plan_id))

for i in range(6):
    client.create_api_key(name=f"page-{i}")
pages = client.get_paginator("get_api_keys").paginate(PaginationConfig={"PageSize": 3})
out["page_sizes"] = []
out["paged_names"] = []
for page in pages:
    out["page_sizes"].append(len(page["items"]))
    out["paged_names"].extend(k["name"] for k in page["items"])

out["updated_plan"] = clean(
    client.update_usage_plan(
        usagePlanId=plan_id,
        patchOperations=[
            {"op": "replace", "path": "/name", "value": "Gold 2"},
            {"op": "replace", "path": "/throttle/rateLimit", "value": "50"},
            {"op": "replace", "path": "/quota/limit", "value": "5000"},
            {"op": "replace", "path": "/apiStages/petstore:prod/throttle/~1pets~1{petId}/DELETE/rateLimit", "value": "1"},
            {"op": "replace", "path": "/apiStages/petstore:prod/throttle/~1pets~1{petId}/DELETE/burstLimit", "value": "2"},
            {"op": "remove", "path": "/apiStages/petstore:prod/throttle/~1pets/GET"},
        ],
    )
)
out["disabled_key"] = clean(
    client.update_api_key(apiKey=key_id, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
)

csv = (
    "Name,Key,Description,Enabled,UsagePlanIds\n"
    "imported-1,imported1-0123456789abcdef,From CSV,true,%s\n"
    "imported-2,imported2-0123456789abcdef,,false,\n" % plan_id
)
out["import"] = clean(client.import_api_keys(body=csv.encode(), format="csv", failOnWarnings=True))

try:
    client.get_usage_plan(usagePlanId="nope")
    out["not_found"] = None
except ClientError as e:
    out["not_found"] = {
        "code": e.response["Error"]["Code"],
        "message": e.response["Error"]["Message"],
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
    }

# Deletes: a page key, a throwaway plan, and the acme key's membership (the key stays).
page_key = next(k for k in client.get_api_keys(nameQuery="page-0")["items"])
client.delete_api_key(apiKey=page_key["id"])
spare = client.create_usage_plan(name="Spare")
client.delete_usage_plan(usagePlanId=spare["id"])
client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
out["deleted"] = {"key": page_key["id"], "plan": spare["id"]}
out["ids"] = {"plan": plan_id, "key": key_id}
print(json.dumps(out))
