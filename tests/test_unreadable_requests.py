"""A request line the MCP SDK cannot read still gets an answer with its id.

The SDK drops, without a reply, a line it cannot parse: JSON nested deeper than its parser
allows (~200 levels), an integer of thousands of digits, a raw control character in a string, a
byte-order mark. The client then waits for its own timeout (found by the hostile-input fault
suite: deep metadata in ``store_conversation`` never came back). The gateway answers a
``tools/call`` with a tool error that says what was wrong, any other request with a JSON-RPC
parse error, and keeps serving.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from gateway.unreadable import request_of

INIT = (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
        b'"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}')
INITIALIZED = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'


def tool_call(request_id: int, name: bytes, arguments: bytes) -> bytes:
    return (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s",'
            b'"arguments":%s}}' % (request_id, name, arguments))


UNREADABLE = {
    10: tool_call(10, b"store_conversation",
                  b'{"content":"deep","metadata":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}"),
    11: tool_call(11, b"quick_search", b'{"query":"x","limit":' + b"9" * 5000 + b"}"),
    12: tool_call(12, b"quick_search", b'{"query":"a\x01b"}'),
    13: b"\xef\xbb\xbf" + tool_call(13, b"ping", b"{}"),
    # The id after the deep part, as a client that orders members differently sends it.
    14: (b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ping","arguments":{"x":'
         + b"{\"a\":" * 300 + b"1" + b"}" * 300 + b'}},"id":14}'),
    15: b'{"jsonrpc":"2.0","id":15,"method":"tools/list","params":{"cursor":'
        + b"[" * 400 + b"]" * 400 + b"}}",
}


def test_unreadable_requests_are_answered_and_the_gateway_keeps_serving(env):
    proc = subprocess.Popen([sys.executable, "-m", "sessiond", "serve"], env=env, cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    lines = [INIT, INITIALIZED, *UNREADABLE.values(), b"", b"   ", b"[1,2]",
             b'{"jsonrpc":"2.0","method":"notifications/x","params":' + b"[" * 300 + b"]}",
             tool_call(99, b"ping", b"{}")]
    replies = {}
    try:
        for line in lines:
            proc.stdin.write(line + b"\n")
            proc.stdin.flush()
        while 99 not in replies:  # answers come in order of reading: 99 is the last
            raw = proc.stdout.readline()
            assert raw, f"gateway closed stdout; answered only {sorted(replies)}"
            msg = json.loads(raw)
            replies[msg.get("id")] = msg
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert set(UNREADABLE) <= replies.keys(), sorted(replies)
    for request_id in (10, 11, 12, 13, 14):
        result = replies[request_id]["result"]
        assert result["isError"] is True
        text = result["content"][0]["text"]
        assert "could not read this request" in text and "Invalid JSON" in text, text
    assert "recursion limit" in replies[10]["result"]["content"][0]["text"]
    error = replies[15]["error"]
    assert error["code"] == -32700 and "could not read this request" in error["message"]
    assert replies[99]["result"]["structuredContent"]["ok"] is True
    assert None not in replies  # nothing is answered without an id


@pytest.mark.parametrize(("line", "expected"), [
    ('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}', (7, "tools/call")),
    ('{"method":"x","params":{"id":1,"method":"inner"},"id":"abc"}', ("abc", "x")),
    ('\ufeff { "id" : -3 , "method" : "ping" }', (-3, "ping")),
    ('{"params":{"a":"\\"}{[","id":9},"id":8,"method":"m"}', (8, "m")),
    ('{"id":' + "9" * 5000 + ',"method":"m"}', (None, "m")),  # no usable id
    ('{"id":1.5,"method":"m"}', (None, "m")),
    ('{"id":null,"method":"m"}', (None, "m")),
    ('{"id":true,"method":"m"}', (None, "m")),
    ('{"id":{"a":1},"method":"m"}', (None, "m")),
    ('{"method":"notify"}', (None, "notify")),
    ("[1,2]", (None, None)),
    ("", (None, None)),
    ('{"id":5,"method":"m","params":' + "[" * 100_000, (5, "m")),  # truncated, found first
    ('"id":5', (None, None)),
])
def test_request_of_reads_the_top_level_id_and_method(line, expected):
    assert request_of(line) == expected
