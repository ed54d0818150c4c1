"""The predict service's media uploader against the real GCS emulator, read back with google-cloud-storage."""

import pytest

from churnflow.storage import gcs, layout, request_log
from churnflow.storage.upload import MediaUploader, ObjectExists, UploadFailed

pytestmark = pytest.mark.integration

PREFIX = "test-uploads/dt=2026-11-22/hour=09/"  # not under the request-log prefix other tests read


def test_objects_arrive_whole_under_their_names_and_are_never_replaced(stack_env):
    bucket = stack_env["CHURNFLOW_BUCKET"]
    upload = MediaUploader(bucket, request_log.CONTENT_TYPE, timeout_s=5)
    name = PREFIX + "upload test 1.jsonl.gz"
    first = request_log.encode_batch([{"request_id": "a", "n": 1}])
    upload(name, first)
    upload(name + ".2", b"second")
    blob = gcs.client("test").bucket(bucket).get_blob(name)
    assert blob.download_as_bytes() == first and blob.content_type == request_log.CONTENT_TYPE
    decoded = request_log.decode_batch(gcs.read_bytes("test", layout.gs_uri(bucket, name)))
    assert decoded.records == [{"request_id": "a", "n": 1}]
    with pytest.raises(ObjectExists):  # a retry of an upload that landed: create-only, nothing replaced
        upload(name, request_log.encode_batch([{"request_id": "b"}]))
    assert gcs.read_bytes("test", layout.gs_uri(bucket, name)) == first


def test_a_missing_bucket_is_an_upload_failure(stack_env):
    upload = MediaUploader("no-such-bucket-here", request_log.CONTENT_TYPE, timeout_s=5)
    with pytest.raises(UploadFailed, match="answered 404"):
        upload("x", b"1")
