"""The ``bitzero`` command: serve the companion, manage API keys, enforce retention, set up models.

Settings come from BITZERO_* environment variables (see ``bitzero.service.settings``); the few
flags here override them for one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bitzero.data.erasure import LEDGER
from bitzero.errors import BitZeroError


def _settings(args: argparse.Namespace):
    from bitzero.service.settings import Settings

    return Settings.from_env(
        database_url=getattr(args, "database_url", None), bundles=getattr(args, "bundles", None),
        host=getattr(args, "host", None), port=getattr(args, "port", None),
    )


def _sessions(args: argparse.Namespace):
    from bitzero.service.db import make_engine, migrate, session_factory

    engine = make_engine(_settings(args).database_url)
    migrate(engine)
    return session_factory(engine)


def cmd_serve(args: argparse.Namespace) -> int:
    from bitzero.service.app import create_app
    from bitzero.service.model import bundle_folders
    from bitzero.service.server import uvicorn_server
    from bitzero.serving.champion import CHAMPION_FILE, read_champion

    settings = _settings(args)
    bundle_folders(settings.bundles)  # a missing bundle is a one-line error now, not a failed start later
    if (settings.bundles / CHAMPION_FILE).is_file():  # which model answers, and why (a student left out, say)
        print(f"Champion: {read_champion(settings.bundles)['reason']}", flush=True)
    if not (settings.embedder / "model.onnx").is_file():
        print(f"error: no embedder at {settings.embedder}; create it once with `bitzero embedder export`",
              file=sys.stderr)
        return 2
    print(f"BitZero companion: http://{settings.host}:{settings.port}", flush=True)
    uvicorn_server(create_app(settings), settings).run()
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from bitzero.service.auth import create_key
    from bitzero.service.db import transaction

    with transaction(_sessions(args)) as session:
        token, info = create_key(session, args.user, args.label or "")
    print(json.dumps({"user_id": info.user_id, "prefix": info.prefix, "key": token}))
    print("Store the key now: it is not shown again.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from bitzero.service.auth import list_keys
    from bitzero.service.db import transaction

    with transaction(_sessions(args)) as session:
        for key in list_keys(session, args.user):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            print(f"{key.prefix}  {key.user_id}  {key.created_at:%Y-%m-%d %H:%M}  {state}  {key.label}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from bitzero.service.auth import revoke_key
    from bitzero.service.db import transaction

    with transaction(_sessions(args)) as session:
        count = revoke_key(session, args.prefix)
    if not count:
        print(f"error: no active key with prefix {args.prefix!r}", file=sys.stderr)
        return 1
    print(f"revoked {count} key(s) with prefix {args.prefix}")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from bitzero.service.db import transaction
    from bitzero.service.store import purge_expired

    with transaction(_sessions(args)) as session:
        print(json.dumps({"purged": purge_expired(session)}))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    _sessions(args)
    print("database schema is up to date")
    return 0


def cmd_embedder_export(args: argparse.Namespace) -> int:
    from bitzero.companion.embeddings import convert_minilm

    out = args.out or _settings(args).embedder
    print(f"embedder written to {convert_minilm(out)}")
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from bitzero.data.records import write_jsonl
    from bitzero.service.db import transaction
    from bitzero.service.store import training_records

    out = args.out or _settings(args).feedback_export
    with transaction(_sessions(args)) as session:
        count = write_jsonl(out, training_records(session))
    print(f"{count} feedback record(s) written to {out}")
    return 0


def cmd_erasure_purge(args: argparse.Namespace) -> int:
    from bitzero.privacy_purge import PurgeError, describe, purge

    try:
        report = purge(args.ledger, Path.cwd(), args.experiment, args.dry_run)
    except PurgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(describe(report, args.ledger, args.dry_run)))
    return 0


def cmd_emotion_train(args: argparse.Namespace) -> int:
    from bitzero.companion.emotion_training import train_from_goemotions

    report = train_from_goemotions(Path(args.data), Path(args.out), limit=args.limit, finetune_rows=args.finetune_rows)
    print(json.dumps({k: v for k, v in report.items() if k != "mapping"}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitzero", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="overrides BITZERO_DATABASE_URL")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the exported models (default http://127.0.0.1:8000)")
    serve.add_argument("--bundles", "--bundle", type=Path,
                       help="a folder of bundles with champion.json, or one bundle (BITZERO_BUNDLES)")
    serve.add_argument("--host", help="bind address (BITZERO_HOST); keys are required off loopback")
    serve.add_argument("--port", type=int, help="port (BITZERO_PORT)")
    serve.set_defaults(func=cmd_serve)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key (for a new user unless --user)")
    create.add_argument("--user", help="an existing or chosen user id")
    create.add_argument("--label", help="a note to recognise the key by")
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", help="list keys (prefixes only)")
    listing.add_argument("--user")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=cmd_keys_revoke)

    commands.add_parser("purge", help="delete data older than each user's retention period (for a CronJob)"
                        ).set_defaults(func=cmd_purge)
    commands.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=cmd_migrate)

    embedder = commands.add_parser("embedder", help="sentence embedder").add_subparsers(dest="embedder_command",
                                                                                         required=True)
    export = embedder.add_parser("export", help="convert all-MiniLM-L6-v2 to ONNX (needs torch; once at set-up)")
    export.add_argument("--out", type=Path, help="folder (BITZERO_EMBEDDER, default data/06_models/embedder)")
    export.set_defaults(func=cmd_embedder_export)

    feedback = commands.add_parser("feedback", help="feedback").add_subparsers(dest="feedback_command", required=True)
    fexport = feedback.add_parser("export", help="write consented feedback as training records (JSON Lines)")
    fexport.add_argument("--out", type=Path, help="default data/01_raw/feedback/service.jsonl (BITZERO_FEEDBACK_EXPORT)")
    fexport.set_defaults(func=cmd_feedback_export)

    erasure = commands.add_parser("erasure", help="erasure ledger").add_subparsers(dest="erasure_command",
                                                                                  required=True)
    epurge = erasure.add_parser("purge", help="after `dvc repro`: dvc gc the old outputs, delete the MLflow runs "
                                "built before the latest erasure (run at the project root)")
    epurge.add_argument("--ledger", type=Path, default=LEDGER)
    epurge.add_argument("--experiment", help="MLflow experiment (MLFLOW_EXPERIMENT_NAME, default bitzero)")
    epurge.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    epurge.set_defaults(func=cmd_erasure_purge)

    emotion = commands.add_parser("emotion", help="emotion classifier").add_subparsers(dest="emotion_command",
                                                                                       required=True)
    train = emotion.add_parser("train", help="train the classifier on GoEmotions: word softmax + fine-tuned MiniLM")
    train.add_argument("--data", default="data/01_raw/goemotions", help="folder with train.tsv and dev.tsv")
    train.add_argument("--out", default="data/06_models/emotion/emotion.json", help="where the service looks by default")
    train.add_argument("--limit", type=int, help="use only the first N training rows")
    train.add_argument("--finetune-rows", type=int, default=24000,
                       help="rows MiniLM is fine-tuned on (0: the word softmax only)")
    train.set_defaults(func=cmd_emotion_train)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors printed as one line without a traceback: BitZero's own (raised on purpose, they say
    what is wrong) and the database's and file system's (they describe the user's set-up)."""
    from sqlalchemy.exc import OperationalError

    return (BitZeroError, OperationalError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
