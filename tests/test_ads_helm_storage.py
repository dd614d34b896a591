"""The chart's setting for where the ads API keeps uploaded creatives: a bucket every replica shares (S3 or
S3-compatible), with the credentials from a Secret, passed as flags the real `sidecast ads serve` accepts;
without one, the pod's own disk, as before. Rendered by the real helm (helpers of tests/test_helm.py)."""

from __future__ import annotations

import kubernetes_validate

from tests.test_helm import CHART, _flags_accepted, objects, render, run_helm

S3 = ("ads.mediaStorage.s3.bucket=ads-media", "ads.mediaStorage.s3.prefix=/spots/", "ads.mediaStorage.s3.existingSecret=ads-s3",
      "ads.mediaStorage.s3.endpoint=http://minio.storage:9000", "ads.mediaStorage.s3.region=eu-west-1")


def _ads(docs):  # noqa: ANN001, ANN202
    (d,) = [d for d in objects(docs, "Deployment") if d["metadata"]["name"] == "rel-sidecast-ads"]
    return d


def test_a_bucket_replaces_the_pods_disk_for_uploaded_creatives() -> None:
    docs = render(sets=S3)
    c = _ads(docs)["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert "--media-store=s3://ads-media/spots" in args and "--s3-endpoint=http://minio.storage:9000" in args
    assert "--s3-region=eu-west-1" in args and not [a for a in args if a.startswith("--media-dir")]
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "ads-s3", "key": "access-key-id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "ads-s3", "key": "secret-access-key"}
    _flags_accepted(["ads", "serve"], args[3:])
    for d in docs:
        kubernetes_validate.validate(d, "1.29.0", strict=True)
    # by default the disk, as before
    default = _ads(render())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--media-dir=/data/media" in default and not [a for a in default if a.startswith("--media-store")]


def test_a_bucket_without_credentials_fails_at_install_with_what_to_set() -> None:
    r = run_helm("template", "rel", str(CHART), "--set", "ads.mediaStorage.s3.bucket=ads-media")
    assert r.returncode != 0 and "ads.mediaStorage.s3.existingSecret" in r.stderr
    r = run_helm("template", "rel", str(CHART), "--set", "ads.mediaStorage.s3.bucket=Not_A_Bucket",
                 "--set", "ads.mediaStorage.s3.existingSecret=x")
    assert r.returncode != 0 and "bucket" in r.stderr
