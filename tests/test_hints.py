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
    explode, vanish = raised
    assert "the loss exploded at step 15" in vanish.hint


def test_a_loss_that_climbs_above_its_start_is_its_own_alarm_first() -> None:
    # learning rate 50: the loss went from 10.6 to 4e4 and the first alarms were the vanishing
    # gradients it caused. The cause is now named first, once.
    health, raised = monitor()
    health.observe(1, 10.6, 50.0)
    health.observe(10, 350.0, 50.0)
    health.observe(20, 4e4, 50.0)
    health.check_gradients(30, 44.0, {"lstm": 0.0, "classifier": 1.0})
    assert [a.kind for a in raised] == ["loss_explode", "grad_vanish"]
    assert raised[0].severity == "error" and "350" in raised[0].message
    assert "10.6" in raised[0].message and "learning rate 50" in raised[0].message
    assert "lower the learning rate" in raised[0].hint.lower()
    assert "the loss exploded at step 10" in raised[1].hint


def test_a_late_noisy_batch_is_not_a_loss_explosion() -> None:
    health, raised = monitor()
    for step, loss in ((1, 10.6), (100, 1.0), (200, 0.05), (210, 0.7), (220, 0.06)):
        health.observe(step, loss, 1e-3)
    assert raised == []  # 14x its best, but far below where it started


def test_a_healthy_run_keeps_the_plain_hint() -> None:
    health, raised = monitor()
    health.observe(5, 3.0, 1e-3)
    health.check_gradients(400, 1e-5, {})
    assert "seed 000" in raised[0].hint
    health.check_gradients(800, 1.0, {"stem": 1e-7, "lstm": 0.9})  # one starved stage
    assert raised[1].stage == "stem" and "raise" not in raised[1].hint.lower()


def test_a_large_first_gradient_under_clipping_is_not_an_explosion() -> None:
    raised: list[AlarmRaised] = []
    health = HealthMonitor(HealthConfig(), warmup_steps=10, publish=raised.append, clip_norm=1.0)
    health.check_gradients(1, 107.0, {"fusion": 0.9, "lstm": 0.3})  # before any update
    assert raised == []
    # nor does a stage, clipped 107-fold, read as starved beside the unclipped total
    no_warmup = HealthMonitor(HealthConfig(), warmup_steps=0, publish=raised.append, clip_norm=1.0)
    no_warmup.check_gradients(1, 107.0, {"stem": 9e-6, "lstm": 0.99})
    assert raised == []
    health.check_gradients(10, 107.0, {"fusion": 0.9, "lstm": 0.3})  # it persisted
    assert [alarm.kind for alarm in raised] == ["grad_explode"]


def test_a_large_first_gradient_without_clipping_is_an_explosion() -> None:
    health, raised = monitor()  # clip_norm 0: nothing bounds the first update
    health.check_gradients(1, 107.0, {"fusion": 0.9})
    assert [alarm.kind for alarm in raised] == ["grad_explode"]


def test_a_window_ctc_could_not_align_is_no_loss_measured() -> None:
    """A logged window made only of batches CTC cannot align has loss 0 (nothing to learn from):
    it is not the run's best loss, so later losses are neither 'exploded' against it nor
    divided by it."""
    health, raised = monitor()
    for step, loss in ((1, 5.0), (2, 0.0), (3, 4.0), (4, 6.0), (5, 3.0)):
        health.observe(step, loss, 1e-3)
    assert not raised and "loss_explode" not in health._last
