"""Baseline keys, claim definitions and the release gate, on plain data (no model, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mitest.results import baseline
from mitest.spec.base import identity


def _record(values, *, outcome="HOLDS", estimate=None, gap=0.5, kind="effect", threshold=1.0, parameters=None):
    values = [float(v) for v in values]
    identity_ = {"prompts": "p1", "intervention": "i1", "metric": "m1", "parameters": parameters or {}}
    return {
        "claim": f"mean increase of at least {threshold:g}",
        "claim_key": "k",
        "definition": baseline.definition(identity_, f"mean increase of at least {threshold:g}", threshold),
        "derived": {},
        "kind": kind,
        "identity": {**identity_, "model": "m"},
        "outcome": outcome,
        "estimate": float(np.mean(values)) if estimate is None else estimate,
        "threshold": threshold,
        "gap": gap,
        "alpha": 0.05 / 30,
        "per_prompt": {"claim_value": values, "group": None},
    }


def _compare(old_values, new_values, gate="evidence", **kwargs):
    old = baseline.entry(_record(old_values, **kwargs))
    return baseline.compare(old, _record(new_values, **kwargs), margin=0.2, alpha=0.05 / 30, gate=gate)


# -- keys ------------------------------------------------------------------------------------------


def test_a_key_names_the_test_file_relative_to_the_baseline_folder_not_the_rootdir(tmp_path):
    def key(root, test_file, baseline_file, claim="0"):
        root = Path(root)
        anchor = baseline.anchor(root / test_file, root / baseline_file, root)
        return baseline.key(root / test_file, anchor, "test_a", claim)

    here = key(tmp_path, "suite/test_x.py", "suite/baselines/test_x.json")
    moved = key("/elsewhere/checkout", "suite/test_x.py", "suite/baselines/test_x.json")
    assert here == moved == "test_x.py::test_a::0"
    shared = key(tmp_path, "tests/sub/test_x.py", "baselines/test_x.json", "name")
    assert shared == "tests/sub/test_x.py::test_a::name"


# -- definitions -----------------------------------------------------------------------------------


def test_floats_computed_at_run_time_never_enter_a_structural_hash():
    rng = np.random.default_rng(0)
    vector = rng.normal(size=32)
    spec = {"type": "Steer", "direction": {"name": "blocks.0.hook_attn_out", "direction": list(vector)}, "coef": 1.0}
    wobbled = {**spec, "direction": {**spec["direction"], "direction": list(vector * (1 + 3e-8 * rng.normal(size=32)))}}
    (key, _, parameters, derived), (key2, _, parameters2, _) = identity(spec), identity(wobbled)
    assert key == key2 and not derived
    assert set(parameters) == {"direction.direction", "coef"}
    assert baseline.changes({"parts": {}, "parameters": parameters}, {"parts": {}, "parameters": parameters2}) == []


def test_a_derived_direction_is_identified_by_its_recipe_and_returned_for_comparison():
    spec = {"direction": {"name": "blocks.0.hook_attn_out", "direction": [0.5, 1.5], "derived": "late minus early"}}
    other = {"direction": {"name": "blocks.0.hook_attn_out", "direction": [9.0, -3.0], "derived": "late minus early"}}
    (key, _, parameters, derived), (key2, _, _, _) = identity(spec), identity(other)
    assert key == key2 and parameters == {}
    assert derived == {"blocks.0.hook_attn_out:late minus early": [0.5, 1.5]}
    assert identity({"direction": {**spec["direction"], "derived": "another recipe"}})[0] != key


def test_a_definitional_change_is_named():
    old = baseline.definition(
        {"prompts": "p1", "intervention": "i1", "parameters": {"intervention.coef": 1.0}}, "at least 1", 1
    )
    same = baseline.definition(
        {"prompts": "p1", "intervention": "i1", "parameters": {"intervention.coef": 1.0 + 1e-9}}, "at least 1", 1
    )
    assert baseline.changes(old, same) == []
    new = baseline.definition(
        {"prompts": "p2", "intervention": "i1", "parameters": {"intervention.coef": 2.0}}, "at least 0.8", 0.8
    )
    found = baseline.changes(old, new)
    assert "threshold 1 -> 0.8" in found and "intervention.coef 1 -> 2" in found
    assert any(change.startswith("the prompt set") for change in found)


# -- the gate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gate", baseline.GATES)
def test_exact_unchanged_values_are_the_same_in_both_gates(gate):
    assert _compare(np.ones(20), np.ones(20), gate=gate)["status"] == "same"


@pytest.mark.parametrize("gate", baseline.GATES)
def test_an_exact_recovery_claim_with_rounding_noise_is_not_a_regression(gate):
    """The issue's 1 -> 1 case: per-prompt values equal up to float32 rounding, room 0.01."""
    noise = np.random.default_rng(1).normal(0, 1e-7, 20)
    assert _compare(np.ones(20), np.ones(20) + noise, gate=gate, gap=0.01)["status"] == "ok"


def test_an_exact_drop_is_decided_exactly():
    old = np.linspace(1, 2, 20)
    within = _compare(old, old - 0.05, gap=0.5)  # allowed: 0.2 * 0.5 = 0.1
    beyond = _compare(old, old - 0.15, gap=0.5)
    assert within["status"] == "ok" and within["p_beyond"] == 1.0
    assert beyond["status"] == "regressed" and beyond["p_beyond"] == 0.0


def test_improvements_never_fail_the_evidence_gate():
    rng = np.random.default_rng(2)
    old = rng.normal(1.8, 0.3, 40)
    assert _compare(old, old + 0.03 + rng.normal(0, 0.3, 40))["status"] == "ok"


def test_an_equivalence_claim_that_still_holds_passes():
    rng = np.random.default_rng(3)
    old = -np.abs(rng.normal(0, 0.01, 40))
    result = _compare(old, old - 0.02, kind="equivalence", gap=0.03)
    assert result["status"] == "ok"


def test_a_claim_that_stopped_holding_regresses_in_both_gates():
    for gate in baseline.GATES:
        new = _record(np.zeros(10), outcome="REFUTED")
        result = baseline.compare(baseline.entry(_record(np.ones(10))), new, margin=0.2, alpha=0.01, gate=gate)
        assert result["status"] == "regressed" and "held in the baseline" in result["message"]


def test_the_prove_gate_fails_a_noisy_release_it_cannot_clear():
    rng = np.random.default_rng(4)
    old = rng.normal(1.5, 0.3, 12)
    new = old + rng.normal(0, 0.3, 12)  # no real drop, but too noisy to show it stayed within 0.1
    assert _compare(old, new, gate="evidence")["status"] == "ok"
    proved = _compare(old, new, gate="prove")
    assert proved["status"] == "regressed" and "prove gate" in proved["message"]


def test_a_baseline_with_another_number_of_prompts_is_an_error():
    result = _compare(np.ones(10), np.ones(12))
    assert result["status"] == "error" and "edited or corrupted" in result["message"]


def test_the_evidence_gate_keeps_its_false_alarm_rate_and_detects_planted_drops():
    """5,000 simulated releases per case, paired normal noise (sd 0.3), n = 30, room 0.5 (allowed 0.1),
    alpha 0.05: harmless releases (no drop) fail at most a tenth of alpha of the time, releases whose
    drop is exactly the allowance at most alpha; a drop of three times the allowance is found almost always."""
    rng = np.random.default_rng(5)
    alpha, sims, n = 0.05, 5000, 30
    old = rng.normal(1.5, 0.3, (sims, n))

    def failure_rate(drop: float) -> float:
        new = old - drop + rng.normal(0, 0.3, (sims, n))
        return float(np.mean(_vectorised_beyond(old - new, 0.1) < alpha))

    se = np.sqrt(alpha * (1 - alpha) / sims)
    assert failure_rate(0.0) <= alpha / 10
    assert failure_rate(0.1) <= alpha + 2 * se
    assert failure_rate(0.3) >= 0.95


def _vectorised_beyond(drops: np.ndarray, allowed: float) -> np.ndarray:
    from mitest.claims.stats import mean_test

    return mean_test(drops - allowed, "greater").pvalue


# -- files -----------------------------------------------------------------------------------------


def _write(path, claims, version=baseline.VERSION):
    path.write_text(json.dumps({"schema": baseline.SCHEMA, "version": version, "claims": claims}))


def test_an_older_schema_is_refused_with_the_command_that_fixes_it(tmp_path):
    path = tmp_path / "test_x.json"
    _write(path, {}, version=1)
    with pytest.raises(baseline.BaselineError, match="schema version 1.*--mitest-update-baseline"):
        baseline.load(path)


def test_duplicate_keys_oversized_files_and_folders_are_refused(tmp_path):
    entry = baseline.entry(_record(np.ones(3)))
    path = tmp_path / "test_x.json"
    text = json.dumps({"schema": baseline.SCHEMA, "version": baseline.VERSION, "claims": {"a::b::0": entry}})
    path.write_text(text.replace('"claims": {', '"claims": {"a::b::0": 1, ', 1))
    with pytest.raises(baseline.BaselineError, match="holds the key 'a::b::0' twice"):
        baseline.load(path)
    path.write_text(text)
    assert set(baseline.load(path)) == {"a::b::0"}
    with pytest.raises(baseline.BaselineError, match="over the 0 MiB limit.*--mitest-baseline-max-mb"):
        baseline.load(path, max_bytes=100)
    folder = tmp_path / "test_y.json"
    folder.mkdir()
    with pytest.raises(baseline.BaselineError, match="is a folder"):
        baseline.load(folder)


def test_stale_entries_are_those_no_collected_test_decides():
    stored = {f"test_x.py::{test}::0": {} for test in ("test_kept", "test_renamed", "test_shrunk")}
    stored["test_x.py::test_shrunk::1"] = {}
    stored["test_x.py::test_failed::0"] = {}
    decided = {"test_x.py::test_kept::0", "test_x.py::test_shrunk::0"}
    ran = {"test_x.py::test_kept": True, "test_x.py::test_shrunk": True, "test_x.py::test_failed": False}
    found = baseline.stale(stored, decided, ran, ["test_x.py::"])
    assert found == {
        "test_x.py::test_renamed::0": "no collected test has this name",
        "test_x.py::test_shrunk::1": "the test passed without deciding this claim",
    }
    assert baseline.stale(stored, decided, ran, ["test_other.py::"]) == {}


def test_a_changed_intervention_names_the_fields_that_changed():
    import mitest as mt

    def definition(intervention):
        spec = identity(intervention.to_dict())
        return baseline.definition(
            {"intervention": spec.key, "prompts": "p", "structure": {"intervention": spec.structure}}, "at least 1", 1
        )

    old = definition(mt.ablate(mt.heads("1.0", "1.1"), method="mean", seed=0))
    new = definition(mt.ablate(mt.heads("1.0", "1.2"), method="resample", seed=3))
    assert baseline.changes(old, new) == [
        'intervention.method "mean" -> "resample"',
        "intervention.seed 0 -> 3",
        "intervention.sites.0.index.1 1 -> 2",
    ]


def test_a_shared_baseline_folder_outside_the_checkout_keys_by_the_suite_root(tmp_path):
    """Review finding: --mitest-baseline-dir=../bl put the checkout's folder name into every key."""
    for checkout in ("checkoutA", "checkoutB"):
        root = tmp_path / checkout
        anchor = baseline.anchor(root / "test_x.py", tmp_path / "bl" / "test_x.json", root)
        assert baseline.key(root / "test_x.py", anchor, "test_a", "0") == "test_x.py::test_a::0"


def test_an_entry_without_a_model_is_compared():
    old = baseline.entry(_record(np.ones(5)))
    del old["model"]
    assert baseline.compare(old, _record(np.ones(5)), margin=0.2, alpha=0.01)["status"] == "same"


def test_a_changed_custom_metric_changes_the_claim():
    from mitest.engine.effects import claim_identity
    from mitest.spec.metrics import Custom

    class Fake:
        fingerprint = "p"

    def first(logits, prompts):
        return logits[:, -1, 0]

    def second(logits, prompts):
        return 0.01 * logits[:, -1, 0]

    intervention = __import__("mitest").ablate("blocks.0.hook_mlp_out")
    keys = {claim_identity("m", Fake(), intervention, Custom(fn))["metric"] for fn in (first, second)}
    assert len(keys) == 2


def _grouped_compare(old_values, new_values, groups, gap=0.5):
    old_record, new_record = _record(old_values, gap=gap), _record(new_values, gap=gap)
    for record in (old_record, new_record):
        record["per_prompt"]["group"] = list(groups)
    return baseline.compare(baseline.entry(old_record), new_record, margin=0.2, alpha=0.05, gate="evidence")


def test_the_gate_uses_the_claims_cr2_cluster_test():
    """One implementation: the grouped gate's p-value is stats.cluster_test's (CR2, Bell-McCaffrey df)."""
    from mitest.claims import stats

    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(4), [2, 4, 8, 16])
    old = np.linspace(1, 2, 30)
    new = old - 0.1 - np.repeat(rng.normal(0, 0.1, 4), [2, 4, 8, 16]) - rng.normal(0, 0.05, 30)
    result = _grouped_compare(old, new, groups)
    drops = old - new
    expected = stats.cluster_test(drops - result["allowed"], groups, "greater").pvalue
    assert result["p_beyond"] == pytest.approx(expected, rel=1e-12)
    cr1 = stats.mean_test(stats.units(drops - result["allowed"], groups), "greater").pvalue
    assert abs(result["p_beyond"] - cr1) > 1e-3  # the old CR1 test on cluster units gives another answer


def test_equal_cluster_drops_are_not_decided_exactly():
    """Two templates whose mean drops are equal are two units (p = 0.25), not a noise-free drop."""
    result = _grouped_compare(np.ones(4), np.ones(4) - [0.2, 1, 1, 0.2], list("aabb"))
    assert result["status"] == "ok" and result["p_beyond"] == 0.25
