"""Content updates racing on one card: every update gets its own version number, none is lost."""

from __future__ import annotations

import threading

from modelcrate.cards.service import Cards
from tests.cards.conftest import card_content

WRITERS = 4
UPDATES_EACH = 5


def test_concurrent_content_updates_get_consecutive_versions(cards: Cards):
    cards.create_model_card({"ModelCardName": "busy-card", "Content": card_content()})
    start = threading.Barrier(WRITERS)
    failures = []

    def write(writer: int) -> None:
        start.wait()
        try:
            for update in range(UPDATES_EACH):
                overview = {"model_description": f"writer {writer} update {update}", "model_id": "abalone-sex"}
                cards.update_model_card(
                    {"ModelCardName": "busy-card", "Content": card_content(model_overview=overview)}
                )
        except Exception as exc:  # collected: an exception in a thread would otherwise vanish
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures

    total = 1 + WRITERS * UPDATES_EACH
    versions = cards.list_model_card_versions("busy-card")["ModelCardVersionSummaryList"]
    assert [v["ModelCardVersion"] for v in versions] == list(range(1, total + 1))
    written = {
        cards.describe_model_card("busy-card", number)["Content"]["model_overview"]["model_description"]
        for number in range(2, total + 1)
    }
    assert written == {f"writer {w} update {u}" for w in range(WRITERS) for u in range(UPDATES_EACH)}
    assert cards.describe_model_card("busy-card")["ModelCardVersion"] == total
