"""The boto3 client both admin scripts use: API Gateway at ADMIN_ENDPOINT, with the SigV4
credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Exits with 97 if boto3 is not
installed (tests/admin/sdk.rs then skips, unless USAGE_PLANS_REQUIRE_SERVICES=1)."""

import os
import sys

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError  # noqa: F401 (for the scripts)
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(97)


def make_client(region):
    return boto3.client(
        "apigateway",
        endpoint_url=os.environ["ADMIN_ENDPOINT"],
        region_name=region,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )
