"""Alarm hints fit the cause: a run that blew up is never told to raise its learning rate."""

from __future__ import annotations

from signconsole.config import HealthConfig
from signconsole.engine.health import HealthMonitor
from signconsole.events import AlarmRaised


def monitor() -> tuple[HealthMonitor, list[AlarmRaised]]:
    raised: list[AlarmRaised] = []
    return HealthMonitor(HealthConfig(), warmup_steps=10, publish=raised.append), raised


def test_vanishing_gradients_after_an_explosion_point_at_the_explosion() -> None:
    health, raised = monitor()
    health.check_gradients(20, 459.0, {"stem": 0.2, "lstm": 0.97})
    health.check_gradients(400, 1e-5, {"stem": 1e-6, "lstm": 1e-6})
    explode, vanish = raised
    assert explode.kind == "grad_explode" and vanish.kind == "grad_vanish"
    assert "raise" not in vanish.hint.lower()
    assert "gradient explosion at step 20" in vanish.hint and "lower" in vanish.hint.lower()


def test_explosion_message_does_not_compare_clipped_stages_with_the_raw_total() -> None:
    health, raised = monitor()
    health.check_gradients(20, 459.0, {"stem": 0.2, "lstm": 0.973})
    message = raised[0].message
    assert "459" in message and "before clipping" in message
    assert "0.973" not in message and "lstm carries 96%" in message


def test_a_huge_learning_rate_is_named_instead_of_raised() -> None:
    health, raised = monitor()
    health.observe(5, 3.0, 50.0)
    health.check_logits(30, 1e-4)  # the output died: a consequence of the step size
    assert "learning rate is 50" in raised[0].hint and "raise" not in raised[0].hint.lower()


def test_an_exploding_loss_counts_as_a_blowup() -> None:
    health, raised = monitor()
    health.observe(5, 3.0, 1e-3)
    health.observe(15, 80.0, 1e-3)
    health.check_gradients(400, 1e-5, {})
    assert "the loss exploded at step 15" in raised[0].hint


def test_a_healthy_run_keeps_the_plain_hint() -> None:
    health, raised = monitor()
    health.observe(5, 3.0, 1e-3)
    health.check_gradients(400, 1e-5, {})
    assert "seed 000" in raised[0].hint
    health.check_gradients(800, 1.0, {"stem": 1e-7, "lstm": 0.9})  # one starved stage
    assert raised[1].stage == "stem" and "raise" not in raised[1].hint.lower()
