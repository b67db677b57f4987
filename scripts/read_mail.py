#!/usr/bin/env python3
"""Parse one stored email with Python's own email package and print what a test checks, as JSON.

  read_mail.py FILE

Prints: headers (raw, as lists per lower-case name), decoded subject/from/to (RFC 2047 undone),
the multipart structure, and every leaf part's content type, charset, transfer encoding and
decoded text. An independent parser: the tests do not trust the plugin's own encoder.
"""
import email
import email.header
import email.policy
import json
import sys


def decoded(value):
    return str(email.header.make_header(email.header.decode_header(value))) if value is not None else None


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    headers = {}
    for name, value in message.items():
        headers.setdefault(name.lower(), []).append(value)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        parts.append({
            "content_type": part.get_content_type(),
            "charset": part.get_content_charset(),
            "transfer_encoding": part.get("Content-Transfer-Encoding"),
            "text": payload.decode(part.get_content_charset() or "ascii"),
        })
    longest_line = max((len(line) for line in raw.split(b"\r\n")), default=0)
    print(json.dumps({
        "headers": headers,
        "subject": decoded(message["Subject"]),
        "from": decoded(message["From"]),
        "to": decoded(message["To"]),
        "content_type": message.get_content_type(),
        "parts": parts,
        "longest_line": longest_line,
        "crlf_only": b"\n" not in raw.replace(b"\r\n", b""),
        "defects": [type(d).__name__ for d in message.defects],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
