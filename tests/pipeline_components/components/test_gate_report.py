"""The deployment decision: which TFMA failures gate, which are only reported."""
from pipeline_components.components.gate_report import Failure, count_for, decide, markdown, rows

THRESHOLDS = {"auc_floor": {"ctr": 0.6, "cvr": 0.55}, "max_auc_drop": {"ctr": 0.01, "cvr": 0.02}}


def metrics(n_main=40_000, n_promo=900, clicks_main=2_000):
    m = {("overall", "_all"): {"example_count": n_main + n_promo},
         ("main_search", "_all"): {"example_count": n_main},
         ("promo_feed", "_all"): {"example_count": n_promo},
         ("main_search", "cvr"): {"auc": 0.66, "weighted_example_count": clicks_main}}
    for s in ("overall", "main_search", "promo_feed"):
        m[(s, "ctr")] = {"auc": 0.70}
    return m


def change(slice_, head="ctr"):
    return Failure(slice=slice_, head=head, metric="auc", value=-0.03, message="tfma says", is_change=True)


def test_a_regression_in_a_large_scene_blocks_and_names_scene_values_and_threshold():
    cand, base = metrics(), metrics()
    cand[("main_search", "ctr")]["auc"] = 0.67
    d = decide([change("main_search")], False, cand, base, True, 5000, THRESHOLDS, [])
    assert not d.blessed
    assert d.blocking == ["ctr AUC on scene main_search fell 0.0300 (0.7000 -> 0.6700), more than max_auc_drop 0.01"]


def test_a_regression_in_a_scene_below_min_examples_is_reported_not_gating():
    cand, base = metrics(), metrics()
    d = decide([change("promo_feed")], False, cand, base, True, 5000, THRESHOLDS, [])
    assert d.blessed and d.blocking == []
    assert len(d.reported) == 1 and "promo_feed" in d.reported[0] and "900 examples < min_scene_examples 5,000" \
        in d.reported[0]


def test_cvr_counts_clicks_not_impressions():
    m = metrics(clicks_main=1_200)
    assert count_for(m, "main_search", "cvr") == 1_200
    assert count_for(m, "main_search", "ctr") == 40_000
    # 40k impressions but only 1.2k clicks: a CVR regression there is below 5k and only reported.
    d = decide([change("main_search", "cvr")], False, m, metrics(), True, 5000, THRESHOLDS, [])
    assert d.blessed and d.reported


def test_overall_floor_and_overall_change_always_gate_whatever_the_count():
    cand = metrics(n_main=100, n_promo=10)
    floor = Failure("overall", "ctr", "auc", 0.5, "below", is_change=False)
    d = decide([floor, change("overall")], False, cand, metrics(), True, 5000, THRESHOLDS, [])
    assert not d.blessed and len(d.blocking) == 2
    assert any("below the floor 0.6" in b for b in d.blocking)


def test_serving_check_failure_blocks_even_when_metrics_pass():
    d = decide([], True, metrics(), {}, False, 5000, THRESHOLDS, ["ctcvr > ctr for 3 of 256 examples"])
    assert not d.blessed and d.blocking == ["serving check: ctcvr > ctr for 3 of 256 examples"]


def test_validation_failure_without_threshold_failures_is_not_silently_blessed():
    d = decide([], False, metrics(), {}, False, 5000, THRESHOLDS, [])
    assert not d.blessed and "TFMA validation failed" in d.blocking[0]


def test_report_lists_candidate_and_baseline_per_scene_and_says_what_gates():
    cand, base = metrics(), metrics()
    cand[("main_search", "ctr")]["auc"] = 0.72
    table = rows(cand, base, ["ctr"], ["main_search", "promo_feed"], 5000)
    by_slice = {r[0]: r for r in table}
    assert by_slice["main_search"][3:6] == ["0.7200", "0.7000", "+0.0200"]
    assert by_slice["promo_feed"][-1] == "reported only" and by_slice["main_search"][-1] == "yes"
    d = decide([change("promo_feed")], False, cand, base, False, 5000, THRESHOLDS, [])
    text = markdown("gate", d, table, ["span 2026-11-20"])
    assert "**BLESSED**" in text and "Reported, not gating" in text and "No baseline" in text


BANDED = dict(THRESHOLDS, calibration_band={"overall": [0.9, 1.1], "scene": [0.8, 1.25]})


def calibrated(values):
    m = metrics()
    for (s, h), v in values.items():
        m[(s, h)]["calibration"] = v
    return m


def test_an_overall_calibration_outside_the_band_blocks_and_says_by_how_much():
    cand = calibrated({("overall", "ctr"): 0.777, ("main_search", "ctr"): 0.95, ("promo_feed", "ctr"): 1.0})
    d = decide([], True, cand, {}, False, 5000, BANDED, [], ["ctr"], ["main_search", "promo_feed"])
    assert not d.blessed
    assert d.blocking == ["ctr calibration overall is 0.777 (under-predicts by 22%), outside the band 0.9-1.1 "
                          "(evaluator.calibration_band.overall)"]


def test_a_large_scene_gates_on_the_wider_scene_band_and_a_small_scene_is_only_reported():
    cand = calibrated({("overall", "ctr"): 1.05, ("main_search", "ctr"): 1.2, ("promo_feed", "ctr"): 1.6})
    d = decide([], True, cand, {}, False, 5000, BANDED, [], ["ctr"], ["main_search", "promo_feed"])
    assert d.blessed  # 1.05 is inside 0.9-1.1; 1.2 inside the scene band 0.8-1.25
    assert len(d.reported) == 1 and "promo_feed is 1.600 (over-predicts by 60%)" in d.reported[0]
    assert "900 examples < min_scene_examples 5,000" in d.reported[0]
    cand[("main_search", "ctr")]["calibration"] = 1.3
    d = decide([], True, cand, {}, False, 5000, BANDED, [], ["ctr"], ["main_search", "promo_feed"])
    assert not d.blessed and "ctr calibration on scene main_search is 1.300" in d.blocking[0]


def test_the_band_widens_by_the_sampling_error_of_few_positive_labels():
    noisy = dict(BANDED, calibration_band=dict(BANDED["calibration_band"], z=2.0))
    cand = metrics()
    # An unlucky day: 0.886 with 400 positive labels (standard error ~0.044) is within noise ...
    cand[("overall", "ctr")].update(calibration=0.886, mean_label=400 / 40_900)
    d = decide([], True, cand, {}, False, 5000, noisy, [], ["ctr"], [])
    assert d.blessed
    # ... a model that under-predicts by 22 % with 2,700 clicks (standard error ~0.015) is not.
    cand[("overall", "ctr")].update(calibration=0.777, mean_label=2_700 / 40_900)
    d = decide([], True, cand, {}, False, 5000, noisy, [], ["ctr"], [])
    assert not d.blessed
    assert "outside the band 0.9-1.1 by more than its sampling error (0.030: 2 standard errors with 2,700 " \
           "positive labels)" in d.blocking[0]
    # Without a label rate (an evaluation from before MeanLabel was computed) the band is used as is.
    del cand[("overall", "ctr")]["mean_label"]
    cand[("overall", "ctr")]["calibration"] = 0.886
    assert not decide([], True, cand, {}, False, 5000, noisy, [], ["ctr"], []).blessed


def test_a_regression_heads_band_is_never_widened_whoever_checks_it():
    """A regression head's label sum is not a count: the gate and `rankpipe report` (which passes
    only the band, no max_mse_increase) both check its calibration against the band as it is."""
    from pipeline_components.components.gate_report import check_calibration
    band = {"calibration_band": dict(BANDED["calibration_band"], z=2.0)}
    m = {("overall", "_all"): {"example_count": 400.0},
         ("overall", "dwell"): {"calibration": 0.85, "mean_label": 1.0, "mean_squared_error": 4.0}}
    for thresholds in (band, dict(band, max_mse_increase={"dwell": 0.05})):
        check = check_calibration(m, "overall", "dwell", thresholds)
        assert check.margin == 0.0 and check.flag == "under-predicts by 15%"
    # The same numbers on a probability head: 400 positive labels widen the band by 2 x 0.85 / 20.
    del m[("overall", "dwell")]["mean_squared_error"]
    check = check_calibration(m, "overall", "dwell", band)
    assert abs(check.margin - 0.085) < 1e-12 and check.flag == ""


def test_without_a_band_calibration_does_not_gate_and_the_table_flags_what_is_outside():
    cand = calibrated({("overall", "ctr"): 0.5, ("main_search", "ctr"): 1.0, ("promo_feed", "ctr"): 1.0})
    assert decide([], True, cand, {}, False, 5000, THRESHOLDS, [], ["ctr"], ["main_search"]).blessed
    by_slice = {r[0]: r for r in rows(cand, {}, ["ctr"], ["main_search"], 5000, BANDED)}
    assert by_slice["overall"][8] == "0.500 (under-predicts by 50%)"
    assert by_slice["main_search"][8] == "1.000"


def test_calibration_band_settings_are_checked():
    import pytest
    from pipeline_components.components.gate_report import calibration_band
    assert calibration_band({"calibration_band": None}) == {}
    assert calibration_band({"calibration_band": {"overall": [0.9, 1.1], "scene": [0.8, 1.25]}}) == \
        {"overall": [0.9, 1.1], "scene": [0.8, 1.25], "z": 2.0}
    with pytest.raises(ValueError, match="z must be a number >= 0"):
        calibration_band({"calibration_band": {"overall": [0.9, 1.1], "scene": [0.8, 1.25], "z": -1}})
    with pytest.raises(ValueError, match="calibration_band.overall must be"):
        calibration_band({"calibration_band": {"overall": [1.1, 0.9], "scene": [0.8, 1.25]}})
    with pytest.raises(ValueError, match="must contain the overall band"):
        calibration_band({"calibration_band": {"overall": [0.9, 1.1], "scene": [0.95, 1.05]}})
