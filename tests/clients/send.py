#!/usr/bin/env python3
"""Sends one request the way a plain Python program would, with http.client.

usage: send.py METHOD URL FILE [NAME:VALUE ...]

The body is FILE's bytes with a Content-Length, sent in full before the
answer is read (http.client's way). Prints the status on the first line,
then the answer's body. Exits 1 with the exception if no answer was read.
"""
import http.client
import sys
import urllib.parse


def main():
    method, url, path, *headers = sys.argv[1:]
    u = urllib.parse.urlsplit(url)
    with open(path, "rb") as f:
        body = f.read()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    hdrs = dict(h.split(":", 1) for h in headers)
    hdrs = {k.strip(): v.strip() for k, v in hdrs.items()}
    try:
        conn.request(method, u.path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
    except Exception as e:  # noqa: BLE001 - the test reads the message
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(resp.status)
    sys.stdout.write(data.decode("utf-8", "replace"))


main()
