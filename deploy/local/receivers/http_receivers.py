#!/usr/bin/env python3
"""Local stand-ins for Slack's incoming webhooks, PagerDuty's Events API v2 and Alertmanager-format webhooks.

Every payload is checked against the published format; a payload that breaks it is answered like the real
service would (Slack 400 invalid_blocks/invalid_payload, PagerDuty 400 with errors[]) and recorded as invalid.
Tests work in their own "bucket" (a path segment), so parallel tests never see each other's requests:

  POST /slack/<bucket>                 Slack incoming webhook
  POST /pagerduty/<bucket>/v2/enqueue  PagerDuty Events API v2
  POST /webhook/<bucket>               Alertmanager webhook (version 4)
  PUT  /_control/<bucket>              JSON {"script": ["429:2", "500", "hang", "drop", "400", ...], "default": "ok"}
                                       answers to give, in order, then `default` ("ok", "500", "drop", ...)
  GET  /_requests/<bucket>             JSON list of {kind, body, valid, errors, answer, at} in arrival order
  GET  /_health                        200

Answers: "ok" (Slack 200 "ok", PagerDuty 202, webhook 200), "400", "429:<seconds>" (with Retry-After), "500",
"hang" (never answers within 60 s), "drop" (closes the connection without answering: a server that is down).
For the fault-injection suite (tests/faults.rs):
  "429:<anything>"  the text after the colon verbatim as Retry-After: huge (9300000000000000000), malformed
                    ("soon", "-1"), or an HTTP date
  "big"             500 with a 10 MB body
  "reset"           half a status line ("HTTP/1.1 20"), then a TCP reset (RST): the answer is cut mid-way
  "slow:<seconds>"  "ok", after that long: the notification stays in flight, for a SIGKILL to land on
  "huge:<status>:<bytes>"  <status> with a body of <bytes> bytes, streamed in 64 KiB writes (the client may hang
                    up early)

--stall-port PORT also listens on PORT and holds every connection open without reading or writing for 60 s: a
TLS server whose handshake never completes, to an https:// receiver URL.
"""

import argparse
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
BUCKETS = {}  # bucket -> {"script": [...], "default": "ok", "requests": [...]}

SLACK_BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "rich_text", "markdown"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}


def bucket(name):
    return BUCKETS.setdefault(name, {"script": [], "default": "ok", "requests": []})


def text_object(obj, where, max_len, errors, plain_only=False):
    if not isinstance(obj, dict):
        errors.append(f"{where}: not a text object")
        return
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
        errors.append(f"{where}.type: {kind!r} not allowed")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"{where}.text: missing or empty")
    elif len(text) > max_len:
        errors.append(f"{where}.text: {len(text)} characters, more than {max_len}")


def validate_slack(body):
    """Slack incoming webhook: `text` and/or `blocks`; Block Kit limits."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    text = body.get("text")
    blocks = body.get("blocks")
    if text is None and blocks is None:
        errors.append("neither text nor blocks")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        errors.append("text: empty")
    if isinstance(text, str) and len(text) > 40000:
        errors.append("text: more than 40000 characters")
    if blocks is not None:
        if not isinstance(blocks, list):
            errors.append("blocks: not a list")
            blocks = []
        if len(blocks) > 50:
            errors.append(f"blocks: {len(blocks)} blocks, more than 50")
        for i, block in enumerate(blocks):
            where = f"blocks[{i}]"
            if not isinstance(block, dict) or block.get("type") not in SLACK_BLOCK_TYPES:
                errors.append(f"{where}: unknown block type")
                continue
            if "block_id" in block and len(str(block["block_id"])) > 255:
                errors.append(f"{where}.block_id: longer than 255")
            kind = block["type"]
            if kind == "header":
                text_object(block.get("text"), f"{where}.text", 150, errors, plain_only=True)
            elif kind == "section":
                if "text" not in block and "fields" not in block:
                    errors.append(f"{where}: section without text or fields")
                if "text" in block:
                    text_object(block["text"], f"{where}.text", 3000, errors)
                fields = block.get("fields", [])
                if len(fields) > 10:
                    errors.append(f"{where}.fields: more than 10")
                for j, field in enumerate(fields):
                    text_object(field, f"{where}.fields[{j}]", 2000, errors)
            elif kind == "context":
                elements = block.get("elements")
                if not isinstance(elements, list) or not elements or len(elements) > 10:
                    errors.append(f"{where}.elements: 1 to 10 elements required")
                else:
                    for j, element in enumerate(elements):
                        if isinstance(element, dict) and element.get("type") == "image":
                            continue
                        text_object(element, f"{where}.elements[{j}]", 2000, errors)
    for key in ("channel", "username", "icon_emoji", "icon_url"):
        if key in body and not isinstance(body[key], str):
            errors.append(f"{key}: not a string")
    return errors


def validate_pagerduty(body):
    """PagerDuty Events API v2 (developer docs, 'Send an Alert Event')."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("routing_key: must be a 32-character integration key")
    action = body.get("event_action")
    if action not in PD_ACTIONS:
        errors.append(f"event_action: {action!r} is not one of trigger, acknowledge, resolve")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 255):
        errors.append("dedup_key: 1 to 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"dedup_key: required for {action}")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            errors.append("payload: required for trigger")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("payload.summary: required")
            elif len(summary) > 1024:
                errors.append(f"payload.summary: {len(summary)} characters, more than 1024")
            if not isinstance(payload.get("source"), str) or not payload.get("source"):
                errors.append("payload.source: required")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append("payload.severity: must be critical, error, warning or info")
            if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
                errors.append("payload.custom_details: object or string")
        for i, link in enumerate(body.get("links", [])):
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                errors.append(f"links[{i}].href: required")
        for i, image in enumerate(body.get("images", [])):
            if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
                errors.append(f"images[{i}].src: HTTPS URL required")
    return errors


def validate_webhook(body):
    """Alertmanager's webhook payload, version 4."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    for key, kind in (("version", str), ("groupKey", str), ("status", str), ("receiver", str),
                      ("groupLabels", dict), ("commonLabels", dict), ("commonAnnotations", dict),
                      ("externalURL", str), ("alerts", list), ("truncatedAlerts", int)):
        if not isinstance(body.get(key), kind):
            errors.append(f"{key}: missing or not a {kind.__name__}")
    if body.get("version") != "4":
        errors.append("version: must be \"4\"")
    if body.get("status") not in ("firing", "resolved"):
        errors.append("status: firing or resolved")
    for i, alert in enumerate(body.get("alerts", []) or []):
        for key in ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"):
            if key not in alert:
                errors.append(f"alerts[{i}].{key}: missing")
    return errors


VALIDATORS = {"slack": validate_slack, "pagerduty": validate_pagerduty, "webhook": validate_webhook}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read /_requests instead
        pass

    def reply(self, status, body, content_type="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts == ["_health"]:
            return self.reply(200, "{}")
        if len(parts) == 2 and parts[0] == "_requests":
            with LOCK:
                data = json.dumps(bucket(parts[1])["requests"])
            return self.reply(200, data)
        self.reply(404, "{}")

    def do_PUT(self):
        parts = self.path.strip("/").split("/")
        body = self.read_body()
        if len(parts) == 2 and parts[0] == "_control":
            spec = json.loads(body or b"{}")
            with LOCK:
                b = bucket(parts[1])
                b["script"] = list(spec.get("script", []))
                b["default"] = spec.get("default", "ok")
            return self.reply(200, "{}")
        self.reply(404, "{}")

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        raw = self.read_body()
        if len(parts) >= 2 and parts[0] in VALIDATORS:
            kind, name = parts[0], parts[1]
        else:
            return self.reply(404, "{}")
        try:
            body = json.loads(raw)
            errors = VALIDATORS[kind](body)
        except ValueError as error:
            body, errors = raw.decode(errors="replace"), [f"invalid JSON: {error}"]
        with LOCK:
            b = bucket(name)
            answer = b["script"].pop(0) if b["script"] else b["default"]
            if errors:
                answer = "invalid"
            b["requests"].append({"kind": kind, "body": body, "valid": not errors, "errors": errors,
                                  "answer": answer, "at": time.time()})
        self.answer(kind, answer, errors)

    def answer(self, kind, answer, errors):
        if answer.startswith("huge:"):
            _, status, size = answer.split(":", 2)
            size = int(size)
            self.close_connection = True
            self.send_response(int(status))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    part = chunk[: min(len(chunk), size - sent)]
                    self.wfile.write(part)
                    sent += len(part)
            except OSError:
                pass  # the client read what it wanted and hung up
            return
        if answer == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if answer == "hang":
            time.sleep(60)
            self.close_connection = True
            return
        if answer == "big":
            return self.reply(500, b"x" * (10 * 1024 * 1024), "text/plain")
        if answer.startswith("slow:"):
            time.sleep(float(answer.split(":", 1)[1]))
            answer = "ok"
        if answer == "reset":
            self.close_connection = True
            try:
                self.wfile.write(b"HTTP/1.1 20")
                self.wfile.flush()
                # SO_LINGER 0: close sends RST instead of FIN, mid-answer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            return
        if answer.startswith("429"):
            seconds = answer.split(":", 1)[1] if ":" in answer else "1"
            if kind == "pagerduty":
                return self.reply(429, json.dumps({"status": "throttle event", "message": "Requests for this service are arriving too quickly."}), headers=[("Retry-After", seconds)])
            return self.reply(429, "rate_limited", "text/plain", headers=[("Retry-After", seconds)])
        if answer == "500":
            return self.reply(500, "rollup_error" if kind == "slack" else json.dumps({"status": "error"}),
                              "text/plain" if kind == "slack" else "application/json")
        if answer in ("400", "invalid"):
            if kind == "pagerduty":
                return self.reply(400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                                   "errors": errors or ["Length of 'routing_key' is incorrect (should be 32 characters)"]}))
            if kind == "slack":
                return self.reply(400, "invalid_blocks" if errors else "invalid_payload", "text/plain")
            return self.reply(400, json.dumps({"errors": errors}))
        if kind == "pagerduty":
            return self.reply(202, json.dumps({"status": "success", "message": "Event processed", "dedup_key": "x"}))
        if kind == "slack":
            return self.reply(200, "ok", "text/plain")
        return self.reply(200, "{}")


def stall(host, port):
    """Accepts connections and never says a word (nor reads one): a TLS handshake that never completes."""
    listener = socket.create_server((host, port))
    while True:
        connection, _ = listener.accept()
        threading.Timer(60, connection.close).start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18790)
    parser.add_argument("--stall-port", type=int, default=None)
    args = parser.parse_args()
    if args.stall_port is not None:
        threading.Thread(target=stall, args=(args.host, args.stall_port), daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
