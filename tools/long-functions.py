#!/usr/bin/env python3
"""Lists library functions longer than a limit (80 lines by default).

    tools/long-functions.py                       # every function over 80 lines, longest first
    tools/long-functions.py --check               # also exit 1 if one is not in the allow-list
    tools/long-functions.py --limit 60 agent core # another limit, other directories

Functions are found by universal-ctags (Debian package `universal-ctags`), which gives each
function's first and last line. A function's length is last - first + 1: the lines from its
signature to its closing brace, comments and blank lines included. Lambdas are counted in the
function that holds them, not on their own.

With --check, a function over the limit fails the check unless tools/long-functions.allow
names it ("<path> <qualified name>" per line, '#' starts a comment). An allow-list entry that
no longer matches a long function is reported too, so the list shrinks as functions are split.
"""
import argparse
import json
import os
import subprocess
import sys

MODULES = ["core", "datamodel", "transports", "oci-runner", "smm", "agent"]
SOURCE_SUFFIXES = (".cpp", ".cc", ".h", ".hpp")


def source_files(root, modules):
    files = []
    for module in modules:
        top = os.path.join(root, module)
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(SOURCE_SUFFIXES):
                    files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return files


def functions(root, files):
    """Yields (path, qualified name, first line, last line) for every function definition."""
    if not files:
        return
    cmd = ["ctags", "--languages=C++", "--language-force=C++", "--kinds-C++=f",
           "--fields=+neS", "--output-format=json", "-o", "-"] + files
    try:
        out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("long-functions: ctags not found (apt-get install universal-ctags)")
    except subprocess.CalledProcessError as e:
        sys.exit("long-functions: ctags failed: " + e.stderr.strip())
    for line in out.splitlines():
        try:
            tag = json.loads(line)
        except ValueError:
            continue
        if tag.get("_type") != "tag" or tag.get("kind") != "function" or "end" not in tag:
            continue
        name = tag["name"]
        if name.startswith("__anon"):
            continue  # a lambda: its lines belong to the function around it
        scope = tag.get("scope", "")
        # Drop namespaces from the qualified name: "berth::agent::Foo::bar" -> "Foo::bar".
        # Classes stay, since their names start with an upper-case letter by house style.
        parts = [p for p in scope.split("::") if p and not p[0].islower() and "__anon" not in p]
        qualified = "::".join(parts + [name])
        yield tag["path"], qualified, int(tag["line"]), int(tag["end"])


def read_allow_list(path):
    allowed = set()
    if not path or not os.path.exists(path):
        return allowed
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line:
                fields = line.split()
                if len(fields) != 2:
                    sys.exit(f"long-functions: {path}: expected '<path> <function>': {raw.strip()}")
                allowed.add((fields[0], fields[1]))
    return allowed


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", default=MODULES, help="directories to scan")
    parser.add_argument("--root", default=os.path.dirname(here), help="source tree")
    parser.add_argument("--limit", type=int, default=80, help="longest allowed function (lines)")
    parser.add_argument("--allow", default=os.path.join(here, "long-functions.allow"),
                        help="allow-list file")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a function over the limit is not allow-listed")
    args = parser.parse_args()

    files = source_files(args.root, args.modules)
    long_ones = sorted(((last - first + 1, path, name, first)
                        for path, name, first, last in functions(args.root, files)
                        if last - first + 1 > args.limit), key=lambda t: (-t[0], t[1], t[3]))
    allowed = read_allow_list(args.allow) if args.check else set()

    failures = []
    for length, path, name, first in long_ones:
        mark = "allowed" if (path, name) in allowed else ""
        print(f"{length:5d}  {path}:{first}  {name}  {mark}".rstrip())
        if args.check and (path, name) not in allowed:
            failures.append((path, name, length))
    print(f"{len(long_ones)} function(s) over {args.limit} lines in {len(files)} files")

    if not args.check:
        return 0
    found = {(path, name) for _, path, name, _ in long_ones}
    stale = sorted(allowed - found)
    for path, name in stale:
        print(f"allow-list entry no longer needed (remove it): {path} {name}")
    for path, name, length in failures:
        print(f"FAIL: {path} {name} is {length} lines (limit {args.limit}): split it along its phases")
    return 1 if failures or stale else 0


if __name__ == "__main__":
    sys.exit(main())
