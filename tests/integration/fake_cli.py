"""Stand-in for `gcloud`, `bq` and `docker` in the infra script tests, for the services no emulator covers.

Appends every call (argv, stdin, the JSON and YAML files it is given) to $FAKE_CLI_LOG as a JSON line and
answers like a project that has nothing yet ($FAKE_CLI_EXISTING unset: existence probes fail, lookups
by name find nothing) or everything already ($FAKE_CLI_EXISTING=1). Value lookups (`describe
--format=value(...)`, `list`/`create --format=value(name)`) get plausible values.
`bq mkdef`, which only writes a table definition and calls no API, runs the real bq ($FAKE_CLI_REAL_BQ,
with a throwaway config and a dummy token), so the scripts get the very definition bq would write.

    python fake_cli.py gcloud|bq|docker ARGS...
"""

import json
import os
import subprocess
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


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def bq(args: list[str]) -> int:
    command = next(arg for arg in args if not arg.startswith("-"))
    if command == "mkdef":  # the real bq, in its own config dir, with a dummy token (mkdef sends no request)
        home = os.environ["HOME"]
        token = os.path.join(home, "real-bq-token")
        with open(token, "w") as file:
            file.write("mkdef-sends-no-request\n")
        env = os.environ | {"CLOUDSDK_CONFIG": os.path.join(home, "real-bq"), "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": token}
        return subprocess.run([os.environ["FAKE_CLI_REAL_BQ"], *args], env=env, check=False).returncode
    if command == "show":  # an existence probe
        return 0 if os.environ.get("FAKE_CLI_EXISTING") == "1" else 2
    return 0


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    call = {"tool": tool, "args": args, "stdin": sys.stdin.read()}
    # the files the tools read (table definitions, schemas, alert policies) may be temporary: keep their text
    paths = [arg.rpartition("=")[2] for arg in args]
    call["files"] = {path: read(path) for path in paths if path.endswith((".json", ".yaml")) and os.path.isfile(path)}
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps(call) + "\n")
    if tool == "bq":
        return bq(args)
    if tool == "gcloud" and "list" in args and "--format=value(name)" in args:  # a lookup by display name
        if os.environ.get("FAKE_CLI_EXISTING") == "1":
            project = os.environ["CLOUDSDK_CORE_PROJECT"]
            kind = "notificationChannels" if "channels" in args else "alertPolicies"
            print(f"projects/{project}/{kind}/123")
        return 0
    if tool == "gcloud" and "create" in args and "--format=value(name)" in args:  # the new resource's name
        print(f"projects/{os.environ['CLOUDSDK_CORE_PROJECT']}/notificationChannels/555")
        return 0
    if tool != "gcloud" or "describe" not in args:
        return 0
    output = next((arg.split("=", 1)[1] for arg in args if arg.startswith("--format=")), "")
    if output == "none":  # an existence probe
        return 0 if os.environ.get("FAKE_CLI_EXISTING") == "1" else 1
    print(lookup(output.removeprefix("value(").removesuffix(")"), args[args.index("describe") + 1], args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
