#!/usr/bin/env python3
"""Local stand-ins for Slack's incoming webhooks, PagerDuty's Events API v2, Alertmanager-format webhooks, and
the APIs of Discord, Telegram, Webex, Opsgenie, Pushover, VictorOps and Microsoft Teams (connector and Workflows).

Every payload is checked against the published format; a payload that breaks it is answered like the real
service would (Slack 400 invalid_blocks/invalid_payload, PagerDuty 400 with errors[]) and recorded as invalid.
Tests work in their own "bucket" (a path segment), so parallel tests never see each other's requests:

  POST /slack/<bucket>                 Slack incoming webhook
  POST /pagerduty/<bucket>/v2/enqueue  PagerDuty Events API v2
  POST /webhook/<bucket>               Alertmanager webhook (version 4)
  POST /discord/<bucket>               Discord Execute Webhook
  POST /telegram/<bucket>/bot<token>/sendMessage   Telegram Bot API
  POST /webex/<bucket>                 Webex Create a Message (Authorization: Bearer required)
  POST /opsgenie/<bucket>/v2/alerts    Opsgenie Create Alert (Authorization: GenieKey required); also
       /opsgenie/<bucket>/v2/alerts/<alias>/close?identifierType=alias, and PUT .../<alias>/message|description
  POST /pushover/<bucket>/1/messages.json  Pushover Message API (JSON)
  POST /victorops/<bucket>/<api_key>/<routing_key>  VictorOps REST endpoint
  POST /msteams/<bucket>               Teams connector MessageCard
  POST /msteamsv2/<bucket>             Teams Workflows message with an Adaptive Card
  PUT  /_control/<bucket>              JSON {"script": ["429:2", "500", "hang", "drop", "400", ...], "default": "ok"}
                                       answers to give, in order, then `default` ("ok", "500", "drop", ...)
  GET  /_requests/<bucket>             JSON list of {kind, method, path, body, valid, errors, answer, at} in arrival
                                       order
  GET  /_health                        200

Answers: "ok" (Slack 200 "ok", PagerDuty 202, webhook 200), "400", "429:<seconds>" (with Retry-After), "500",
"hang" (never answers within 60 s), "drop" (closes the connection without answering: a server that is down).
Telegram's 429 carries its delay in the body (`parameters.retry_after`), not in Retry-After, as Telegram does.
For the fault-injection suite (tests/faults.rs):
  "429:<anything>"  the text after the colon verbatim as Retry-After: huge (9300000000000000000), malformed
                    ("soon", "-1"), or an HTTP date
  "big"             500 with a 10 MB body
  "reset"           half a status line ("HTTP/1.1 20"), then a TCP reset (RST): the answer is cut mid-way
  "slow:<seconds>"  "ok", after that long: the notification stays in flight, for a SIGKILL to land on
  "huge:<status>:<bytes>"  <status> with a body of <bytes> bytes, streamed in 64 KiB writes (the client may hang
                    up early)

--port 0 picks a free port and prints "listening on PORT" first (for a test that runs its own copy).
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


def _str(body, key, errors, required=False, max_len=None, where=None):
    where = where or key
    value = body.get(key) if isinstance(body, dict) else None
    if value is None:
        if required:
            errors.append(f"{where}: required")
        return None
    if not isinstance(value, str):
        errors.append(f"{where}: not a string")
        return None
    if required and not value.strip():
        errors.append(f"{where}: empty")
    if max_len is not None and len(value) > max_len:
        errors.append(f"{where}: {len(value)} characters, more than {max_len}")
    return value


def validate_discord(body, req):
    """Discord Execute Webhook (developer docs: Webhook, Embed Limits)."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    content = _str(body, "content", errors, max_len=2000)
    embeds = body.get("embeds")
    if not content and not embeds and "file" not in body and "components" not in body:
        errors.append("one of content, embeds, components or file is required (Cannot send an empty message)")
    _str(body, "username", errors, max_len=80)
    _str(body, "avatar_url", errors)
    if embeds is not None:
        if not isinstance(embeds, list) or len(embeds) > 10:
            errors.append("embeds: a list of at most 10")
            embeds = []
        total = 0
        for i, embed in enumerate(embeds):
            where = f"embeds[{i}]"
            if not isinstance(embed, dict):
                errors.append(f"{where}: not an object")
                continue
            title = _str(embed, "title", errors, max_len=256, where=f"{where}.title") or ""
            description = _str(embed, "description", errors, max_len=4096, where=f"{where}.description") or ""
            total += len(title) + len(description)
            color = embed.get("color")
            if color is not None and (not isinstance(color, int) or isinstance(color, bool) or not 0 <= color <= 0xFFFFFF):
                errors.append(f"{where}.color: an integer from 0 to 16777215")
        if total > 6000:
            errors.append(f"embeds: {total} characters in all, more than 6000")
    return errors


TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
                 "pre", "blockquote", "tg-emoji"}


def telegram_html(text, errors):
    """Telegram's HTML style: only its tags, every & an entity (Bot API, Formatting options)."""
    import re
    for match in re.finditer(r"<(/?)([a-zA-Z-]*)[^>]*>?", text):
        if not match.group(0).endswith(">") or match.group(2) not in TELEGRAM_TAGS:
            errors.append(f"text: Bad Request: can't parse entities: unsupported start tag at byte offset {match.start()}")
            return
    for match in re.finditer(r"&", text):
        if not re.match(r"&(lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);", text[match.start():]):
            errors.append(f"text: Bad Request: can't parse entities: unescaped & at byte offset {match.start()}")
            return


def telegram_markdown_v2(text, errors):
    """MarkdownV2: outside entities, these characters must be escaped with a backslash."""
    escaped = False
    for offset, c in enumerate(text):
        if escaped:
            escaped = False
            continue
        if c == "\\":
            escaped = True
        elif c in "#+-=.!{}>":
            errors.append(f"text: Bad Request: can't parse entities: Character '{c}' is reserved and must be escaped "
                          f"with the preceding '\\' (offset {offset})")
            return


def validate_telegram(body, req):
    """Telegram Bot API sendMessage."""
    import re
    errors = []
    if not re.fullmatch(r"bot[0-9]+:[A-Za-z0-9_-]+", req["parts"][2] if len(req["parts"]) > 2 else ""):
        errors.append("path: /bot<token>/sendMessage with a bot token (digits:letters) required")
    if len(req["parts"]) != 4 or req["parts"][3] != "sendMessage":
        errors.append("path: only sendMessage is served")
    if not isinstance(body, dict):
        return errors + ["body is not a JSON object"]
    chat = body.get("chat_id")
    if isinstance(chat, bool) or not isinstance(chat, (int, str)) or chat in (0, ""):
        errors.append("chat_id: an integer or @channelusername required")
    text = _str(body, "text", errors, required=True, max_len=4096)
    mode = body.get("parse_mode")
    if mode not in (None, "HTML", "Markdown", "MarkdownV2"):
        errors.append(f"parse_mode: {mode!r} is not HTML, Markdown or MarkdownV2")
    if text and mode == "HTML":
        telegram_html(text, errors)
    if text and mode == "MarkdownV2":
        telegram_markdown_v2(text, errors)
    for key in ("disable_notification", "disable_web_page_preview"):
        if key in body and not isinstance(body[key], bool):
            errors.append(f"{key}: not a boolean")
    if "message_thread_id" in body and not isinstance(body["message_thread_id"], int):
        errors.append("message_thread_id: not an integer")
    return errors


def validate_webex(body, req):
    """Webex Messages API, Create a Message."""
    errors = []
    if not req["headers"].get("authorization", "").startswith("Bearer "):
        errors.append("Authorization: a Bearer access token is required")
    if not isinstance(body, dict):
        return errors + ["body is not a JSON object"]
    if not any(isinstance(body.get(key), str) and body.get(key) for key in ("roomId", "toPersonId", "toPersonEmail")):
        errors.append("roomId, toPersonId or toPersonEmail: one is required")
    text = body.get("markdown") or body.get("text")
    if not isinstance(text, str) or not text:
        errors.append("text or markdown: one is required")
    elif len(text.encode()) > 7439:
        errors.append(f"markdown: {len(text.encode())} bytes, more than 7439")
    return errors


OPSGENIE_RESPONDER_TYPES = {"team", "user", "escalation", "schedule"}


def validate_opsgenie(body, req):
    """Opsgenie Alert API v2: Create Alert, Close Alert, Update Alert Message / Description."""
    import re
    errors = []
    auth = req["headers"].get("authorization", "")
    if not re.fullmatch(r"GenieKey [A-Za-z0-9-]+", auth):
        errors.append("Authorization: GenieKey <api key> required")
    parts = req["parts"][2:]
    if not isinstance(body, dict):
        return errors + ["body is not a JSON object"]
    if parts[:2] != ["v2", "alerts"]:
        return errors + ["path: /v2/alerts... required"]
    action = parts[3] if len(parts) == 4 else ("create" if len(parts) == 2 else None)
    if len(parts) == 4 and req["query"].get("identifierType") not in ("id", "alias", "tiny"):
        errors.append("identifierType: id, alias or tiny required")
    if action == "create" and req["method"] == "POST":
        _str(body, "message", errors, required=True, max_len=130)
        _str(body, "alias", errors, max_len=512)
        _str(body, "description", errors, max_len=15000)
        _str(body, "source", errors, max_len=100)
        _str(body, "entity", errors, max_len=512)
        _str(body, "note", errors, max_len=25000)
        if body.get("priority") not in (None, "P1", "P2", "P3", "P4", "P5"):
            errors.append("priority: P1 to P5")
        for key, most, each in (("tags", 20, 50), ("actions", 10, 50)):
            items = body.get(key, [])
            if not isinstance(items, list) or len(items) > most or any(not isinstance(x, str) or len(x) > each for x in items):
                errors.append(f"{key}: at most {most} strings of at most {each} characters")
        details = body.get("details", {})
        if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
            errors.append("details: an object of strings")
        elif sum(len(k) + len(v) for k, v in details.items()) > 8000:
            errors.append("details: more than 8000 characters")
        responders = body.get("responders", [])
        if not isinstance(responders, list) or len(responders) > 50:
            errors.append("responders: a list of at most 50")
            responders = []
        for i, r in enumerate(responders):
            if not isinstance(r, dict) or r.get("type") not in OPSGENIE_RESPONDER_TYPES:
                errors.append(f"responders[{i}].type: team, user, escalation or schedule")
            elif not any(r.get(k) for k in ("id", "name", "username")):
                errors.append(f"responders[{i}]: id, name or username required")
    elif action == "close" and req["method"] == "POST":
        _str(body, "source", errors, max_len=100)
        _str(body, "user", errors, max_len=100)
        _str(body, "note", errors, max_len=25000)
    elif action == "message" and req["method"] == "PUT":
        _str(body, "message", errors, required=True, max_len=130)
    elif action == "description" and req["method"] == "PUT":
        _str(body, "description", errors, required=True, max_len=15000)
    else:
        errors.append(f"{req['method']} {'/'.join(parts)}: not an Alert API call")
    return errors


def validate_pushover(body, req):
    """Pushover Message API (messages.json), JSON body."""
    import re
    errors = []
    if req["parts"][2:] != ["1", "messages.json"]:
        errors.append("path: /1/messages.json required")
    if not isinstance(body, dict):
        return errors + ["body is not a JSON object"]
    for key in ("token", "user"):
        if not re.fullmatch(r"[A-Za-z0-9]{30}", str(body.get(key, ""))):
            errors.append(f"{key}: invalid (30 letters and digits)")
    _str(body, "message", errors, required=True, max_len=1024)
    _str(body, "title", errors, max_len=250)
    _str(body, "url", errors, max_len=512)
    _str(body, "url_title", errors, max_len=100)
    _str(body, "sound", errors)
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -2 <= priority <= 2:
        errors.append("priority: an integer from -2 to 2")
    if priority == 2:
        retry, expire = body.get("retry"), body.get("expire")
        if not isinstance(retry, int) or retry < 30:
            errors.append("retry: required for emergency priority, at least 30")
        if not isinstance(expire, int) or not 0 < expire <= 10800:
            errors.append("expire: required for emergency priority, at most 10800")
    if body.get("html", 0) not in (0, 1):
        errors.append("html: 0 or 1")
    if "ttl" in body and (not isinstance(body["ttl"], int) or body["ttl"] <= 0):
        errors.append("ttl: a positive integer")
    return errors


VICTOROPS_TYPES = {"CRITICAL", "WARNING", "INFO", "ACKNOWLEDGEMENT", "RECOVERY"}


def validate_victorops(body, req):
    """VictorOps (Splunk On-Call) REST endpoint: /<api_key>/<routing_key>."""
    errors = []
    if len(req["parts"]) != 4 or not all(req["parts"][2:]):
        errors.append("path: /<api_key>/<routing_key> required")
    if not isinstance(body, dict):
        return errors + ["body is not a JSON object"]
    if body.get("message_type") not in VICTOROPS_TYPES:
        errors.append(f"message_type: {body.get('message_type')!r} is not one of {sorted(VICTOROPS_TYPES)}")
    _str(body, "entity_id", errors, required=body.get("message_type") == "RECOVERY", max_len=512)
    for key, value in body.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"{key}: not a string or number")
    return errors


def validate_msteams(body, req):
    """Teams connector MessageCard (legacy actionable message card reference)."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    if (body.get("@type") or body.get("type")) != "MessageCard":
        errors.append("@type: MessageCard required")
    if not body.get("text") and not body.get("summary"):
        errors.append("Summary or Text is required.")
    color = body.get("themeColor")
    if color is not None and not (isinstance(color, str) and len(color) == 6 and all(c in "0123456789abcdefABCDEF" for c in color)):
        errors.append("themeColor: six hex digits")
    for key in ("title", "summary", "text"):
        if key in body and not isinstance(body[key], str):
            errors.append(f"{key}: not a string")
    if len(json.dumps(body).encode()) > 28 * 1024:
        errors.append("message: larger than 28 KB")
    return errors


ADAPTIVE_COLORS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}


def validate_msteamsv2(body, req):
    """Teams Workflows webhook: a message with Adaptive Card attachments (schema 1.x)."""
    errors = []
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    if body.get("type") != "message":
        errors.append("type: message required")
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return errors + ["attachments: a non-empty list required"]
    for i, attachment in enumerate(attachments):
        where = f"attachments[{i}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            errors.append(f"{where}.contentType: application/vnd.microsoft.card.adaptive required")
            continue
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            errors.append(f"{where}.content.type: AdaptiveCard required")
            continue
        if not isinstance(card.get("version"), str):
            errors.append(f"{where}.content.version: required")
        for j, element in enumerate(card.get("body", [])):
            ewhere = f"{where}.content.body[{j}]"
            if not isinstance(element, dict) or not isinstance(element.get("type"), str):
                errors.append(f"{ewhere}.type: required")
                continue
            if element["type"] == "TextBlock":
                if not isinstance(element.get("text"), str):
                    errors.append(f"{ewhere}.text: required")
                if element.get("color") not in (None, *ADAPTIVE_COLORS):
                    errors.append(f"{ewhere}.color: {element.get('color')!r} is not an Adaptive Card colour")
                if element.get("weight") not in (None, "Default", "Lighter", "Bolder"):
                    errors.append(f"{ewhere}.weight: Default, Lighter or Bolder")
    if len(json.dumps(body).encode()) > 28 * 1024:
        errors.append("message: larger than 28 KB")
    return errors


# The receivers whose check needs the request (path, headers, method, query), not only the body.
REQUEST_VALIDATORS = {"discord": validate_discord, "telegram": validate_telegram, "webex": validate_webex,
                      "opsgenie": validate_opsgenie, "pushover": validate_pushover, "victorops": validate_victorops,
                      "msteams": validate_msteams, "msteamsv2": validate_msteamsv2}


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
        if parts and parts[0] in REQUEST_VALIDATORS:
            return self.deliver("PUT")
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
        self.deliver("POST")

    def deliver(self, method):
        from urllib.parse import parse_qsl, urlsplit
        split = urlsplit(self.path)
        parts = split.path.strip("/").split("/")
        raw = self.read_body()
        if len(parts) >= 2 and (parts[0] in VALIDATORS or parts[0] in REQUEST_VALIDATORS):
            kind, name = parts[0], parts[1]
        else:
            return self.reply(404, "{}")
        request = {"method": method, "parts": parts, "query": dict(parse_qsl(split.query)),
                   "headers": {k.lower(): v for k, v in self.headers.items()}}
        try:
            body = json.loads(raw)
            if kind in REQUEST_VALIDATORS:
                errors = REQUEST_VALIDATORS[kind](body, request)
            else:
                errors = VALIDATORS[kind](body)
        except ValueError as error:
            body, errors = raw.decode(errors="replace"), [f"invalid JSON: {error}"]
        with LOCK:
            b = bucket(name)
            answer = b["script"].pop(0) if b["script"] else b["default"]
            if errors:
                answer = "invalid"
            b["requests"].append({"kind": kind, "method": method, "path": "/" + "/".join(parts[2:]),
                                  "query": request["query"], "body": body, "valid": not errors, "errors": errors,
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
        if kind in SERVICE_ANSWERS:
            return SERVICE_ANSWERS[kind](self, answer, errors)
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


def _seconds(answer):
    return answer.split(":", 1)[1] if ":" in answer else "1"


def answer_discord(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"message": "You are being rate limited.", "retry_after": float(_seconds(answer)),
                                              "global": False}), headers=[("Retry-After", _seconds(answer))])
    if answer == "500":
        return handler.reply(502, json.dumps({"message": "502 Bad Gateway"}))
    if answer in ("400", "invalid"):
        return handler.reply(400, json.dumps({"code": 50006, "message": "; ".join(errors) or "Cannot send an empty message"}))
    handler.send_response(204)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def answer_telegram(handler, answer, errors):
    if answer.startswith("429"):
        seconds = int(_seconds(answer))
        return handler.reply(429, json.dumps({"ok": False, "error_code": 429,
                                              "description": f"Too Many Requests: retry after {seconds}",
                                              "parameters": {"retry_after": seconds}}))
    if answer == "500":
        return handler.reply(502, "<html><body>502 Bad Gateway</body></html>", "text/html")
    if answer in ("400", "invalid"):
        return handler.reply(400, json.dumps({"ok": False, "error_code": 400,
                                              "description": "; ".join(errors) or "Bad Request: chat not found"}))
    return handler.reply(200, json.dumps({"ok": True, "result": {"message_id": 1, "date": int(time.time()),
                                                                 "chat": {"id": 1, "type": "group"}}}))


def answer_webex(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"message": "Too Many Requests"}), headers=[("Retry-After", _seconds(answer))])
    if answer == "500":
        return handler.reply(503, json.dumps({"message": "Service Unavailable"}))
    if answer in ("400", "invalid"):
        status = 401 if any(e.startswith("Authorization") for e in errors) else 400
        return handler.reply(status, json.dumps({"message": "; ".join(errors) or "Bad Request", "errors": errors}))
    return handler.reply(200, json.dumps({"id": "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ", "roomType": "group"}))


def answer_opsgenie(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"message": "You are making too many requests!", "took": 0.0}),
                             headers=[("Retry-After", _seconds(answer))])
    if answer == "500":
        return handler.reply(500, json.dumps({"message": "Internal Server Error", "took": 0.0}))
    if answer in ("400", "invalid"):
        status = 401 if any(e.startswith("Authorization") for e in errors) else 422
        return handler.reply(status, json.dumps({"message": "Request body is not processable",
                                                 "errors": {str(i): e for i, e in enumerate(errors)}, "took": 0.0}))
    return handler.reply(202, json.dumps({"result": "Request will be processed", "took": 0.01,
                                          "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}))


def answer_pushover(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"status": 0, "errors": ["application is over its message limit"]}))
    if answer == "500":
        return handler.reply(500, "Internal Server Error", "text/plain")
    if answer in ("400", "invalid"):
        return handler.reply(400, json.dumps({"status": 0, "errors": errors or ["user identifier is invalid"],
                                              "request": "r"}))
    return handler.reply(200, json.dumps({"status": 1, "request": "647d2300-702c-4b38-8b2f-d56326ae460b"}))


def answer_victorops(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"result": "failure", "message": "rate limited"}),
                             headers=[("Retry-After", _seconds(answer))])
    if answer == "500":
        return handler.reply(500, json.dumps({"result": "failure", "message": "internal error"}))
    if answer in ("400", "invalid"):
        return handler.reply(400, json.dumps({"result": "failure", "message": "; ".join(errors) or "Missing fields"}))
    return handler.reply(200, json.dumps({"result": "success", "entity_id": "e"}))


def answer_msteams(handler, answer, errors):
    if answer.startswith("429"):
        # The connector answers 200 with the failure as text.
        return handler.reply(200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned "
                                  "HTTP error 429 with ContextId tcid=0", "text/plain")
    if answer == "500":
        return handler.reply(500, "Internal Server Error", "text/plain")
    if answer in ("400", "invalid"):
        return handler.reply(400, "; ".join(errors) or "Bad payload received by generic incoming webhook.", "text/plain")
    return handler.reply(200, "1", "text/plain")


def answer_msteamsv2(handler, answer, errors):
    if answer.startswith("429"):
        return handler.reply(429, json.dumps({"error": {"code": "TooManyRequests"}}), headers=[("Retry-After", _seconds(answer))])
    if answer == "500":
        return handler.reply(502, json.dumps({"error": {"code": "BadGateway"}}))
    if answer in ("400", "invalid"):
        return handler.reply(400, json.dumps({"error": {"code": "InvalidRequestContent", "message": "; ".join(errors)}}))
    return handler.reply(202, "", "text/plain")


SERVICE_ANSWERS = {"discord": answer_discord, "telegram": answer_telegram, "webex": answer_webex,
                   "opsgenie": answer_opsgenie, "pushover": answer_pushover, "victorops": answer_victorops,
                   "msteams": answer_msteams, "msteamsv2": answer_msteamsv2}


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
    if args.port == 0:
        print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
