"""Drives tuspy (tusclient) against a tus endpoint, for tests/tests/tus_clients.rs.

    .venv/bin/python tuspy_upload.py '<config JSON>'

Config:
  endpoint        the creation URL, e.g. http://127.0.0.1:PORT/files/
  file            the file to upload
  operation       the operation (an object): sent as Upload-Metadata `operation`
  filename, filetype   the other metadata
  chunk_size      bytes per PATCH
  checksum        tuspy's upload_checksum (Upload-Checksum: sha1 on every PATCH)
  mode            "upload": Uploader.upload() to the end;
                  "resume": phase 1 sends `chunks_before` chunks with upload_chunk();
                  phase 2 is a new Uploader on the same upload reached through
                  `interrupt_base` (a proxy that cuts the connection mid-body), whose
                  upload_chunk() must fail; phase 3 is a new Uploader with the upload
                  URL that takes its offset from the server (HEAD) and finishes
                  (retrying from the server's offset after a `409`, twice at most).

Every PATCH tuspy sends is recorded (Upload-Offset, body length, Upload-Checksum,
status, answered Upload-Offset). Prints one JSON line on stdout; exits 0 when the
upload succeeded, 1 (with {"error": ...}) otherwise.
"""

import json
import sys
import traceback
from urllib.parse import urlsplit, urlunsplit

import requests
import tusclient.request
from tusclient.client import TusClient
from tusclient.uploader import Uploader

PATCHES = []
_patch = requests.patch


def recording_patch(url, data=None, headers=None, **kwargs):
    """requests.patch as tuspy calls it, recording what went out and what came back."""
    entry = {
        "url": url,
        "offset": int(headers.get("upload-offset")),
        "length": len(data),
        "checksum": headers.get("upload-checksum"),
        "status": None,
        "response_offset": None,
    }
    PATCHES.append(entry)
    resp = _patch(url, data=data, headers=headers, **kwargs)
    entry["status"] = resp.status_code
    offset = resp.headers.get("upload-offset")
    entry["response_offset"] = int(offset) if offset is not None else None
    return resp


# tusclient.request does `import requests` and calls requests.patch.
tusclient.request.requests.patch = recording_patch


def rebase(url, base):
    """`url` with the scheme and authority of `base` (the same upload through a proxy)."""
    u, b = urlsplit(url), urlsplit(base)
    return urlunsplit((b.scheme, b.netloc, u.path, u.query, u.fragment))


def main(config):
    metadata = {
        "operation": json.dumps(config["operation"]),
        "filename": config.get("filename", "x.bin"),
        "filetype": config.get("filetype", "application/octet-stream"),
    }
    common = dict(
        file_path=config["file"],
        chunk_size=config["chunk_size"],
        upload_checksum=bool(config.get("checksum")),
    )
    client = TusClient(config["endpoint"])
    if config["mode"] == "upload":
        uploader = client.uploader(metadata=metadata, **common)
        uploader.upload()
        return {"uploadUrl": uploader.url, "offset": uploader.offset, "patches": PATCHES}

    # Phase 1: some chunks, then the uploader is dropped.
    first = client.uploader(metadata=metadata, **common)
    for _ in range(config["chunks_before"]):
        first.upload_chunk()
    url = first.url
    phase1 = {"offset": first.offset, "patches": len(PATCHES)}

    # Phase 2: the same upload through the proxy, which cuts the PATCH mid-body.
    cut_url = rebase(url, config["interrupt_base"])
    second = Uploader(url=cut_url, **common)
    phase2 = {"head_offset": second.offset}
    try:
        second.upload_chunk()
    except Exception as err:  # tuspy raises TusUploadFailed / TusCommunicationError
        phase2["error"] = f"{type(err).__name__}: {err}"
    else:
        raise RuntimeError(f"the PATCH through the cutting proxy succeeded: {PATCHES[-1]}")
    phase2["patches"] = len(PATCHES)

    # Phase 3: a new Uploader with the URL asks the server where to go on. The
    # server may still be taking in the cut request when this one asks: like any
    # tus client, it retries from the server's offset on `409`.
    third = Uploader(url=url, retries=2, retry_delay=0.2, **common)
    phase3 = {"head_offset": third.offset}
    third.upload()
    phase3["offset"] = third.offset
    return {
        "uploadUrl": url,
        "phase1": phase1,
        "phase2": phase2,
        "phase3": phase3,
        "patches": PATCHES,
    }


if __name__ == "__main__":
    try:
        out = main(json.loads(sys.argv[1]))
    except Exception:
        print(json.dumps({"error": traceback.format_exc(), "patches": PATCHES}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)
