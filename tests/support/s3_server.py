"""A local S3 for tests: moto's server on 127.0.0.1, a random port, fake credentials.

    with local_s3() as s3:                     # a server on 127.0.0.1:<random port>
        s3.put("photos", "a.jpg", jpeg_bytes)  # creates the bucket on first use
        fake_aws_env(monkeypatch, s3.endpoint_url)  # boto3 (unchanged) now talks to it

The code under test is not changed or mocked: boto3 reads the endpoint from
AWS_ENDPOINT_URL_S3 itself, and the credentials are fake values in the
environment, so no config file, instance metadata or AWS endpoint is consulted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Env vars boto3 would otherwise read from the machine (profiles, SSO, real keys).
_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}
_CLEARED = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


class LocalS3:
    """moto's threaded server; `client()` talks to it, `put` writes objects."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._buckets: set[str] = set()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def put(self, bucket: str, key: str, data: bytes) -> None:
        s3 = self.client()
        if bucket not in self._buckets:
            s3.create_bucket(Bucket=bucket)
            self._buckets.add(bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=data)

    def close(self) -> None:
        self._server.stop()


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, endpoint_url: str) -> None:
    """Point boto3 at `endpoint_url` with fake credentials, and only there."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in _FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint_url)


@contextmanager
def local_s3() -> Iterator[LocalS3]:
    """Start the server for the `with` block (call `fake_aws_env` per test)."""
    server = LocalS3()
    try:
        yield server
    finally:
        server.close()


# The bucket the golden events (tests/events/s3_*.json, items_*.json) read from,
# and the one they name that is allowed but does not exist.
ALLOWED_BUCKET = "photos-allowed"
DELETED_BUCKET = "photos-deleted"
MAX_BYTES = 64 * 1024  # FETCH_MAX_BYTES in these tests: huge.jpg is over it


def golden_objects(jpeg: bytes, other_jpeg: bytes) -> dict[str, bytes]:
    """The keys of ALLOWED_BUCKET that the golden events name, and their bytes."""
    return {
        "listings/pants.jpg": jpeg,
        "listings/2026/11/shoe photo (1).jpg": other_jpeg,
        "listings/huge.jpg": b"\xff\xd8\xff" + bytes(MAX_BYTES + 100_000),
        "listings/truncated.jpg": jpeg[:200],
        "listings/empty.jpg": b"",
        "listings/notes.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    }
