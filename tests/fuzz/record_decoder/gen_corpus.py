#!/usr/bin/env python3
"""Writes the seed corpus of the record_decoder fuzz target.

Uses `protoc --encode` on text-format messages, so it needs only protoc and the
schemas in agent/proto. Run from anywhere:  python3 gen_corpus.py
The files are committed; re-run only when the seeds should change.
"""
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parents[2] / "agent" / "proto"
OUT = HERE / "corpus"
AGENT = "os::012345-SN0001"
CONTROLLER = "proto::controller"


def encode(message_type, text, proto):
    return subprocess.run(
        ["protoc", f"-I{PROTO_DIR}", f"--encode={message_type}", proto],
        input=text.encode(), capture_output=True, check=True).stdout


def msg(text):
    return encode("usp.Msg", text, "usp-msg-1-4.proto")


def escape(data):
    return "".join(f"\\{b:03o}" for b in data)


def record(body, version="1.4", to=AGENT, frm=CONTROLLER, extra=""):
    return encode("usp_record.Record",
                  f'version: "{version}" to_id: "{to}" from_id: "{frm}" {extra} {body}',
                  "usp-record-1-4.proto")


def no_session(payload, **kw):
    return record(f'no_session_context {{ payload: "{escape(payload)}" }}', **kw)


GET = msg('header { msg_id: "get-1" msg_type: GET } body { request { get { '
          'param_paths: "Device.DeviceInfo." param_paths: "Device.LocalAgent.Controller.*.EndpointID" max_depth: 2 } } }')
SEEDS = {
    "get": no_session(GET),
    "get_search": no_session(msg(
        'header { msg_id: "get-2" msg_type: GET } body { request { get { '
        'param_paths: "Device.LocalAgent.Controller.[Enable==true].EndpointID" } } }')),
    "set": no_session(msg(
        'header { msg_id: "set-1" msg_type: SET } body { request { set { allow_partial: true update_objs { '
        'obj_path: "Device.LocalAgent.Controller.1." param_settings { param: "Enable" value: "true" required: true } } } } }')),
    "add": no_session(msg(
        'header { msg_id: "add-1" msg_type: ADD } body { request { add { create_objs { '
        'obj_path: "Device.LocalAgent.Subscription." param_settings { param: "NotifType" value: "ValueChange" } } } } }')),
    "delete": no_session(msg(
        'header { msg_id: "del-1" msg_type: DELETE } body { request { delete { obj_paths: "Device.LocalAgent.Subscription.1." } } }')),
    "operate": no_session(msg(
        'header { msg_id: "op-1" msg_type: OPERATE } body { request { operate { command: "Device.SoftwareModules.InstallDU()" '
        'command_key: "k" send_resp: true input_args { key: "URL" value: "https://example.com/a.tar" } } } }')),
    "gsdm": no_session(msg(
        'header { msg_id: "gsdm-1" msg_type: GET_SUPPORTED_DM } body { request { get_supported_dm { '
        'obj_paths: "Device." return_params: true return_commands: true return_events: true } } }')),
    "get_instances": no_session(msg(
        'header { msg_id: "gi-1" msg_type: GET_INSTANCES } body { request { get_instances { obj_paths: "Device.LocalAgent." } } }')),
    "get_supported_proto": no_session(msg(
        'header { msg_id: "gsp-1" msg_type: GET_SUPPORTED_PROTO } body { request { get_supported_protocol { '
        'controller_supported_protocol_versions: "1.3,1.4" } } }')),
    "notify_resp": no_session(msg(
        'header { msg_id: "n-1" msg_type: NOTIFY_RESP } body { response { notify_resp { subscription_id: "sub-1" } } }')),
    "notify_event": no_session(msg(
        'header { msg_id: "n-2" msg_type: NOTIFY } body { request { notify { subscription_id: "s" send_resp: true '
        'event { obj_path: "Device." event_name: "Boot!" params { key: "Cause" value: "LocalReboot" } } } } }')),
    "error": no_session(msg(
        'header { msg_id: "e-1" msg_type: ERROR } body { error { err_code: 7004 err_msg: "bad" '
        'param_errs { param_path: "Device.X" err_code: 7010 } } }')),
    "get_no_version": no_session(GET, version=""),
    "get_wrong_to": no_session(GET, to="os::012345-OTHER"),
    "get_tls12": no_session(GET, extra="payload_security: TLS12"),
    "msg_type_mismatch": no_session(msg(
        'header { msg_id: "mm-1" msg_type: SET } body { request { get { param_paths: "Device." } } }')),
    "empty_body": no_session(msg('header { msg_id: "eb-1" msg_type: GET } body { }')),
    "session_context": record(f'session_context {{ session_id: 1 sequence_id: 1 expected_id: 1 payload: "{escape(GET)}" }}'),
    "mqtt_connect": record('mqtt_connect { version: V5 subscribed_topic: "usp/controller" }'),
    "stomp_connect": record('stomp_connect { subscribed_destination: "/queue/controller" }'),
    "websocket_connect": record("websocket_connect { }"),
    "disconnect": record('disconnect { reason: "bye" reason_code: 7105 }'),
}

OUT.mkdir(exist_ok=True)
for name, data in SEEDS.items():
    (OUT / f"seed_{name}").write_bytes(data)
full = SEEDS["get"]
(OUT / "seed_truncated_get").write_bytes(full[: len(full) - 7])
(OUT / "seed_truncated_payload").write_bytes(no_session(GET[: len(GET) - 5]))
(OUT / "seed_two_record_types").write_bytes(full + bytes([0x62, 0x00]))
(OUT / "seed_garbage").write_bytes(bytes(range(256))[::7] * 3)
(OUT / "seed_empty").write_bytes(b"")
print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")
