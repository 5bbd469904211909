"""``pulse copyright register`` / ``withdraw``: rights holders' side of Copyright Guard in the
stream (publishes ``CopyrightReference`` events; every copyright_guard worker applies them)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import console, friendly, settings
from streams.cli.copyright import copyright_app

POLICIES = ("BLOCK", "RESTRICT", "MONITOR")


def _policy(value: str) -> str:
    v = value.upper()
    if v not in POLICIES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(POLICIES)}")
    return v


@copyright_app.command("register")
@friendly
def register(file: Path = typer.Argument(..., help="The work: an image, audio or video file."),
             reference_id: Optional[str] = typer.Option(
                 None, "--reference-id", help="Id of the work (default: the file's stem)."),
             title: Optional[str] = typer.Option(None, help="Title (default: the reference id)."),
             rights_holder: str = typer.Option("", "--rights-holder",
                                               help="user_id of the rights holder; their own "
                                                    "uploads of the work are allowed."),
             policy: str = typer.Option("BLOCK", callback=_policy,
                                        help="On a match: BLOCK, RESTRICT or MONITOR (allow and report)."),
             as_json: bool = typer.Option(False, "--json", help="Print the event's summary as JSON.")) -> None:
    """Register a work: fingerprint it here (PDQ, pHash, ORB keypoints, Chromaprint, video frames)
    and publish it on copyright-references, so every copyright_guard worker matches uploads
    against it from then on."""
    from models.copyright import reference_fingerprints

    from streams.producer import Publisher

    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    rid = reference_id or file.stem
    with console.status(f"fingerprinting {file.name}"):
        modality, fps = reference_fingerprints(file)
    event = {"reference_id": rid, "rights_holder_id": rights_holder, "action": "REGISTER",
             "title": title or rid, "media_kind": modality, "media_uri": file.resolve().as_uri(),
             "fingerprints": fps, "policy": policy, "metadata": {"file": file.name}}
    with Publisher(settings(), producer_name="pulse-copyright") as pub:
        pub.publish("copyright-references", event)
    kinds: dict[str, int] = {}
    for f in fps:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    out = {"reference_id": rid, "modality": modality, "policy": policy, "fingerprints": kinds}
    if as_json:
        print(json.dumps(out))
    else:
        console.print(f"registered [bold]{rid}[/] ({modality.lower()}, policy {policy}): "
                      + ", ".join(f"{n} {k}" for k, n in kinds.items()))


@copyright_app.command("withdraw")
@friendly
def withdraw(reference_id: str = typer.Argument(..., help="Id of a registered work.")) -> None:
    """Withdraw a registered work: uploads are no longer matched against it."""
    from streams.producer import Publisher

    event = {"reference_id": reference_id, "rights_holder_id": "", "action": "WITHDRAW",
             "title": reference_id, "media_kind": "IMAGE", "media_uri": None, "fingerprints": [],
             "policy": "MONITOR", "metadata": {}}
    with Publisher(settings(), producer_name="pulse-copyright") as pub:
        pub.publish("copyright-references", event)
    console.print(f"withdrew {reference_id}")
