"""moto_server that also speaks Smithy RPC v2 CBOR, the protocol of current CloudWatch SDKs.

Started by deploy/local/components/moto.sh in place of moto_server.

Why: aws-sdk-cloudwatch for Rust (1.140) sends every CloudWatch call as Smithy RPC v2 CBOR
(POST /service/GraniteServiceVersion20100801/operation/<Operation>, Content-Type application/cbor,
smithy-protocol: rpc-v2-cbor). AWS accepts it; moto 5.2.5, the newest release, only parses CloudWatch's JSON and
query protocols (moto/core/parse.py PROTOCOL_PARSERS), so the Rust SDK cannot reach moto's CloudWatch at all.
boto3 is unaffected: botocore prefers the JSON protocol (botocore/utils.py PRIORITY_ORDERED_SUPPORTED_PROTOCOLS).

How: a WSGI middleware in front of moto's own application translates a CBOR request into the equivalent AWS JSON
1.0 request, lets moto answer it, and translates the answer back, using botocore's own shape-driven CBOR parser and
serializer (already in moto's venv) so timestamps, blobs and numbers keep their types. Everything else reaches moto
untouched, so one port still serves every service.

Usage: python moto_cbor_server.py [-H HOST] [-p PORT]   (same flags as moto_server; credentials from the env)
"""
import argparse
import io
import json
import re

import botocore.session
from botocore.parsers import RpcV2CBORParser, create_parser
from botocore.serialize import RpcV2CBORSerializer, create_serializer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

CBOR_PATH = re.compile(r"^/service/(?P<service>[^/]+)/operation/(?P<operation>[^/]+)$")
SIGNING_NAME = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/(?P<name>[^/]+)/aws4_request")
# botocore service names of the signing names that use RPC v2 CBOR; the signing name alone is not always one.
SERVICE_BY_SIGNING_NAME = {"monitoring": "cloudwatch"}


class RpcV2CborAsJson:
    def __init__(self, app):
        self.app = app
        self.session = botocore.session.get_session()
        self.models = {}

    def __call__(self, environ, start_response):
        match = CBOR_PATH.match(environ.get("PATH_INFO", ""))
        if environ.get("HTTP_SMITHY_PROTOCOL") != "rpc-v2-cbor" or match is None:
            return self.app(environ, start_response)
        model = self.service_model(environ)
        operation = model.operation_model(match["operation"])

        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        params = {}
        if body and operation.input_shape is not None:
            params = RpcV2CBORParser().parse({"body": body, "headers": {}, "status_code": 200}, operation.input_shape)
            params.pop("ResponseMetadata", None)
        request = create_serializer("json", include_validation=False).serialize_to_request(params, operation)

        inner = dict(environ)
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        inner["PATH_INFO"] = "/"
        inner["REQUEST_URI"] = "/"
        inner["RAW_URI"] = "/"
        inner["CONTENT_TYPE"] = request["headers"]["Content-Type"]
        inner["HTTP_X_AMZ_TARGET"] = request["headers"]["X-Amz-Target"]
        inner["CONTENT_LENGTH"] = str(len(request["body"]))
        inner["wsgi.input"] = io.BytesIO(request["body"])
        status, headers, answer = self.call(inner)

        code = int(status.split()[0])
        if code < 300:
            out = bytearray()
            if operation.output_shape is not None and answer:
                parsed = create_parser("json").parse(
                    {"body": answer, "headers": dict(headers), "status_code": code}, operation.output_shape
                )
                parsed.pop("ResponseMetadata", None)
                RpcV2CBORSerializer()._serialize_data_item(out, parsed, operation.output_shape)
        else:
            try:
                error = json.loads(answer or b"{}")
            except ValueError:
                # moto's HTML page for an unimplemented action: keep the status, no AWS error code.
                error = {}
            entries = {}
            if error.get("__type"):
                entries["__type"] = str(error["__type"])
            if error.get("message") or error.get("Message"):
                entries["message"] = str(error.get("message") or error.get("Message"))
            out = encode_text_map(entries)
        passed = [(name, value) for name, value in headers if name.lower() not in ("content-type", "content-length")]
        start_response(
            status,
            passed
            + [
                ("Content-Type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("Content-Length", str(len(out))),
            ],
        )
        return [bytes(out)]

    def service_model(self, environ):
        found = SIGNING_NAME.search(environ.get("HTTP_AUTHORIZATION", ""))
        signing_name = found["name"] if found else "monitoring"
        service = SERVICE_BY_SIGNING_NAME.get(signing_name, signing_name)
        if service not in self.models:
            self.models[service] = self.session.get_service_model(service)
        return self.models[service]

    def call(self, environ):
        captured = {}
        chunks = []

        def start_response(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = headers
            return chunks.append

        result = self.app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured["status"], captured["headers"], b"".join(chunks)


def encode_text_map(entries):
    """A CBOR map of text strings (error bodies have no shape to drive the serializer)."""
    serializer = RpcV2CBORSerializer()
    out = bytearray()
    info, size = serializer._get_additional_info_and_num_bytes(len(entries))
    out.extend(serializer._get_initial_byte(serializer.MAP_MAJOR_TYPE, info))
    if size:
        out.extend(len(entries).to_bytes(size, "big"))
    for key, value in entries.items():
        serializer._serialize_type_string(out, key, None, None)
        serializer._serialize_type_string(out, value, None, None)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        RpcV2CborAsJson(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
