"""Progress bars show on long work in a terminal only: not in CI, not under -q, not on a non-tty."""

from __future__ import annotations

import contextlib
import io

import pytest

import mitest as mt
from mitest import progress
from tests.builders import build, random_prompts


class Terminal(io.StringIO):
    """A stream that says it is a terminal (and, like one, refuses the question once closed)."""

    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return True


@pytest.fixture
def policy(monkeypatch):
    """No environment override, no CI, not quiet (this suite may run under -q), bars at once (no delay)."""
    monkeypatch.delenv("MITEST_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    with progress.use(None):
        yield monkeypatch


def on_terminal(work) -> str:
    """What ``work()`` writes to stderr when stderr is a terminal (redirected in the test body:
    pytest's capture resets sys.stderr between a test's phases, so a fixture could not do it)."""
    stream = Terminal()
    with contextlib.redirect_stderr(stream):
        work()
    return stream.getvalue()


def test_bars_show_on_a_terminal_only(policy):
    assert progress.enabled(Terminal())
    assert not progress.enabled(io.StringIO())
    closed = Terminal()
    closed.close()
    assert not progress.enabled(closed)
    assert not progress.enabled(object())  # no isatty at all


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_bars_are_off_in_ci(policy, value):
    policy.setenv("CI", value)
    assert not progress.enabled(Terminal())


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_a_ci_variable_that_says_no_leaves_bars_on(policy, value):
    policy.setenv("CI", value)
    assert progress.enabled(Terminal())


def test_mitest_progress_overrides_the_rest(policy):
    policy.setenv("MITEST_PROGRESS", "0")
    assert not progress.enabled(Terminal())
    policy.setenv("MITEST_PROGRESS", "1")
    policy.setenv("CI", "true")
    assert progress.enabled(io.StringIO())


def test_use_false_turns_bars_off_inside_the_block_only(policy):
    with progress.use(False):
        assert not progress.enabled(Terminal())
        with progress.use(None):
            assert progress.enabled(Terminal())
    assert progress.enabled(Terminal())


def test_a_bar_writes_to_a_terminal_and_nothing_elsewhere(policy):
    shown, hidden = Terminal(), io.StringIO()
    assert list(progress.bar(range(3), desc="work", stream=shown)) == [0, 1, 2]
    assert list(progress.bar(range(3), desc="work", stream=hidden)) == [0, 1, 2]
    assert "mitest: work:   0%" in shown.getvalue() and "0/3" in shown.getvalue()
    assert hidden.getvalue() == ""


def test_short_work_shows_no_bar(policy):
    policy.setattr(progress, "DELAY", 60.0)
    stream = Terminal()
    assert list(progress.bar(range(3), desc="work", stream=stream)) == [0, 1, 2]
    assert stream.getvalue() == ""


def mean_ablation_in_batches() -> None:
    model = mt.Model.from_hf(build("gpt2"))
    mean_ablation = mt.ablate(mt.heads("0.0"), method="mean")
    mt.measure(model, random_prompts(n=6), mean_ablation, mt.metrics.logit_diff, batch_size=2)


def test_measure_shows_its_forward_passes_on_a_terminal(policy):
    shown = on_terminal(mean_ablation_in_batches)
    assert "mitest: forward passes" in shown and "/3 [" in shown  # 6 prompts in batches of 2


def test_measure_shows_nothing_in_ci(policy):
    policy.setenv("CI", "true")
    assert on_terminal(mean_ablation_in_batches) == ""


def sweep_of_every_head() -> None:
    model = mt.Model.from_hf(build("gpt2"))
    mt.sweep(model, random_prompts(n=6), mt.ablate(mt.heads("*")), mt.metrics.logit_diff, batch_size=3)


def test_a_sweep_shows_its_passes_on_a_terminal_and_nothing_in_ci(policy):
    shown = on_terminal(sweep_of_every_head)
    assert "mitest: sweep passes" in shown and "/2 [" in shown  # 8 cells in one pass per batch, 2 batches
    policy.setenv("CI", "true")
    assert on_terminal(sweep_of_every_head) == ""


def test_loading_shows_transformers_bar_on_a_terminal_only(policy, tmp_path):
    build("gpt2").save_pretrained(tmp_path)
    assert "Loading weights" in on_terminal(lambda: mt.Model.load(tmp_path))
    policy.setenv("CI", "true")
    assert on_terminal(lambda: mt.Model.load(tmp_path)) == ""


def test_loading_leaves_transformers_bar_setting_as_it_was(policy, tmp_path):
    import transformers

    logging = transformers.utils.logging
    build("gpt2").save_pretrained(tmp_path)
    for before in (False, True):
        logging.enable_progress_bar() if before else logging.disable_progress_bar()
        on_terminal(lambda: mt.Model.load(tmp_path))
        assert logging.is_progress_bar_enabled() is before


def test_a_property_search_shows_its_prompts_on_a_terminal(policy):
    family = mt.zoo.induction.family()
    shown = on_terminal(lambda: mt.expect_for_all(family, lambda prompt: True, examples=5))
    assert "mitest: searching prompts against <lambda>" in shown and "/5 [" in shown


def test_random_circuits_show_a_bar_on_a_terminal(policy):
    from mitest.zoo import planted

    induction = planted.induction(16, length=7, n=8, seed=0)
    heads = [mt.head(layer, h) for layer in range(2) for h in range(4)]
    circuit = mt.circuit(*induction, [mt.head(1, 0)], mt.metrics.loss(positions="second_half"), components=heads)

    def decided(claim):
        with contextlib.suppress(mt.ClaimFailure):  # the verdict does not matter here, only the bar
            claim()

    shown = on_terminal(lambda: decided(lambda: circuit.expect_necessary(0.5, samples=30, alpha=0.05)))
    assert "mitest: random circuits (necessity)" in shown and "/30 [" in shown
    shown = on_terminal(lambda: decided(lambda: circuit.expect_minimal(at_least=0.1)))
    assert "mitest: circuit without each component" in shown


INNER = """
import io
from mitest import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_policy():
    print("bars", progress.enabled(Terminal()))
"""


@pytest.mark.parametrize(("flags", "shown"), [(["-s"], True), (["-s", "-q"], False)])
def test_the_plugin_turns_bars_off_under_quiet(pytester, policy, flags, shown):
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", *flags)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*bars {shown}*"])
    assert progress.enabled(Terminal())  # the inner session's choice ended with it
