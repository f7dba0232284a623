"""The S3 client's pure parts: Signature Version 4 against AWS's published example, cache URLs,
credentials the standard AWS way (never in a repr or a message)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from vllm_lock.errors import UsageError
from vllm_lock.shell import s3

EXAMPLE = s3.Credentials(access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def test_sigv4_matches_the_published_list_objects_example() -> None:
    # AWS's S3 documentation, "Signature Calculations for the Authorization Header", GET Bucket example
    headers = s3.signed_headers(
        method="GET", host="examplebucket.s3.amazonaws.com", path="/", query={"max-keys": "2", "prefix": "J"},
        payload_sha256=s3.EMPTY_SHA256, creds=EXAMPLE, region="us-east-1", now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC),
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"


def test_a_session_token_is_signed_too() -> None:
    creds = s3.Credentials(access_key="a", secret_key="b", session_token="t")
    headers = s3.signed_headers(method="GET", host="h", path="/b/k", query={}, payload_sha256=s3.EMPTY_SHA256,
                                creds=creds, region="r", now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert headers["x-amz-security-token"] == "t"
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token" in headers["authorization"]


def test_urls() -> None:
    loc = s3.parse_url("s3://cache/vllm/builds?endpoint=http://127.0.0.1:9000&region=eu-west-1", {})
    assert (loc.bucket, loc.prefix, loc.scheme, loc.host, loc.port, loc.region) == (
        "cache", "vllm/builds/", "http", "127.0.0.1", 9000, "eu-west-1")
    aws = s3.parse_url("s3://cache", {"AWS_REGION": "us-west-2"})
    assert (aws.host, aws.port, aws.prefix, aws.region) == ("s3.us-west-2.amazonaws.com", 443, "", "us-west-2")
    for bad, message in [
        ("s3:///prefix", "not s3://BUCKET"),
        ("s3://b/p?endpoint=ftp://x", "endpoint= must be http"),
        ("s3://b/p?endpoint=http://x/path", "endpoint= must be http"),
        ("s3://b/p?token=x", "only endpoint= and region="),
        ("s3://b/p?endpoint=http://x:99999", "port is not a port"),
    ]:
        with pytest.raises(UsageError, match=message):
            s3.parse_url(bad, {})


def test_credentials_from_the_environment_then_the_profile(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret-value", "AWS_SESSION_TOKEN": "tok"}
    creds = s3.credentials(env, tmp_path)
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("id", "secret-value", "tok")
    assert "secret-value" not in repr(creds) and "id" not in repr(creds).replace("Credentials", "")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n"
        "[ci]\naws_access_key_id = c\naws_secret_access_key = cs\n")
    assert s3.credentials({}, tmp_path).access_key == "d"
    assert s3.credentials({"AWS_PROFILE": "ci"}, tmp_path).secret_key == "cs"
    with pytest.raises(UsageError, match="no AWS credentials: .* profile 'nope'"):
        s3.credentials({"AWS_PROFILE": "nope"}, tmp_path)
    (tmp_path / ".aws" / "credentials").write_text("not [ an ini")
    with pytest.raises(UsageError, match="cannot be read as an AWS credentials file"):
        s3.credentials({}, tmp_path)
