#!/usr/bin/env python3
"""SMTP sink for the plugin tests: aiosmtpd on 127.0.0.1, every accepted message a Maildir file.

  smtp_sink.py --dir STATE/maildir --port P [--tls none|starttls|implicit] [--cert C --key K]
               [--auth USER:PASS] [--require-auth] [--unknown-users FILE]

Each stored message starts with trace headers so tests can check the envelope and session:
X-Sink-Mail-From, X-Sink-Rcpt-To (one per recipient), X-Sink-Auth (login or '-'),
X-Sink-TLS (yes/no; `implicit` wraps the listener itself in TLS, SMTPS on
a 465-style port). Files go to maildir/tmp, then are renamed into maildir/new, so a
reader never sees half a message. With --unknown-users, a recipient listed in FILE (one
address per line, re-read on every RCPT) is refused at RCPT the way Postfix refuses an
unknown mailbox: 550 5.1.1. Prints 'READY <port>' once listening.
"""
import argparse
import asyncio
import itertools
import os
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

counter = itertools.count()


class MaildirHandler:
    def __init__(self, root, implicit_tls, unknown_users=None):
        self.root = root
        self.implicit_tls = implicit_tls
        self.unknown_users = unknown_users
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.unknown_users and os.path.exists(self.unknown_users):
            with open(self.unknown_users) as f:
                unknown = {line.strip().lower() for line in f if line.strip()}
            if address.lower() in unknown:
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        name = "%d.%d_%d.sink" % (int(time.time()), os.getpid(), next(counter))
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "-"
        trace = ["X-Sink-Mail-From: <%s>" % envelope.mail_from]
        trace += ["X-Sink-Rcpt-To: <%s>" % rcpt for rcpt in envelope.rcpt_tos]
        tls = "yes" if session.ssl or self.implicit_tls else "no"
        trace += ["X-Sink-Auth: %s" % login, "X-Sink-TLS: %s" % tls]
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        tmp = os.path.join(self.root, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(("\r\n".join(trace) + "\r\n").encode() + body)
        os.rename(tmp, os.path.join(self.root, "new", name))
        return "250 2.0.0 Ok: queued as %s" % name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--auth", help="USER:PASS accepted by AUTH PLAIN/LOGIN")
    ap.add_argument("--require-auth", action="store_true")
    ap.add_argument("--unknown-users", help="file of addresses refused at RCPT with 550 5.1.1")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing to bind to a non-loopback address")
    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
    credentials = None
    if a.auth:
        user, _, password = a.auth.partition(":")
        credentials = (user.encode(), password.encode())

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and credentials is not None
              and (auth_data.login, auth_data.password) == credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    handler = MaildirHandler(a.dir, implicit_tls=a.tls == "implicit", unknown_users=a.unknown_users)
    starttls = a.tls == "starttls"

    def factory():
        # With implicit TLS aiosmtpd cannot tell that the socket is already
        # encrypted (it tracks only its own STARTTLS) and would hide AUTH, so
        # its TLS-before-AUTH check is off there; every byte is encrypted anyway.
        return SMTP(handler, hostname="sink.localhost", tls_context=context if starttls else None,
                    require_starttls=starttls,
                    authenticator=authenticator if credentials else None,
                    auth_required=a.require_auth, auth_require_tls=starttls, timeout=60)

    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, host=a.host, port=a.port, reuse_address=True, backlog=512,
                                                     ssl=context if a.tls == "implicit" else None))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print("READY %d" % a.port, flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


if __name__ == "__main__":
    main()
