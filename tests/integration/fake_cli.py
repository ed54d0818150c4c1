"""Stand-in for `gcloud` and `docker` in the infra script tests, for the services no emulator covers.

Appends every call (argv and stdin) to $FAKE_CLI_LOG as a JSON line and answers like a project that
has nothing yet ($FAKE_CLI_EXISTING unset: existence probes fail) or everything already
($FAKE_CLI_EXISTING=1). Value lookups (`describe --format=value(...)`) get plausible values.

    python fake_cli.py gcloud|docker ARGS...
"""

import json
import os
import sys

PROJECT_NUMBER = "123456789012"


def lookup(field: str, name: str, args: list[str]) -> str:
    project = os.environ["CLOUDSDK_CORE_PROJECT"]
    region = next((arg.split("=", 1)[1] for arg in args if arg.startswith("--region=")), "europe-west1")
    return {
        "status.url": f"https://{name}-{PROJECT_NUMBER}.{region}.run.app",
        "projectNumber": PROJECT_NUMBER,
        "connectionName": f"{project}:{region}:{name}",
        "name": f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{name}",
    }[field]


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps({"tool": tool, "args": args, "stdin": sys.stdin.read()}) + "\n")
    if tool != "gcloud" or "describe" not in args:
        return 0
    output = next((arg.split("=", 1)[1] for arg in args if arg.startswith("--format=")), "")
    if output == "none":  # an existence probe
        return 0 if os.environ.get("FAKE_CLI_EXISTING") == "1" else 1
    print(lookup(output.removeprefix("value(").removesuffix(")"), args[args.index("describe") + 1], args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
