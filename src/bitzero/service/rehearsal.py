"""The conversation eval run through the service's own chat path on one bundle.

Each scenario is a fresh user talking to a ``Companion`` over a throwaway SQLite file: the same
memory extraction and recall, emotion reading, prompt building and decoding defaults
as a served chat, so the figures judge what a user would get, not the bare model. The scores are
``bitzero.companion.conversation_eval``'s. No FastAPI, no torch: the export stage calls
``evaluate_bundle`` on every bundle and the promotion gate reads its verdict.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bitzero.companion.conversation_eval import (
    EvalLimits,
    Exchange,
    Say,
    Scenario,
    eval_verdict,
    figures,
    load_scenarios,
    transcript,
)
from bitzero.companion.decoding import Decoding
from bitzero.companion.embeddings import Embedder, OnnxEmbedder
from bitzero.companion.emotion import EMOTION_FILE, EmotionClassifier, EmotionDetector
from bitzero.service.auth import ensure_user
from bitzero.service.chat import Companion
from bitzero.service.db import make_engine, migrate, session_factory, transaction
from bitzero.service.model import ModelSet, Served, load_models


def rehearse(companion: Companion, served: Served, scenarios: Sequence[Scenario], seed: int = 0) -> list[Exchange]:
    """Every scenario's turns as a client would send them (the conversation so far, no sampling
    settings), through prepare -> generate -> finish; one user per scenario."""
    exchanges = []
    for number, scenario in enumerate(scenarios):
        user = f"eval-{number}-{scenario.id}"
        with transaction(companion.sessions) as session:  # as `bitzero keys create` would: a user exists before it talks
            ensure_user(session, user)
        for conversation in scenario.conversations:
            messages: list[dict[str, str]] = []
            conversation_id = None
            for say in conversation:
                messages.append({"role": "user", "content": say.text})
                turn = companion.prepare(user, messages, served, None, conversation_id)
                conversation_id = turn.conversation_id
                exchanges.append(_exchange(scenario, say, list(companion.generate(turn, {"seed": seed}))))
                companion.finish(turn, exchanges[-1].reply)
                messages.append({"role": "assistant", "content": exchanges[-1].reply})
    return exchanges


def rehearse_raw(served: Served, scenarios: Sequence[Scenario], max_tokens: int = 256) -> list[Exchange]:
    """The scenarios on the bare model, as the field's stock runtime serves it: only the client's
    turns through the chat template (no persona, memory or emotion note), greedy, no repeat guard,
    no sentence limit: the reference the companion's on-topic figure is held against. Nothing
    carries over between conversations, so its recall is what a model without memory gets."""
    model = served.model
    exchanges = []
    for scenario in scenarios:
        for conversation in scenario.conversations:
            messages: list[dict[str, str]] = []
            for say in conversation:
                messages.append({"role": "user", "content": say.text})
                prompt = model.tokenizer.encode_chat(messages, add_generation_prompt=True)
                pieces = list(model.stream(prompt, max_tokens=min(max_tokens, model.context_length - len(prompt))))
                exchanges.append(_exchange(scenario, say, pieces))
                messages.append({"role": "assistant", "content": exchanges[-1].reply})
    return exchanges


def _exchange(scenario: Scenario, say: Say, pieces: Sequence[Any]) -> Exchange:
    """A turn's reply from its streamed pieces (text, and the finish reason the last one gave)."""
    finish = next((p.finish_reason for p in reversed(pieces) if p.finish_reason), None)
    return Exchange(scenario.id, say.text, "".join(p.text for p in pieces), finish, say.expect_any,
                    scenario.user_name, say.tone, scenario.user_likes)


def bundle_detector(bundle_dir: Path) -> EmotionDetector | None:
    """The emotion classifier the export put in the bundle, as the service would load it (None: none there)."""
    path = bundle_dir / EMOTION_FILE
    return EmotionDetector(EmotionClassifier.load(path)) if path.is_file() else None


def evaluate_bundle(
    bundle_dir: str | Path,
    embedder: Embedder | str | Path,
    *,
    limits: EvalLimits | Mapping[str, Any] | None = None,
    decoding: Mapping[str, Any] | None = None,
    scenarios: Sequence[Scenario] | str | Path | None = None,
    detector: EmotionDetector | None = None,
    variant: str | None = None,
    threads: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """The eval on one bundle: {"figures", "passed", "reason", "decoding", "transcript"}.

    ``decoding`` goes over the bundle's own defaults (bitzero.json "decoding"), which go over the
    service's; ``detector`` None reads the bundle's emotion classifier if it has one; ``embedder``
    is an Embedder or its folder (data/06_models/embedder)."""
    bundle_dir = Path(bundle_dir)
    models = load_models(bundle_dir, variant, threads)
    served = models.champion
    if decoding:
        served = Served(served.id, served.model, True, served.kind, served.variant, served.folder,
                        {**(served.decoding or {}), **decoding})
    if isinstance(embedder, (str, Path)):
        embedder = OnnxEmbedder(embedder, threads=threads)
    if scenarios is None or isinstance(scenarios, (str, Path)):
        scenarios = load_scenarios(*([scenarios] if scenarios is not None else []))
    with tempfile.TemporaryDirectory(prefix="bitzero-eval-") as scratch:
        engine = make_engine(f"sqlite:///{scratch}/eval.db")
        try:
            migrate(engine)
            companion = Companion(ModelSet([served]), embedder, detector or bundle_detector(bundle_dir),
                                  session_factory(engine), decoding=Decoding())  # the service's defaults
            exchanges = rehearse(companion, served, scenarios, seed)
        finally:
            engine.dispose()
    scored = figures(exchanges, embedder)
    passed, reason = eval_verdict(scored, limits)
    return {"figures": scored, "passed": passed, "reason": reason,
            "decoding": companion.decoding_for(served).as_dict(), "transcript": transcript(exchanges)}
