"""``foldertrack simctl``: deliver, move and copy mail in a running ``foldertrack simulator`` (through its
loopback ``/control/mail`` endpoint), so rules can be tried by hand without writing a client."""

from __future__ import annotations

import json
from typing import Any

import click

from foldertrack.cli.common import json_option

DEFAULT_URL = "http://127.0.0.1:8765"

url_option = click.option(
    "--url",
    envvar="FOLDERTRACK_SIMULATOR_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="The simulator's base URL (as `foldertrack simulator` prints it; $FOLDERTRACK_SIMULATOR_URL).",
)


def request(url: str, spec: dict[str, Any]) -> dict[str, Any]:
    """POST one action; a refused connection or an error answer becomes a one-line ClickException."""
    import requests

    endpoint = url.rstrip("/").removesuffix("/EWS/Exchange.asmx") + "/control/mail"
    try:
        response = requests.post(endpoint, json=spec, timeout=30)
    except requests.RequestException as exc:
        raise click.ClickException(
            f"cannot reach the simulator at {endpoint}: {type(exc).__name__}"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    if response.status_code != 200:
        raise click.ClickException(f"simulator: {data.get('error', response.status_code)}")
    return data


def _echo(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else text)


@click.group()
def simctl() -> None:
    """Act as a mailbox's user on a running `foldertrack simulator`: deliver, move, copy, list."""


@simctl.command()
@click.argument("mailbox")
@click.option("--subject", required=True, help="The mail's subject.")
@click.option("--folder", default="Inbox", show_default=True, help="Deliver here (an inbox rule's target).")
@click.option("--from", "sender", default="sender@example.net", show_default=True, metavar="ADDRESS")
@click.option("--to", "recipients", multiple=True, metavar="ADDRESS", help="Recipients (default: MAILBOX).")
@click.option("--body", default="Hello.", show_default=True)
@click.option("--message-id", default=None, help="Internet Message-ID (default: a new one).")
@url_option
@json_option
def deliver(
    mailbox: str,
    subject: str,
    folder: str,
    sender: str,
    recipients: tuple[str, ...],
    body: str,
    message_id: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Deliver a mail to MAILBOX's FOLDER, like SMTP (or an inbox rule); prints the new item id."""
    spec = {
        "action": "deliver",
        "mailbox": mailbox,
        "folder": folder,
        "subject": subject,
        "from": sender,
        "to": list(recipients) or [mailbox],
        "body": body,
        "message_id": message_id,
    }
    data = request(url, spec)
    _echo(data, as_json, data["item_id"])


def _move_command(action: str) -> click.Command:
    @click.command(
        action,
        help=f"{action.capitalize()} a mail (by --item-id, or the newest with --subject "
        "in --folder) to TO_FOLDER, as a user would; prints the new item id.",
    )
    @click.argument("mailbox")
    @click.argument("to_folder")
    @click.option("--item-id", default=None, help="The item to act on.")
    @click.option("--subject", default=None, help="Or: the newest item with this subject in --folder.")
    @click.option("--folder", default="Inbox", show_default=True, help="Where --subject is looked for.")
    @url_option
    @json_option
    def command(
        mailbox: str,
        to_folder: str,
        item_id: str | None,
        subject: str | None,
        folder: str,
        url: str,
        as_json: bool,
    ) -> None:
        if (item_id is None) == (subject is None):
            raise click.UsageError("give either --item-id or --subject")
        spec = {
            "action": action,
            "mailbox": mailbox,
            "to_folder": to_folder,
            "item_id": item_id,
            "subject": subject,
            "folder": folder,
        }
        data = request(url, spec)
        _echo(data, as_json, data["item_id"])

    return command


simctl.add_command(_move_command("move"))
simctl.add_command(_move_command("copy"))


@simctl.command()
@click.argument("mailbox")
@click.option("--folder", default="Inbox", show_default=True)
@url_option
@json_option
def items(mailbox: str, folder: str, url: str, as_json: bool) -> None:
    """List the items in MAILBOX's FOLDER: id, Message-ID and subject."""
    data = request(url, {"action": "items", "mailbox": mailbox, "folder": folder})
    text = "\n".join(f"{i['id']}  {i['message_id'] or '-'}  {i['subject']}" for i in data["items"])
    _echo(data, as_json, text or f"no items in {folder}")


@simctl.command()
@click.argument("mailbox")
@url_option
@json_option
def folders(mailbox: str, url: str, as_json: bool) -> None:
    """List MAILBOX's folder paths."""
    data = request(url, {"action": "folders", "mailbox": mailbox})
    _echo(data, as_json, "\n".join(data["folders"]))
