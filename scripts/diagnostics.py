#!/usr/bin/env python3
"""Prints the compiler's diagnostics from cargo's JSON messages
(`--message-format=json-diagnostic-rendered-ansi`), and exits 1 when any of
them is a warning or an error: the `-D warnings` of scripts/test.sh's build,
which is also its lint pass.

    python3 scripts/diagnostics.py MESSAGES_FILE
"""

import json
import sys


def main(path: str) -> int:
    warnings = errors = 0
    with open(path, encoding="utf-8", errors="replace") as messages:
        for line in messages:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                # Not cargo's: a build script's or a tool's own output.
                sys.stderr.write(line)
                continue
            if message.get("reason") != "compiler-message":
                continue
            diagnostic = message["message"]
            level = diagnostic.get("level", "")
            rendered = diagnostic.get("rendered") or diagnostic.get("message", "")
            sys.stderr.write(rendered)
            if level == "warning":
                warnings += 1
            elif level.startswith("error"):
                errors += 1
    if warnings or errors:
        print(
            f"[test] the build has {warnings} warning(s) and {errors} error(s): "
            "every warning fails it, as `cargo clippy -- -D warnings` does",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
