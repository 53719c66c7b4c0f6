"""`canvas label ...`: preference labeling in a real Label Studio server."""

from __future__ import annotations

import argparse

from canvas.cli._common import add_group
from canvas.core.config_parser import add_config_arguments, config_from_args
from canvas.labeling.config import (
    AnnotatorAddConfig,
    PullConfig,
    PushConfig,
    ServerConfig,
    ServerDirConfig,
    ServerStartConfig,
    StatusConfig,
)


def register(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "label", "run Label Studio, push candidate pairs, pull preferences")

    server = add_group(group, "server", "start / stop / status of the local Label Studio server (127.0.0.1)")
    start = server.add_parser(
        "start",
        help="start Label Studio on 127.0.0.1 (admin user and API token made at first start)",
        description="Start Label Studio from .venv-labelstudio on 127.0.0.1, SQLite in the data dir. The API "
        "token is $LABEL_STUDIO_API_KEY or generated into DATA_DIR/api-token (mode 0600); never printed.",
    )
    add_config_arguments(start, ServerStartConfig)
    start.set_defaults(func=_server, action="start")
    for name, parser_help in [("stop", "stop the server (by its PID)"), ("status", "is it running, where")]:
        parser = server.add_parser(name, help=parser_help, description=parser_help)
        add_config_arguments(parser, ServerDirConfig)
        parser.set_defaults(func=_server, action=name)

    push = group.add_parser(
        "push",
        help="push candidate pairs to a Label Studio project",
        description="Create or reuse a pairwise project (prompt, two images side by side, left/right/tie with "
        "keys 1/2/3), place the images under the server's local-files root (our own server, or --files-root) or "
        "else upload them through Label Studio's upload API (a server on another host), import the pairs it lacks.",
    )
    add_config_arguments(push, PushConfig)
    push.set_defaults(func=_push)

    pull = group.add_parser(
        "pull",
        help="pull annotations into a preference Parquet",
        description="Export the project's annotations; write OUTPUT/preferences.parquet (Pick-a-Pic v2 "
        "columns, one row per pair by majority vote), OUTPUT/annotators.json and OUTPUT/rejected.jsonl.",
    )
    add_config_arguments(pull, PullConfig)
    pull.set_defaults(func=_pull)

    annotators = add_group(group, "annotators", "add and list the people who label (Label Studio users)")
    add = annotators.add_parser(
        "add",
        help="create an annotator who can log in, with a generated password",
        description="Create a Label Studio user that can log in (signed up through the organization's "
        "invite link, as an invited person would). The generated password is printed once and stored "
        "nowhere, or, with --password-file, written only to that new file (mode 0600) and not printed.",
    )
    add_config_arguments(add, AnnotatorAddConfig)
    add.set_defaults(func=_annotators_add)
    listing = annotators.add_parser("list", help="list the server's users", description="List the users.")
    add_config_arguments(listing, ServerConfig)
    listing.set_defaults(func=_annotators_list)

    status = group.add_parser(
        "status",
        help="a project's progress per annotator",
        description="Per annotator: tasks done, tasks still open to them (fewer annotators than the "
        "overlap), agreement with the majority and gold accuracy so far; Krippendorff's alpha so far.",
    )
    add_config_arguments(status, StatusConfig)
    status.set_defaults(func=_status)


def _server(args: argparse.Namespace) -> int:
    from canvas.labeling.server import LabelStudioServer

    config = config_from_args(ServerStartConfig if args.action == "start" else ServerDirConfig, args)
    server = LabelStudioServer(config.data_dir, port=getattr(config, "port", None))
    if args.action == "start":
        print(server.start().describe())
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        status = server.status()
        print(status.describe())
        return 0 if status.running else 3
    return 0


def _push(args: argparse.Namespace) -> int:
    from canvas.labeling.push import push_candidates

    c = config_from_args(PushConfig, args)
    scorer = None
    if c.reward:
        from canvas.rlhf.rewards import EncodedImageScorer

        scorer = EncodedImageScorer(c.reward)
    result = push_candidates(
        c.candidates,
        c.project,
        url=c.url,
        overlap=c.overlap,
        gold=c.gold,
        scorer=scorer,
        files_root=c.files_root,
        data_dir=c.data_dir,
        batch_size=c.batch_size,
        rejected_path=c.rejected,
    )
    print(result.describe())
    return 0


def _pull(args: argparse.Namespace) -> int:
    from canvas.labeling.pull import pull_preferences

    c = config_from_args(PullConfig, args)
    result = pull_preferences(c.project, c.output, url=c.url, data_dir=c.data_dir, files_root=c.files_root)
    print(result.describe())
    return 0


def _annotators_add(args: argparse.Namespace) -> int:
    from canvas.labeling.annotators import add_annotator
    from canvas.labeling.client import connect

    c = config_from_args(AnnotatorAddConfig, args)
    client, _ = connect(c.url, None, c.data_dir)
    print(add_annotator(client, c.email, c.password_file).describe())
    return 0


def _annotators_list(args: argparse.Namespace) -> int:
    from canvas.labeling.annotators import describe_users
    from canvas.labeling.client import connect

    c = config_from_args(ServerConfig, args)
    client, _ = connect(c.url, None, c.data_dir)
    print(describe_users(client.users()))
    return 0


def _status(args: argparse.Namespace) -> int:
    from canvas.labeling.annotators import project_status
    from canvas.labeling.client import connect

    c = config_from_args(StatusConfig, args)
    client, _ = connect(c.url, None, c.data_dir)
    print(project_status(client, c.project).describe())
    return 0
