"""Issue 13's acceptance scenario: three quickstart replicas on one PostgreSQL database and one
Redis, driven with boto3 through replica 1, 2 and 3 in turn.

Run by tests/replicas.rs with ADMIN_1..3 and DATA_1..3 (each replica's admin API and data
endpoint), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; prints one JSON object with the
figures. Exits with 97 if boto3 is not installed.
"""

import concurrent.futures
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request

try:
    import boto3
    from botocore.config import Config
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(97)

VALUE = "replicas-0123456789abcdefghij"
ADMIN = [os.environ[f"ADMIN_{i}"] for i in (1, 2, 3)]
DATA = [os.environ[f"DATA_{i}"] for i in (1, 2, 3)]


def client(i):
    return boto3.client(
        "apigateway",
        endpoint_url=ADMIN[i],
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )


def call(i):
    """One data-plane request with the key at replica i: (status, body)."""
    request = urllib.request.Request(DATA[i] + "/pets", headers={"x-api-key": VALUE})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def until(replica, want, limit=5.0):
    """Seconds until replica answers `want` (polling), or None after `limit` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if call(replica)[0] == want:
            return round(time.monotonic() - start, 3)
        time.sleep(0.02)
    return None


def until_not(replica, unwanted, limit=5.0):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if call(replica)[0] != unwanted:
            return round(time.monotonic() - start, 3)
        time.sleep(0.02)
    return None


def spread(n):
    """n concurrent requests, round-robin over the replicas: the statuses and 429 bodies."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda j: call(j % 3), range(n)))
    return [s for s, _ in results], sorted({b for s, b in results if s == 429})


c1, c2, c3 = client(0), client(1), client(2)
out = {}
plan = c1.create_usage_plan(
    name="Replicated",
    apiStages=[{"apiId": "petstore", "stage": "prod"}],
    throttle={"rateLimit": 10000.0, "burstLimit": 10000},
    quota={"limit": 30, "period": "DAY"},
)
key = c1.create_api_key(name="replicated", enabled=True, value=VALUE)
c1.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
# Replica 2 admits the new key (one request of the quota).
out["replica2_admits_after"] = until(1, 200)

statuses, bodies = spread(60)
out["admitted_of_60"] = statuses.count(200)
out["refused_429_of_60"] = statuses.count(429)
out["bodies_429"] = bodies

today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
start = time.monotonic()
used = None
while time.monotonic() - start < 5:
    usage = c3.get_usage(usagePlanId=plan["id"], keyId=key["id"], startDate=today, endDate=today)
    used = usage["items"].get(key["id"], [[0, 0]])[0][0]
    if used == 30:
        break
    time.sleep(0.05)
out["usage_30_after"] = round(time.monotonic() - start, 3)
out["usage_used"] = used

c2.update_usage(
    usagePlanId=plan["id"], keyId=key["id"], patchOperations=[{"op": "replace", "path": "/remaining", "value": "5"}]
)
statuses = [call(j % 3)[0] for j in range(30)]
out["admitted_after_update"] = statuses.count(200)
out["admitted_after_update_by_replica"] = [statuses[r::3].count(200) for r in range(3)]

# An update while every replica holds an unspent lease of the key: give each replica some
# traffic first (with remaining = 60 each takes a lease of several requests), then set
# remaining = 10 through replica 3: the leases are given back first, exactly 10 more pass.
c1.update_usage(
    usagePlanId=plan["id"], keyId=key["id"], patchOperations=[{"op": "replace", "path": "/remaining", "value": "60"}]
)
warm = [call(j % 3)[0] for j in range(6)]
out["admitted_before_second_update"] = warm.count(200)
c3.update_usage(
    usagePlanId=plan["id"], keyId=key["id"], patchOperations=[{"op": "replace", "path": "/remaining", "value": "10"}]
)
statuses = [call(j % 3)[0] for j in range(45)]
out["admitted_after_second_update"] = statuses.count(200)
out["admitted_after_second_update_by_replica"] = [statuses[r::3].count(200) for r in range(3)]

c3.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
out["disabled_403_after"] = [until(0, 403), until(1, 403)]
c3.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}])
out["enabled_again_after"] = [until_not(0, 403), until_not(1, 403)]

c3.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
out["removed_403_after"] = [until(0, 403), until(1, 403)]
c3.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
out["added_again_after"] = [until_not(0, 403), until_not(1, 403)]

c3.delete_usage_plan(usagePlanId=plan["id"])
out["plan_deleted_403_after"] = [until(0, 403), until(1, 403)]
print(json.dumps(out))
