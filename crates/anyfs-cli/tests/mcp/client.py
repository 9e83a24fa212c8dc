"""Drives AnyFS's MCP tools with the official MCP Python SDK.

    client.py stdio ANYFS WORKSPACE OVER_DIR OUTSIDE_FILE
    client.py http URL ACCOUNT_SECRET AGENT_TOKEN OTHER_SECRET

`stdio` starts `ANYFS mcp --over OVER_DIR WORKSPACE` itself (and more
variants: read-only, a deny rule, roots). `http` connects to a running
`anyfs serve` at URL whose account owns ACCOUNT_SECRET, with an agent of it
(policy: deny /private/**) and another account. Prints one line per check
and exits 1 if any failed.
"""

import asyncio
import base64
import json
import logging
import os
import sys
import urllib.request
from contextlib import asynccontextmanager

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
import mcp_types as types

FAILED = []
PASSED = [0]

REFERENCE_TOOLS = {
    "read_text_file", "read_media_file", "read_multiple_files", "write_file",
    "edit_file", "create_directory", "list_directory", "list_directory_with_sizes",
    "directory_tree", "move_file", "search_files", "get_file_info",
    "list_allowed_directories",
}
OURS = {"delete", "copy", "grep"}
SNAPSHOT_TOOLS = {"create_snapshot", "list_snapshots", "diff", "restore_snapshot"}

# Every tool and its path arguments, with the other arguments a call needs.
PATH_ARGS = {
    "read_text_file": (["path"], {}),
    "read_media_file": (["path"], {}),
    "write_file": (["path"], {"content": "x"}),
    "edit_file": (["path"], {"edits": [{"oldText": "a", "newText": "b"}]}),
    "create_directory": (["path"], {}),
    "list_directory": (["path"], {}),
    "list_directory_with_sizes": (["path"], {}),
    "directory_tree": (["path"], {}),
    "move_file": (["source", "destination"], {}),
    "search_files": (["path"], {"pattern": "*"}),
    "get_file_info": (["path"], {}),
    "delete": (["path"], {"recursive": True}),
    "copy": (["source", "destination"], {"recursive": True}),
    "grep": (["path"], {"pattern": "root"}),
}

TRAVERSALS = [
    "../../../../../../etc/passwd",
    "/../../../../etc/passwd",
    "..",
    "../",
    "a/../../../etc/passwd",
    "/./../etc/passwd",
    "....//....//etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\etc\\passwd",
    "/etc/passwd",
    "link-out/passwd",
    "link-up/outside.txt",
    "a\x00b",
]


def check(name, ok, detail=""):
    if ok:
        PASSED[0] += 1
        print(f"ok   {name}")
    else:
        FAILED.append(name)
        print(f"FAIL {name}: {detail}")


def text_of(result):
    return "\n".join(getattr(c, "text", "") or "" for c in result.content)


async def call(session, tool, args):
    """(is_error, text, result): a protocol error counts as an error."""
    try:
        result = await session.call_tool(tool, args)
    except MCPError as e:
        return True, e.message, None
    return result.is_error, text_of(result), result


async def common_checks(session, where, *, secret_leak_markers=()):
    """Every tool with good and bad arguments, on an empty-ish workspace."""
    listed = await session.list_tools()
    names = {t.name for t in listed.tools}
    check(f"{where}: lists the reference tools", REFERENCE_TOOLS <= names, sorted(REFERENCE_TOOLS - names))
    check(f"{where}: lists delete, copy, grep", OURS <= names, sorted(OURS - names))
    by_name = {t.name: t for t in listed.tools}
    ann = lambda n: by_name[n].annotations  # noqa: E731
    check(f"{where}: read_text_file is read-only", ann("read_text_file") and ann("read_text_file").read_only_hint is True)
    check(f"{where}: delete is destructive", ann("delete") and ann("delete").destructive_hint is True)
    check(f"{where}: create_directory is idempotent", ann("create_directory") and ann("create_directory").idempotent_hint is True)
    check(f"{where}: get_file_info has an output schema", by_name["get_file_info"].output_schema is not None)
    check(
        f"{where}: input schemas are typed",
        by_name["edit_file"].input_schema.get("properties", {}).get("edits") is not None
        and "path" in by_name["edit_file"].input_schema.get("required", []),
        by_name["edit_file"].input_schema,
    )

    err, out, _ = await call(session, "write_file", {"path": "/w/a/b.txt", "content": "one\ntwo\nthree\nfour\n"})
    check(f"{where}: write_file makes folders", not err and "/w/a/b.txt" in out, out)
    err, out, _ = await call(session, "read_text_file", {"path": "/w/a/b.txt"})
    check(f"{where}: read_text_file reads it", not err and out == "one\ntwo\nthree\nfour\n", repr(out))
    err, out, _ = await call(session, "read_text_file", {"path": "w/a/b.txt", "head": 2})
    check(f"{where}: head", not err and out == "one\ntwo", repr(out))
    err, out, _ = await call(session, "read_text_file", {"path": "/w/a/b.txt", "tail": 2})
    check(f"{where}: tail", not err and out == "three\nfour", repr(out))
    err, out, _ = await call(session, "read_text_file", {"path": "/w/a/b.txt", "head": 1, "tail": 1})
    check(f"{where}: head and tail together are refused", err and "not both" in out, out)
    err, out, _ = await call(session, "read_text_file", {"path": "/w/missing.txt"})
    check(f"{where}: a missing file is an error naming the path", err and "/w/missing.txt" in out, out)
    err, out, _ = await call(session, "read_text_file", {})
    check(f"{where}: a missing argument is an error", err and "path" in out, out)
    err, out, _ = await call(session, "read_text_file", {"path": "/w/a/b.txt", "bogus": 1})
    check(f"{where}: an unknown argument is an error", err and "bogus" in out, out)
    err, out, _ = await call(session, "read_text_file", {"path": 7})
    check(f"{where}: a wrong type is an error", err, out)

    # read_multiple_files: the good one read, the bad one reported in place.
    err, out, _ = await call(session, "read_multiple_files", {"paths": ["/w/a/b.txt", "/w/none.txt"]})
    check(
        f"{where}: read_multiple_files",
        not err and "/w/a/b.txt:\none" in out and "/w/none.txt: Error" in out and "---" in out,
        out,
    )

    # edit_file: order, indentation, dry run.
    src = "def f():\n    if x:\n        return 1\n    return 2\n"
    await call(session, "write_file", {"path": "/w/e.py", "content": src})
    err, out, _ = await call(session, "edit_file", {
        "path": "/w/e.py",
        "edits": [{"oldText": "return 1", "newText": "return 10"}, {"oldText": "return 10", "newText": "return 100"}],
        "dryRun": True,
    })
    check(f"{where}: edit_file dry run shows a unified diff", not err and out.startswith("```diff\n") and "--- /w/e.py" in out
          and "+++ /w/e.py" in out and "@@ " in out and "-        return 1" in out and "+        return 100" in out, out)
    _, now, _ = await call(session, "read_text_file", {"path": "/w/e.py"})
    check(f"{where}: a dry run writes nothing", now == src, now)
    err, out, _ = await call(session, "edit_file", {
        "path": "/w/e.py",
        "edits": [{"oldText": "if x:\n    return 1", "newText": "if y:\n    return 3\n    # done"}],
    })
    _, now, _ = await call(session, "read_text_file", {"path": "/w/e.py"})
    check(f"{where}: a loose match keeps the file's indentation", not err
          and now == "def f():\n    if y:\n        return 3\n        # done\n    return 2\n", now)
    err, out, _ = await call(session, "edit_file", {
        "path": "/w/e.py",
        "edits": [{"oldText": "return 2", "newText": "return 4"}, {"oldText": "not there", "newText": "x"}],
    })
    _, now, _ = await call(session, "read_text_file", {"path": "/w/e.py"})
    check(f"{where}: an edit not found changes nothing and says which", err and "edit 2 of 2" in out and "/w/e.py" in out
          and "return 2" in now, out)

    # Tabs stay tabs; a file with mixed line ends keeps them.
    await call(session, "write_file", {"path": "/w/t.py", "content": "if x:\n\tif y:\n\t\tz()\n"})
    err, out, _ = await call(session, "edit_file", {"path": "/w/t.py", "edits": [
        {"oldText": "if y:\n    z()", "newText": "if y:\n    w()"}]})
    _, now, _ = await call(session, "read_text_file", {"path": "/w/t.py"})
    check(f"{where}: a loose match keeps the file's tabs", not err and now == "if x:\n\tif y:\n\t\tw()\n", repr(now))
    await call(session, "write_file", {"path": "/w/m.txt", "content": "a\r\nb\nc\n"})
    err, out, _ = await call(session, "edit_file", {"path": "/w/m.txt", "edits": [{"oldText": "c", "newText": "d"}]})
    _, now, _ = await call(session, "read_text_file", {"path": "/w/m.txt"})
    check(f"{where}: mixed line ends are kept", not err and now == "a\r\nb\nd\n", repr(now))
    err, out, _ = await call(session, "edit_file", {"path": "/w/m.txt", "dryRun": True,
                                                    "edits": [{"oldText": "d", "newText": "`" * 5000}]})
    check(f"{where}: a diff full of backticks gets a longer fence", not err and out.startswith("`" * 5001 + "diff"), out[:50])

    # Directories.
    err, out, _ = await call(session, "create_directory", {"path": "/w/d/e/f"})
    check(f"{where}: create_directory", not err, out)
    err, out, _ = await call(session, "create_directory", {"path": "/w/d/e/f"})
    check(f"{where}: create_directory again is fine", not err, out)
    await call(session, "write_file", {"path": "/w/d/big.txt", "content": "x" * 5000})
    await call(session, "write_file", {"path": "/w/d/small.log", "content": "y"})
    err, out, _ = await call(session, "list_directory", {"path": "/w/d"})
    check(f"{where}: list_directory", not err and out.split("\n") == ["[FILE] big.txt", "[DIR] e", "[FILE] small.log"], out)
    err, out, _ = await call(session, "list_directory_with_sizes", {"path": "/w/d", "sortBy": "size"})
    lines = out.split("\n")
    check(f"{where}: list_directory_with_sizes by size", not err and lines[0].startswith("[FILE] big.txt")
          and "4.88 KB" in lines[0] and "Total: 2 files, 1 directories" in out, out)
    err, out, res = await call(session, "directory_tree", {"path": "/w", "excludePatterns": ["*.log"]})
    tree = res.structured_content if res else None
    flat = json.dumps(tree)
    check(f"{where}: directory_tree is structured and excludes", not err and tree and "small.log" not in flat
          and '"name": "big.txt"' in flat and '"children"' in flat, out)
    check(f"{where}: directory_tree's text is the reference's JSON array", not err and isinstance(json.loads(out), list)
          and json.loads(out) == tree["tree"], out[:200])
    err, out, res = await call(session, "search_files", {"path": "/w", "pattern": "*.txt"})
    found = (res.structured_content or {}).get("matches") if res else None
    check(f"{where}: search_files", not err and found and set(found) == {"/w/a/b.txt", "/w/d/big.txt", "/w/m.txt"}
          and set(out.split("\n")) == set(found), out)
    err, out, _ = await call(session, "search_files", {"path": "/w", "pattern": "*.nothing"})
    check(f"{where}: search_files with no match says so", not err and out == "No matches found", out)
    err, out, res = await call(session, "get_file_info", {"path": "/w/d/big.txt"})
    info = res.structured_content if res else {}
    check(f"{where}: get_file_info", not err and info.get("size") == 5000 and info.get("type") == "file"
          and info.get("isFile") is True and "T" in info.get("modified", "") and "size: 5000" in out
          and "isDirectory: false" in out, out)
    err, out, _ = await call(session, "list_allowed_directories", {})
    check(f"{where}: list_allowed_directories", not err and out.startswith("Allowed directories:"), out)

    # Moves, copies, deletes.
    err, out, _ = await call(session, "move_file", {"source": "/w/d/small.log", "destination": "/w/moved.log"})
    check(f"{where}: move_file", not err, out)
    err, out, _ = await call(session, "move_file", {"source": "/w/moved.log", "destination": "/w/a/b.txt"})
    check(f"{where}: move_file refuses to replace", err and "already exists" in out, out)
    err, out, _ = await call(session, "copy", {"source": "/w/d", "destination": "/w/d2"})
    check(f"{where}: copying a folder needs recursive", err and "recursive" in out, out)
    err, out, _ = await call(session, "copy", {"source": "/w/d", "destination": "/w/d2", "recursive": True})
    _, listed2, _ = await call(session, "list_directory", {"path": "/w/d2/e"})
    check(f"{where}: copy recursive", not err and "[DIR] f" in listed2, out + listed2)
    err, out, _ = await call(session, "copy", {"source": "/w/d", "destination": "/w/d/inner", "recursive": True})
    check(f"{where}: copy into itself is refused", err and "into itself" in out, out)
    err, out, _ = await call(session, "delete", {"path": "/w/d2"})
    check(f"{where}: deleting a full folder needs recursive", err and "recursive" in out, out)
    err, out, _ = await call(session, "delete", {"path": "/w/d2", "recursive": True})
    _, gone, _ = await call(session, "get_file_info", {"path": "/w/d2"})
    check(f"{where}: delete recursive", not err and "/w/d2" in gone, out)

    # grep.
    await call(session, "write_file", {"path": "/w/g/one.rs", "content": "fn main() {}\n// TODO fix\n"})
    await call(session, "write_file", {"path": "/w/g/two.py", "content": "# todo later\nx = 1\n"})
    err, out, res = await call(session, "grep", {"pattern": "todo", "path": "/w/g", "caseInsensitive": True})
    matches = (res.structured_content or {}).get("matches", []) if res else []
    check(f"{where}: grep", not err and {(m["path"], m["line"]) for m in matches} == {("/w/g/one.rs", 2), ("/w/g/two.py", 1)}, out)
    err, out, res = await call(session, "grep", {"pattern": "todo", "path": "/w/g", "caseInsensitive": True, "include": "*.py"})
    matches = (res.structured_content or {}).get("matches", []) if res else []
    check(f"{where}: grep include", not err and [m["path"] for m in matches] == ["/w/g/two.py"], out)
    err, out, res = await call(session, "grep", {"pattern": ".", "path": "/w", "maxResults": 2})
    sc = res.structured_content if res else {}
    check(f"{where}: grep is bounded", not err and len(sc.get("matches", [])) == 2 and sc.get("truncated") is True, out)
    err, out, _ = await call(session, "grep", {"pattern": "(unclosed"})
    check(f"{where}: a bad regular expression is an error", err and "pattern" in out, out)

    # A large file comes back cut, with a note.
    await call(session, "write_file", {"path": "/w/large.txt", "content": "z" * (1_100_000)})
    err, out, _ = await call(session, "read_text_file", {"path": "/w/large.txt"})
    check(f"{where}: a large read is cut at 256 KiB with a note", not err and len(out) < 300_000 and "offset 262144" in out, out[-200:])
    err, out, _ = await call(session, "read_text_file", {"path": "/w/large.txt", "offset": 1_000_000})
    check(f"{where}: reading on from an offset", not err and out == "z" * 100_000, out[-200:])
    err, out, res = await call(session, "grep", {"pattern": "z", "path": "/w/large.txt"})
    check(f"{where}: a long matching line is cut", not err and len(res.structured_content["matches"][0]["text"]) < 400, out[:200])

    for marker in secret_leak_markers:
        check(f"{where}: no secret in results", marker not in json.dumps([t.model_dump(mode="json") for t in listed.tools]))


async def traversal_checks(session, where, outside_markers):
    """Every path argument of every tool, with each traversal payload."""
    leaks = []
    for tool, (keys, extra) in PATH_ARGS.items():
        for payload in TRAVERSALS:
            for key in keys:
                args = dict(extra)
                for k in keys:
                    args[k] = "/w/trav-target" if k != key else payload
                if os.environ.get("MCP_TRACE"):
                    print("trace", tool, args, flush=True)
                err, out, res = await call(session, tool, args)
                blob = out + (json.dumps(res.structured_content) if res and res.structured_content else "")
                for marker in outside_markers:
                    if marker in blob:
                        leaks.append(f"{tool}.{key}={payload!r}: {blob[:200]}")
    check(f"{where}: no traversal payload reaches outside ({len(PATH_ARGS)} tools)", not leaks, leaks[:5])


@asynccontextmanager
async def stdio_session(anyfs, args, roots=None):
    params = StdioServerParameters(command=anyfs, args=["mcp", *args], env={"RUST_LOG": "warn"})
    callback = None
    if roots is not None:
        async def callback(_context):
            return types.ListRootsResult(roots=[types.Root(uri=u) for u in roots])
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=sys.stderr) as (read, write):
            async with ClientSession(read, write, list_roots_callback=callback) as session:
                await session.initialize()
                yield session


async def run_stdio(anyfs, workspace, over, outside_file):
    outside_markers = [open(outside_file).read().strip(), "root:x:0:0"]
    async with stdio_session(anyfs, ["--over", over, workspace]) as s:
        await common_checks(s, "stdio")
        # The media file and the overlaid files.
        err, out, res = await call(s, "read_media_file", {"path": "/pixel.png"})
        block = res.content[0] if res else None
        check("stdio: read_media_file returns an image", not err and block is not None and block.type == "image"
              and block.mime_type == "image/png" and base64.b64decode(block.data).startswith(b"\x89PNG"), out)
        err, out, _ = await call(s, "read_text_file", {"path": "/pixel.png"})
        check("stdio: a binary file is not read as text", err and "not UTF-8" in out and "/pixel.png" in out, out)
        err, out, _ = await call(s, "read_text_file", {"path": "/base.txt"})
        check("stdio: the overlaid directory is seen", not err and out == "from the host\n", out)
        await traversal_checks(s, "stdio", outside_markers)
        names = {t.name for t in (await s.list_tools()).tools}
        check("stdio: no run_command without a sandboxing service", "run_command" not in names, names)
    # Writes went to the workspace, not the host directory.
    check("stdio: nothing written to the overlaid directory", not os.path.exists(os.path.join(over, "w")),
          os.listdir(over))
    check("stdio: no file made outside", not os.path.exists(os.path.join(os.path.dirname(over), "trav-target")))

    # The same workspace again: what was written is there.
    async with stdio_session(anyfs, ["--over", over, workspace]) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/w/a/b.txt"})
        check("stdio: changes are kept in the workspace file", not err and out.startswith("one\n"), out)

    # Read-only.
    async with stdio_session(anyfs, ["--read-only", "--over", over, workspace]) as s:
        err, out, _ = await call(s, "write_file", {"path": "/w/ro.txt", "content": "no"})
        check("stdio --read-only: writes are refused", err and "/w/ro.txt" in out, out)
        err, out, _ = await call(s, "read_text_file", {"path": "/w/a/b.txt"})
        check("stdio --read-only: reads work", not err, out)

    # A deny rule holds through every tool.
    async with stdio_session(anyfs, ["--deny", "**/.env", "--over", over, workspace]) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/.env"})
        check("stdio --deny: reading a denied file is refused", err and "/.env" in out, out)
        _, out, _ = await call(s, "list_directory", {"path": "/"})
        check("stdio --deny: listings leave it out", ".env" not in out, out)
        _, out, res = await call(s, "grep", {"pattern": "SECRET_TOKEN"})
        check("stdio --deny: grep does not find its content", "SECRET_TOKEN=" not in out, out)
        _, out, _ = await call(s, "search_files", {"path": "/", "pattern": ".env"})
        check("stdio --deny: search_files does not find it", ".env" not in out, out)
        err, out, _ = await call(s, "copy", {"source": "/.env", "destination": "/copied-env"})
        check("stdio --deny: it cannot be copied out", err, out)
        err, out, _ = await call(s, "move_file", {"source": "/", "destination": "/w/everything"})
        check("stdio --deny: the root cannot be moved", err, out)

    # Roots narrow: a root at OVER/sub is the workspace's /sub.
    sub_uri = "file://" + os.path.join(os.path.realpath(over), "sub")
    async with stdio_session(anyfs, ["--over", over, workspace], roots=[sub_uri]) as s:
        err, out, _ = await call(s, "list_allowed_directories", {})
        check("stdio roots: the allowed directory is the root's place", not err and out.split("\n")[1:] == ["/sub"], out)
        err, out, _ = await call(s, "read_text_file", {"path": "/sub/inner.txt"})
        check("stdio roots: inside a root is reachable", not err and out == "inner\n", out)
        err, out, _ = await call(s, "read_text_file", {"path": "/base.txt"})
        check("stdio roots: outside the roots is refused", err and "outside the roots" in out, out)
        err, out, _ = await call(s, "read_text_file", {"path": "/sub/../base.txt"})
        check("stdio roots: .. out of a root is refused", err, out)
        _, out, res = await call(s, "grep", {"pattern": "host", "path": "/"})
        check("stdio roots: grep from / is refused", "from the host" not in out, out)
    async with stdio_session(anyfs, ["--over", over, workspace], roots=["file:///somewhere/else"]) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/base.txt"})
        check("stdio roots: a root outside the workspace allows nothing", err and "outside the roots" in out, out)
    async with stdio_session(anyfs, ["--ignore-roots", "--over", over, workspace], roots=["file:///somewhere/else"]) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/base.txt"})
        check("stdio --ignore-roots: roots are not applied", not err, out)


def http_json(method, url, secret, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {secret}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


@asynccontextmanager
async def http_session(url, secret, roots=None):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    callback = None
    if roots is not None:
        async def callback(_context):
            return types.ListRootsResult(roots=[types.Root(uri=u) for u in roots])
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
        async with streamable_http_client(url + "/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write, list_roots_callback=callback) as session:
                await session.initialize()
                yield session


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


async def run_http(url, account, agent, other):
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    async with http_session(url, account) as s:
        await common_checks(s, "http", secret_leak_markers=[account, agent])
        names = {t.name for t in (await s.list_tools()).tools}
        check("http: the snapshot tools are listed", SNAPSHOT_TOOLS <= names, names)
        err, out, _ = await call(s, "write_file", {"path": "/private/plan.txt", "content": "the plan"})
        check("http: the account writes /private", not err, out)
        err, out, _ = await call(s, "create_snapshot", {"name": "before"})
        check("http: create_snapshot", not err and "taken" in out, out)
        err, out, res = await call(s, "list_snapshots", {})
        snaps = (res.structured_content or {}).get("snapshots", []) if res else []
        check("http: list_snapshots", not err and [x["name"] for x in snaps] == ["before"], out)
        await traversal_checks(s, "http", ["root:x:0:0"])
    check("http: ending the session is not reported as failed",
          not [w for w in warnings.records if "termination failed" in w.lower()], warnings.records)

    async with http_session(url, agent) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/private/plan.txt"})
        check("http agent: a denied path is refused", err and "/private/plan.txt" in out and "the plan" not in out, out)
        _, out, _ = await call(s, "list_directory", {"path": "/"})
        check("http agent: listings leave denied folders out", "private" not in out, out)
        _, out, _ = await call(s, "grep", {"pattern": "plan"})
        check("http agent: grep does not reach denied files", "the plan" not in out, out)
        err, out, _ = await call(s, "move_file", {"source": "/private", "destination": "/open"})
        check("http agent: a denied folder cannot be moved out", err, out)
        err, out, _ = await call(s, "copy", {"source": "/private", "destination": "/open", "recursive": True})
        check("http agent: a denied folder cannot be copied out", err, out)
        err, out, _ = await call(s, "move_file", {"source": "/w", "destination": "/private/w"})
        check("http agent: nothing can be moved into a denied folder", err, out)
        err, out, _ = await call(s, "create_snapshot", {})
        check("http agent: the snapshot tools need the account's secret", err and "account's own secret" in out, out)
        err, out, _ = await call(s, "write_file", {"path": "/agent.txt", "content": "by the agent"})
        check("http agent: an allowed write", not err, out)

    async with http_session(url, other) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/agent.txt"})
        check("http other account: another account's file is not there", err and "by the agent" not in out, out)
        _, out, _ = await call(s, "grep", {"pattern": "plan|agent"})
        check("http other account: grep sees only its own files", "the plan" not in out and "by the agent" not in out, out)

    for label, secret in [("no secret", None), ("a wrong secret", "anyfs_sk_not-a-real-secret")]:
        seen = ""
        try:
            async with http_session(url, secret) as s:
                _, seen, _ = await call(s, "read_text_file", {"path": "/agent.txt"})
                check(f"http: {label}: no session is opened", False, seen)
        except Exception as e:  # the session itself is refused
            seen = repr(e)
            check(f"http: {label}: no session is opened", True)
        check(f"http: {label}: no files", "by the agent" not in seen, seen)
    async with httpx2.AsyncClient() as client:
        refused = await client.post(url + "/mcp", headers={"Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        check("http: initialize without a secret is 401 with WWW-Authenticate",
              refused.status_code == 401 and refused.headers.get("www-authenticate") == "Bearer", refused.status_code)

    # Roots narrow over HTTP too, and the whole-workspace tools are refused.
    async with http_session(url, account, roots=["file:///w/g"]) as s:
        err, out, _ = await call(s, "read_text_file", {"path": "/w/g/one.rs"})
        check("http roots: inside a root is reachable", not err and "fn main" in out, out)
        err, out, _ = await call(s, "read_text_file", {"path": "/private/plan.txt"})
        check("http roots: outside the roots is refused", err and "outside the roots" in out and "the plan" not in out, out)
        err, out, _ = await call(s, "list_snapshots", {})
        check("http roots: snapshot tools are refused while roots narrow", err and "roots" in out, out)

    # The audit has the MCP calls, as the HTTP API's.
    audit = http_json("GET", url + "/v1/audit?limit=1000", account)
    records = audit.get("records", audit) if isinstance(audit, dict) else audit
    actions = [(r.get("action"), r.get("path"), r.get("outcome")) for r in records]
    check("http: calls are audited", ("mcp write_file", "/private/plan.txt", "ok") in actions, actions[:10])
    check("http: refusals are audited", any(a == "mcp read_text_file" and p == "/private/plan.txt" and o != "ok"
                                            for a, p, o in actions), actions[:10])

    # The session DELETE itself: 200 or 204.
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {account}"}) as client:
        init = await client.post(url + "/mcp", headers={"Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        sid = init.headers.get("mcp-session-id")
        deleted = await client.delete(url + "/mcp", headers={"mcp-session-id": sid or "", "mcp-protocol-version": "2025-06-18"})
        check("http: DELETE of a session answers 200 or 204", sid and deleted.status_code in (200, 204), deleted.status_code)


def main():
    mode = sys.argv[1]
    if mode == "stdio":
        asyncio.run(run_stdio(*sys.argv[2:6]))
    elif mode == "http":
        asyncio.run(run_http(*sys.argv[2:6]))
    else:
        sys.exit(f"unknown mode {mode}")
    print(f"{PASSED[0]} passed, {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
