"""`curator users`, `curator assign` and `curator flags`: the annotation team from the command line.

The command line acts with the rights of whoever can open the workspace folder, so it needs no
login; the app is where people log in.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store
from curation.errors import CuratorError
from curation.store import InstanceFilter

users_app = typer.Typer(
    help="Accounts of curators and annotators.", no_args_is_help=True, add_completion=False
)
flags_app = typer.Typer(
    help="Flags raised on instances, and their resolution.",
    no_args_is_help=True,
    add_completion=False,
)

RoleArg = Annotated[str, typer.Argument(help="curator, annotator or reviewer.")]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of prompting.",
    ),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CuratorError("no password on standard input")
        return password
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (also the annotator name on labels).")],
    role: Annotated[str, typer.Option(help="curator, annotator or reviewer.")] = "annotator",
    password_stdin: PasswordStdinOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create an account (prompts for the password twice unless --password-stdin)."""
    from curation.users import ROLES, add_user

    if role not in ROLES:
        raise CuratorError(f"role {role!r} is not one of {', '.join(ROLES)}")
    password = _password(password_stdin)
    with _store(workspace) as store:
        user = add_user(store, name, role, password)
    typer.echo(f"added {user.role} {user.name}")


@users_app.command("list")
def users_list(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """List the accounts and their roles."""
    from curation.users import list_users

    with _store(workspace, create=False) as store:
        users = list_users(store)
    if as_json:
        typer.echo(json.dumps([asdict(u) for u in users], indent=2))
        return
    for u in users:
        typer.echo(f"{u.name}\t{u.role}")


@users_app.command("set-role")
def users_set_role(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: RoleArg,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make a user a curator or an annotator."""
    from curation.users import set_role

    with _store(workspace, create=False) as store:
        user = set_role(store, name, role)
    typer.echo(f"{user.name} is now {user.role}")


@users_app.command("reset-password")
def users_reset_password(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: PasswordStdinOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Set a new password for a user and lift any login lockout."""
    from curation.users import get_user, reset_password

    with _store(workspace, create=False) as store:
        get_user(store, name)  # fail before asking for a password
        reset_password(store, name, _password(password_stdin))
    typer.echo(f"password of {name} reset")


def assign_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose instances are assigned.")],
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            help="Annotator to assign to; repeat it (--to ana --to bo) or separate names by commas.",
        ),
    ],
    overlap: Annotated[
        int, typer.Option(help="How many different annotators label each instance.")
    ] = 1,
    where: Annotated[
        str | None,
        typer.Option(help="Only instances matching this filter. " + InstanceFilter.TEXT_HELP),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Assign at most this many instances (in id order).")
    ] = None,
    plan: Annotated[
        int | None,
        typer.Option(
            help="Assign the instances this route plan sends to humans (not with --where)."
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a dataset's instances into annotators' queues, balanced by their pending work.

    Instances already assigned to one of the named annotators count toward the overlap, so the same command run twice assigns nothing new.
    """
    from curation.queues import assign, assign_plan

    names = [n.strip() for value in to for n in value.split(",") if n.strip()]
    if plan is not None and (where or limit):
        raise CuratorError("--plan takes the plan's instances: drop --where and --limit")
    flt = InstanceFilter.parse(where, dataset=dataset) if where else None
    with _store(workspace, create=False) as store:
        if plan is not None:
            counts = assign_plan(store, dataset, plan, names, overlap=overlap)
        else:
            counts = assign(store, dataset, names, overlap=overlap, flt=flt, limit=limit)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    typer.echo(
        f"assigned {counts['instances']} instances of {dataset!r}: {counts['created']} new "
        f"assignments, {counts['skipped_existing']} already there"
    )
    for name, n in counts["per_user"].items():
        typer.echo(f"  {name:<24} +{n}")


@flags_app.command("list")
def flags_list(
    dataset: Annotated[str | None, typer.Option(help="Only flags on this dataset.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the open flags, oldest first."""
    from curation.flags import open_flags

    with _store(workspace, create=False) as store:
        rows = open_flags(store, dataset)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no open flags")
    for r in rows:
        prompt = " ".join(r["prompt"].split())[:60]
        typer.echo(
            f"#{r['id']}\t{r['dataset']}\tinstance {r['instance_id']}\t{r['category']}\t"
            f"{r['flagged_by'] or '-'}\t{prompt}"
        )


@flags_app.command("resolve")
def flags_resolve(
    flag_id: Annotated[int, typer.Argument(help="Flag id (see `curator flags list`).")],
    resolution: Annotated[str, typer.Option(help="What was done about it.")],
    exclude: Annotated[
        bool, typer.Option("--exclude", help="Leave the instance out of exports.")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Resolve a flag, optionally excluding its instance from exports."""
    from curation.flags import resolve_flag

    with _store(workspace, create=False) as store:
        resolve_flag(store, flag_id, resolution, exclude=exclude)
    typer.echo(f"flag #{flag_id} resolved" + (" (instance excluded)" if exclude else ""))


def register(cli: typer.Typer) -> None:
    cli.add_typer(users_app, name="users")
    cli.add_typer(flags_app, name="flags")
    cli.command("assign")(assign_cmd)
