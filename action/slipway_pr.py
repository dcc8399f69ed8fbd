#!/usr/bin/env python3
"""The promotion check of a registry pull request (the `slipway` GitHub Action's step).

Fetches the pull request's reviews, runs `slipway plan`, creates or updates one sticky comment
(found by its marker), writes the plan to the job summary, and ends with the check's outcome:
exit 0 when every change is allowed (plan exit 0 or 2), 1 when a change is denied or awaits
approval (plan exit 3, with the denial summary as an error annotation) or when plan failed.

Reads the Actions environment: GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH,
GITHUB_STEP_SUMMARY, and the token in GITHUB_TOKEN; inputs come as INPUT_PATH, INPUT_RESULTS,
INPUT_FORMAT and INPUT_SLIPWAY (the binary). Standard library only.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request

MARKER = "<!-- slipway:plan -->"


def api(method, path, body=None):
    """One GitHub REST call; returns (decoded JSON, Link header)."""
    url = path if path.startswith("http") else os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/vnd.github+json")
    req.add_header("Authorization", "Bearer " + os.environ["GITHUB_TOKEN"])
    req.add_header("X-GitHub-Api-Version", "2022-11-28")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode() or "null"
        return json.loads(text), resp.headers.get("Link", "")


def every(path):
    """Every item of a paginated list."""
    items, url = [], path + ("&" if "?" in path else "?") + "per_page=100"
    while url:
        page, link = api("GET", url)
        items.extend(page)
        nxt = re.search(r'<([^>]+)>;\s*rel="next"', link)
        url = nxt.group(1) if nxt else None
    return items


def main():
    with open(os.environ["GITHUB_EVENT_PATH"]) as f:
        event = json.load(f)
    pr = event["pull_request"]
    repo = os.environ["GITHUB_REPOSITORY"]
    number = pr["number"]
    fmt = os.environ.get("INPUT_FORMAT") or "markdown"
    if fmt not in ("markdown", "text"):
        print(f"::error::input format must be markdown or text, not {fmt!r}")
        return 1

    reviews = every(f"/repos/{repo}/pulls/{number}/reviews")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(reviews, f)
        reviews_file = f.name

    args = [os.environ.get("INPUT_SLIPWAY") or "slipway", "plan",
            "--base", "origin/" + pr["base"]["ref"], "--head", pr["head"]["sha"],
            "--path", os.environ.get("INPUT_PATH") or ".",
            "--reviews", reviews_file, "--author", pr["user"]["login"]]
    if os.environ.get("INPUT_RESULTS"):
        args += ["--results", os.environ["INPUT_RESULTS"]]
    plan = subprocess.run(args + ["--format", "markdown"], capture_output=True, text=True)
    sys.stderr.write(plan.stderr)
    if plan.returncode not in (0, 2, 3) or not plan.stdout.startswith(MARKER):
        body = f"{MARKER}\n### slipway plan failed (exit {plan.returncode})\n\n```\n{plan.stderr.strip()}\n```\n"
    elif fmt == "text":
        text = subprocess.run(args + ["--format", "text"], capture_output=True, text=True).stdout
        body = f"{MARKER}\n```\n{text.rstrip()}\n```\n"
    else:
        body = plan.stdout

    mine = [c for c in every(f"/repos/{repo}/issues/{number}/comments")
            if (c.get("body") or "").startswith(MARKER)]
    if mine:
        api("PATCH", f"/repos/{repo}/issues/comments/{mine[0]['id']}", {"body": body})
        print(f"updated the plan comment {mine[0]['id']}")
    else:
        created, _ = api("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
        print(f"created the plan comment {created.get('id')}")

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(body + "\n")

    if plan.returncode in (0, 2):
        print("All changes are allowed.")
        return 0
    if plan.returncode == 3:
        denied = [l.strip() for l in plan.stdout.splitlines() if l.startswith("**Decision:**") and "allowed" != l.split("**Decision:**")[-1].strip()]
        print("::error::A change is denied or awaiting approval: " + "; ".join(d.replace("**Decision:** ", "") for d in denied))
        return 1
    print(f"::error::slipway plan failed (exit {plan.returncode}); see the plan comment and the log.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
