#!/usr/bin/env python3
"""A real SMTP server for the notifier's tests (aiosmtpd): STARTTLS on one port and implicit TLS on another, both
with a self-signed certificate and AUTH (PLAIN, LOGIN) required over TLS.

Every accepted message is stored as <maildir>/<ns>.json, <ns> a zero-padded wall-clock nanosecond count made strictly
increasing so names sort in arrival order (written to a dot-file first, then renamed): {"mail_from", "rcpt_tos", "data", "auth_user",
"tls", "port"}, the raw RFC 5322 text in "data", so tests can check headers and parts.
Recipients beginning with "reject" are refused with 550 (permanent) and with "tempfail" with 451 (transient).
"""

import argparse
import asyncio
import json
import os
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LAST_NAME_NS = 0
NAME_LOCK = threading.Lock()


def arrival_name():
    global LAST_NAME_NS
    with NAME_LOCK:
        LAST_NAME_NS = max(time.time_ns(), LAST_NAME_NS + 1)
        return f"{LAST_NAME_NS:020d}.json"


class Store:
    def __init__(self, maildir, port):
        self.maildir = maildir
        self.port = port

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("tempfail"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        user = session.auth_data if session.authenticated else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", errors="replace"),
            "auth_user": user,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "port": self.port,
        }
        name = arrival_name()
        temp = os.path.join(self.maildir, "." + name)
        with open(temp, "w") as out:
            json.dump(record, out)
        os.rename(temp, os.path.join(self.maildir, name))
        return "250 OK stored"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
            and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)
    return check


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--starttls-port", type=int, default=18725)
    parser.add_argument("--tls-port", type=int, default=18765)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--user", default="dbwatch")
    parser.add_argument("--password", default="dbwatch-smtp")
    args = parser.parse_args()
    os.makedirs(args.maildir, exist_ok=True)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    auth = authenticator(args.user, args.password)

    starttls = Controller(Store(args.maildir, args.starttls_port), hostname=args.host, port=args.starttls_port,
                          tls_context=context, require_starttls=True, auth_required=True,
                          auth_require_tls=True, authenticator=auth, server_hostname="localhost")
    implicit = Controller(Store(args.maildir, args.tls_port), hostname=args.host, port=args.tls_port,
                          ssl_context=context, auth_required=True, auth_require_tls=False,
                          authenticator=auth, server_hostname="localhost")
    starttls.start()
    implicit.start()
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        starttls.stop()
        implicit.stop()


if __name__ == "__main__":
    main()
